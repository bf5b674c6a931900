"""Finding the flows Maestro would run, and checking them before anything runs.

Discovery follows Maestro: a folder means its top-level `*.yml`/`*.yaml` files (files in sub-folders
are sub-flows), narrowed by the workspace `config.yaml` (`flows` globs, `includeTags`, `excludeTags`)
and the tag flags, which add to the config's tags. A file means that one flow.

The preflight parses every flow (a header document, `---`, then a list of commands), requires `appId`
(or `url`) in the header, and checks that every `runFlow`/`runScript` file exists, recursively.
Every problem is reported as `file:line: message`, all at once. `FlowFiles` keeps what it parsed, each
file parsed once, for `flowlint` to walk.

`Command`, `commands_of` and `flow_commands` are the one walk over a flow's command tree (nested
`commands:` of runFlow/retry/repeat and the header's onFlowStart/onFlowComplete); `flowlint` builds its
variable and cleanup checks on the same walk.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .console import relative_display
from .errors import ConfigError, FlowError

FLOW_SUFFIXES = (".yaml", ".yml")
WORKSPACE_CONFIGS = ("config.yaml", "config.yml")
# Commands whose value (or whose `file:` key) names another file, resolved next to the flow.
FILE_COMMANDS = ("runFlow", "runScript", "retry")
# Commands that hold a nested list of commands under `commands:`.
NESTING_COMMANDS = ("runFlow", "retry", "repeat")
# Header keys that hold command lists.
HOOKS = ("onFlowStart", "onFlowComplete")


@dataclass(frozen=True)
class Flow:
    path: Path
    file_name: str  # path relative to the flows folder, as Maestro and our record name it
    name: str
    app_id: str
    tags: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        """The flow's folder name under `flows/`: its whole file name, `/` written `%2F` (`%` as `%25`), so
        `x.yaml` and `x.yml`, `a/b.yaml` and `a__b.yaml` each get their own folder."""
        return self.file_name.replace("%", "%25").replace("/", "%2F")


@dataclass
class Selection:
    flows: list[Flow]
    filtered_out: list[str] = field(default_factory=list)  # file names the tag filters left out


@dataclass
class ParsedFlow:
    header: dict[str, Any]
    header_node: yaml.Node | None
    commands_node: yaml.Node | None


@dataclass(frozen=True)
class Command:
    """One command of a flow: `- launchApp` (no value) or `- tapOn: ...` (a value node), with its line."""

    name: str
    value: yaml.Node | None
    line: int

    def option(self, key: str) -> yaml.Node | None:
        if isinstance(self.value, yaml.MappingNode):
            for sub_key, sub_value in self.value.value:
                if isinstance(sub_key, yaml.ScalarNode) and sub_key.value == key and isinstance(sub_value, yaml.Node):
                    return sub_value
        return None

    @property
    def file(self) -> tuple[str, int] | None:
        """The file a runFlow/runScript/retry names, with the line of the name."""
        if self.name not in FILE_COMMANDS:
            return None
        if isinstance(self.value, yaml.ScalarNode) and self.name != "retry":
            return self.value.value, line_of(self.value)
        node = self.option("file")
        return (node.value, line_of(node)) if isinstance(node, yaml.ScalarNode) else None

    @property
    def nested(self) -> yaml.Node | None:
        """The inline `commands:` list of a runFlow/retry/repeat."""
        return self.option("commands") if self.name in NESTING_COMMANDS else None


def commands_of(node: yaml.Node | None) -> Iterator[Command]:
    """The commands of one command list, in order, without descending into nested lists."""
    if not isinstance(node, yaml.SequenceNode):
        return
    for item in node.value:
        if isinstance(item, yaml.ScalarNode):
            yield Command(item.value, None, line_of(item))
        elif isinstance(item, yaml.MappingNode):
            for key, value in item.value:
                if isinstance(key, yaml.ScalarNode):
                    yield Command(key.value, value, line_of(key))


def hook_lists(header_node: yaml.Node | None) -> Iterator[yaml.Node]:
    """The command lists of the header's onFlowStart / onFlowComplete."""
    if isinstance(header_node, yaml.MappingNode):
        for key, value in header_node.value:
            if isinstance(key, yaml.ScalarNode) and key.value in HOOKS:
                yield value


def walk_commands(node: yaml.Node | None) -> Iterator[Command]:
    """Every command of a command list, nested ones included, depth first."""
    for command in commands_of(node):
        yield command
        yield from walk_commands(command.nested)


def flow_commands(parsed: ParsedFlow) -> Iterator[Command]:
    """Every command of one flow file: its command list, then its header hooks (sub-flows not followed)."""
    yield from walk_commands(parsed.commands_node)
    for hook in hook_lists(parsed.header_node):
        yield from walk_commands(hook)


class Problems:
    """Every problem found, as `file:line: message` lines, the file relative to `base` when inside it."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.items: list[str] = []

    def add(self, path: Path, line: int, message: str) -> None:
        self.items.append(f"{relative_display(path, self.base)}:{line}: {message}")


@dataclass(frozen=True)
class _Documents:
    """A flow file's YAML documents: the nodes (with their lines) and the values built from them."""

    nodes: list[yaml.Node]
    values: list[Any]


class FlowFiles:
    """Flow files, each read and parsed once however many flows reach it, and however (flow or sub-flow).

    The preflight parses through it and `flowlint` walks what it kept. A file that does not parse has its
    problem reported each time the preflight reaches it, as if it were parsed again.
    """

    def __init__(self) -> None:
        self._documents: dict[Path, _Documents | tuple[int, str]] = {}

    def parse(self, path: Path, problems: Problems, *, sub_flow: bool) -> ParsedFlow | None:
        """The parsed flow (a sub-flow may be a bare command list); None after reporting why not."""
        parsed = self._flow(path, sub_flow)
        if isinstance(parsed, ParsedFlow):
            return parsed
        problems.add(path, *parsed)
        return None

    def get(self, path: Path, *, sub_flow: bool) -> ParsedFlow | None:
        """Like `parse`, for a file whose problems the preflight has already reported."""
        parsed = self._flow(path, sub_flow)
        return parsed if isinstance(parsed, ParsedFlow) else None

    def sub_flow(self, path: Path, command: Command) -> tuple[Path, ParsedFlow] | None:
        """The sub-flow `command` (in the flow at `path`) runs, parsed: runFlow and retry files, not scripts,
        not variable paths (resolved at run time), not missing or unparsable files (the preflight's problem)."""
        if command.file is None or command.name == "runScript" or "${" in command.file[0]:
            return None
        target = path.parent / command.file[0]
        if target.suffix not in FLOW_SUFFIXES or not target.is_file():
            return None
        parsed = self.get(target, sub_flow=True)
        return None if parsed is None else (target, parsed)

    def _flow(self, path: Path, sub_flow: bool) -> ParsedFlow | tuple[int, str]:
        key = path.resolve()
        if key not in self._documents:
            try:
                text = path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                return 1, f"cannot read the file: {exc}"  # not kept: the message names the path as given
            self._documents[key] = _compose(text)
        documents = self._documents[key]
        return documents if isinstance(documents, tuple) else _flow_of(documents, sub_flow=sub_flow)


def _compose(text: str) -> _Documents | tuple[int, str]:
    """The YAML documents of a flow file, or (line, problem)."""
    loader = yaml.SafeLoader(text)
    try:
        nodes: list[yaml.Node] = []
        while loader.check_node():
            node = loader.get_node()
            if node is not None:
                nodes.append(node)
        return _Documents(nodes, [loader.construct_document(n) for n in nodes])
    except yaml.MarkedYAMLError as exc:
        return _yaml_problem(exc)
    except yaml.YAMLError as exc:
        return 1, f"invalid YAML: {exc}"
    finally:
        loader.dispose()


def _flow_of(documents: _Documents, *, sub_flow: bool) -> ParsedFlow | tuple[int, str]:
    """A header document, then a command list (or, for a sub-flow, a command list alone); else (line, problem)."""
    nodes, values = documents.nodes, documents.values
    if not nodes:
        return 1, "the file is empty; a flow is a header (appId: ...), then ---, then a list of commands"
    if len(nodes) == 1:
        if sub_flow and isinstance(values[0], list):
            return ParsedFlow({}, None, nodes[0])
        if isinstance(values[0], list):
            return 1, "the header is missing: start the file with 'appId: <package>' and a '---' line"
        return line_of(nodes[0], end=True), "no commands: add a '---' line after the header, then the list of commands"
    if len(nodes) > 2:
        return line_of(nodes[2]), "more than two YAML documents: a flow is one header and one command list"
    header, commands = values
    if header is None:
        header = {}
    if not isinstance(header, dict):
        return line_of(nodes[0]), "the header (before '---') must be a mapping such as 'appId: com.example.app'"
    if not isinstance(commands, list):
        return line_of(nodes[1]), "the commands (after '---') must be a list, one '- command' per line"
    return ParsedFlow(header, nodes[0], nodes[1])


def _yaml_problem(exc: yaml.MarkedYAMLError) -> tuple[int, str]:
    """(line, message): the line where the broken construct starts, which is where to look."""
    context, problem = exc.context_mark, exc.problem_mark
    first = context or problem
    line = first.line + 1 if first is not None else 1
    message = f"invalid YAML: {exc.problem or exc.context}"
    if context and problem and problem.line != context.line:
        message += f" (at line {problem.line + 1}, {exc.context} started on line {line})"
    return line, message


def line_of(node: yaml.Node, *, end: bool = False) -> int:
    """The 1-based line where a node starts (or, with end, the last line it covers)."""
    return (node.end_mark.line if end else node.start_mark.line + 1) or 1


def _check_refs(path: Path, parsed: ParsedFlow, problems: Problems, files: FlowFiles, seen: set[Path]) -> None:
    for command in flow_commands(parsed):
        if command.file is None:
            continue
        ref, line = command.file
        if "${" in ref:
            continue  # resolved by Maestro at run time
        target = (path.parent / ref).resolve()
        if not target.is_file():
            problems.add(path, line, f"'{ref}' does not exist (looked for {target})")
            continue
        if target in seen or target.suffix not in FLOW_SUFFIXES:
            continue
        seen.add(target)
        sub = files.parse(target, problems, sub_flow=True)
        if sub is not None:
            _check_refs(target, sub, problems, files, seen)


def _tags(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list):
        return tuple(str(v) for v in value)
    return ()


def load_flow(path: Path, root: Path, problems: Problems, files: FlowFiles) -> Flow | None:
    """Parse (into `files`) and preflight one top-level flow, its sub-flows too; None if it does not parse."""
    parsed = files.parse(path, problems, sub_flow=False)
    if parsed is None:
        return None
    header = parsed.header
    app_id = header.get("appId") or header.get("url")
    if not app_id or not isinstance(app_id, str):
        problems.add(path, 1, "the header has no 'appId' (or 'url'): add 'appId: <your.package.name>'")
    tags = header.get("tags")
    if tags is not None and not isinstance(tags, (list, str)):
        problems.add(path, 1, "'tags' must be a list of strings")
    if not isinstance(header.get("env") or {}, dict):
        problems.add(path, 1, "'env' in the header must be a mapping of NAME: value")
    _check_refs(path, parsed, problems, files, {path.resolve()})
    try:
        file_name = path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        file_name = path.name
    return Flow(
        path=path,
        file_name=file_name,
        name=str(header.get("name") or path.stem),
        app_id=str(app_id or ""),
        tags=_tags(tags),
    )


def _workspace_config(folder: Path, problems: Problems) -> tuple[Path | None, dict[str, Any]]:
    for name in WORKSPACE_CONFIGS:
        path = folder / name
        if path.is_file():
            try:
                data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
            except yaml.MarkedYAMLError as exc:
                problems.add(path, *_yaml_problem(exc))
                return path, {}
            if not isinstance(data, dict):
                problems.add(path, 1, "the workspace config must be a mapping (flows:, includeTags:, ...)")
                return path, {}
            return path, data
    return None, {}


def _as_list(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    return [str(v) for v in value]


def _candidates(folder: Path, patterns: list[str], config_path: Path | None) -> list[Path]:
    found: set[Path] = set()
    for pattern in patterns:
        # Maestro's `**` means every file below; Python's bare `**` only yields folders.
        glob = pattern + "/*" if pattern.endswith("**") else pattern
        for path in folder.glob(glob):
            if path.is_file() and path.suffix in FLOW_SUFFIXES and path != config_path:
                found.add(path)
    return sorted(found)


@dataclass
class Workspace:
    """The flow files a flows path stands for, as Maestro finds them, before any tag filter."""

    root: Path
    candidates: list[Path]
    include_tags: tuple[str, ...] = ()
    exclude_tags: tuple[str, ...] = ()


def find_workspace(
    flows_path: Path, problems: Problems, include_tags: tuple[str, ...] = (), exclude_tags: tuple[str, ...] = ()
) -> Workspace:
    """The candidate flows of a folder (workspace config globs) or a single file; tags only combined."""
    if not flows_path.exists():
        raise ConfigError(
            f"the flows path '{flows_path}' does not exist",
            fix="pass --flows PATH (a folder of Maestro flows or one flow file) or set validation.flows in invoke.yaml",
        )
    root = flows_path if flows_path.is_dir() else flows_path.parent
    config_path: Path | None = None
    config: dict[str, Any] = {}
    if flows_path.is_dir():
        config_path, config = _workspace_config(flows_path, problems)
        candidates = _candidates(flows_path, _as_list(config.get("flows")) or ["*"], config_path)
    else:
        candidates = [flows_path]
    include = tuple(_as_list(config.get("includeTags"))) + include_tags
    exclude = tuple(_as_list(config.get("excludeTags"))) + exclude_tags
    return Workspace(root, candidates, include, exclude)


def discover(
    flows_path: Path, include_tags: tuple[str, ...] = (), exclude_tags: tuple[str, ...] = ()
) -> Selection:
    """Select and preflight the flows to run; raise FlowError listing every problem."""
    problems = Problems(Path.cwd())
    workspace = find_workspace(flows_path, problems, include_tags, exclude_tags)
    include, exclude = workspace.include_tags, workspace.exclude_tags

    files = FlowFiles()
    selected: list[Flow] = []
    filtered: list[str] = []
    for path in workspace.candidates:
        flow = load_flow(path, workspace.root, problems, files)
        if flow is None:
            continue
        tags = set(flow.tags)
        if (include and not tags & set(include)) or (exclude and tags & set(exclude)):
            filtered.append(flow.file_name)
            continue
        selected.append(flow)
    if problems.items:
        raise FlowError(problems.items, fix="correct the lines above; `invoke lint-flows` re-checks without a device")
    if not selected:
        why = f"{len(filtered)} flow(s) filtered out by tags" if filtered else "no *.yaml or *.yml flow found"
        tag_text = f" (include: {','.join(include) or '-'}; exclude: {','.join(exclude) or '-'})" if filtered else ""
        raise ConfigError(
            f"no flow selected in '{flows_path}': {why}{tag_text}",
            fix="check --flows, the workspace config.yaml 'flows' globs and the --include-tags/--exclude-tags filters",
        )
    return Selection(selected, filtered)
