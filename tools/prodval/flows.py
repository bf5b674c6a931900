"""Finding the flows Maestro would run, and checking them before anything runs.

Discovery follows Maestro (`WorkspaceExecutionPlanner`, `isFlowFile`): a folder means its files that
match the workspace config's `flows` globs (Java NIO globs relative to the folder, default `*`, top level
only; `**/*.yaml` needs at least one folder; `{a,b}/*` groups), never a `config.yaml`/`config.yml` at any
depth nor a file whose content is a workspace config; then `includeTags`/`excludeTags` plus the tag flags
(any include tag selects, any exclude tag drops). The config is `--config FILE`, else the folder's
`config.yaml`, then `config.yml`. `executionOrder.flowsOrder` names flows (by `name:` or file stem) that
run first, in that order; `continueOnFailure: false` stops the rest after one of them fails. A single
flow file is that one flow: no config, no tag filter.

`appId` is evaluated as Maestro does, with the variables the flow will get (`-e`, `MAESTRO_*` shell
variables, the header's `env`): `${APP_ID}` and `${APP_ID || 'com.example.app'}` are the documented idioms.

The preflight parses every flow (a header document, `---`, then a list of commands), requires `appId`
(or `url`) in the header, and checks that every `runFlow`/`runScript` file exists, recursively.
Every problem is reported as `file:line: message`, all at once. `FlowFiles` keeps what it parsed, each
file parsed once, for `flowlint` to walk.

`Command`, `commands_of` and `flow_commands` are the one walk over a flow's command tree (nested
`commands:` of runFlow/retry/repeat and the header's onFlowStart/onFlowComplete); `flowlint` builds its
variable and cleanup checks on the same walk.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from . import jsexpr
from .console import relative_display
from .errors import ConfigError, FlowError

FLOW_SUFFIXES = (".yaml", ".yml")
WORKSPACE_CONFIGS = ("config.yaml", "config.yml")
# The keys of Maestro's WorkspaceConfig: a YAML file holding only these (and no `---`) is a config, not a flow.
WORKSPACE_CONFIG_KEYS = frozenset({"flows", "includeTags", "excludeTags", "local", "executionOrder", "baselineBranch",
                                   "notifications", "disableRetries", "platform", "testOutputDir"})
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
    app_id: str  # evaluated: `${APP_ID}` with --env APP_ID=com.x is com.x
    tags: tuple[str, ...] = ()
    app_id_source: str = ""  # as written in the header, when it differs (an expression)

    @property
    def key(self) -> str:
        """The flow's folder name under `flows/`: its whole file name, `/` written `%2F` (`%` as `%25`), so
        `x.yaml` and `x.yml`, `a/b.yaml` and `a__b.yaml` each get their own folder."""
        return self.file_name.replace("%", "%25").replace("/", "%2F")


@dataclass
class Selection:
    flows: list[Flow]  # the ordered flows (executionOrder) first, in their order, then the rest
    filtered_out: list[str] = field(default_factory=list)  # file names the tag filters left out
    sequence: tuple[str, ...] = ()  # file names of executionOrder.flowsOrder, in order
    continue_on_failure: bool = True  # executionOrder.continueOnFailure
    lacking_required: list[str] = field(default_factory=list)  # file names without a tag of validation.require_tags
    require_tags: tuple[str, ...] = ()


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

    def is_workspace_config(self, path: Path) -> bool:
        """The file (read once, as for the preflight) is one mapping of workspace config keys only, no `---`."""
        self._flow(path, sub_flow=False)
        documents = self._documents.get(path.resolve())
        if not isinstance(documents, _Documents) or len(documents.values) != 1:
            return False
        value = documents.values[0]
        return isinstance(value, dict) and bool(value) and all(str(k) in WORKSPACE_CONFIG_KEYS for k in value)

    def sub_flow(self, path: Path, command: Command) -> tuple[Path, ParsedFlow] | None:
        """The sub-flow `command` (in the flow at `path`) runs, parsed: runFlow and retry files, not scripts,
        not variable paths (resolved at run time), not missing or unparsable files (the preflight's problem)."""
        if command.file is None or command.name == "runScript" or "${" in command.file[0]:
            return None
        target = Path(os.path.normpath(path.parent / command.file[0]))  # one name per file: no a/../b
        if target.suffix not in FLOW_SUFFIXES or not target.is_file():
            return None
        parsed = self.get(target, sub_flow=True)
        return None if parsed is None else (target, parsed)

    def _flow(self, path: Path, sub_flow: bool) -> ParsedFlow | tuple[int, str]:
        key = path.resolve()
        if key not in self._documents:
            try:
                if path.stat().st_size > MAX_FLOW_BYTES:
                    return 1, (f"the file is larger than {MAX_FLOW_BYTES // 1024 // 1024} MiB, which no flow "
                               "needs: split it into sub-flows (runFlow), or check that it is the file you meant")
                text = path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                return 1, f"cannot read the file: {exc}"  # not kept: the message names the path as given
            self._documents[key] = _compose(text)
        documents = self._documents[key]
        return documents if isinstance(documents, tuple) else _flow_of(documents, sub_flow=sub_flow)


def _compose(text: str) -> _Documents | tuple[int, str]:
    """The YAML documents of a flow file, or (line, problem)."""
    try:
        loader = yaml.SafeLoader(text)  # inside the try: the reader refuses NUL, ESC, ... right here
    except yaml.reader.ReaderError as exc:
        return _reader_problem(text, exc)
    try:
        nodes: list[yaml.Node] = []
        while loader.check_node():
            node = loader.get_node()
            if node is not None:
                nodes.append(node)
        bomb = _alias_bomb(nodes)
        if bomb is not None:
            return bomb
        return _Documents(nodes, [loader.construct_document(n) for n in nodes])
    except yaml.MarkedYAMLError as exc:
        return _yaml_problem(exc)
    except yaml.YAMLError as exc:
        return 1, f"invalid YAML: {exc}"
    finally:
        loader.dispose()


def _reader_problem(text: str, exc: yaml.reader.ReaderError) -> tuple[int, str]:
    """(line, message) for a character YAML does not allow in a file (NUL, ESC, other control characters)."""
    char = exc.character if isinstance(exc.character, int) else ord(exc.character)
    return (text.count("\n", 0, exc.position) + 1,
            f"invalid YAML: control character U+{char:04X} is not allowed in a YAML file; remove it")


MAX_FLOW_BYTES = 1024 * 1024
MAX_EXPANDED_NODES = 100_000  # what the file's YAML aliases may expand to (a file without aliases is not limited)


def _alias_bomb(roots: list[yaml.Node]) -> tuple[int, str] | None:
    """(line, problem) when aliases (`*a`) make the documents expand far beyond the file, else None.

    Aliases share nodes, so composing is cheap; whoever walks the tree later (our checks, Maestro) pays
    for every expansion. Counted once per distinct node, so the check is linear in the file.
    """
    sizes: dict[int, int] = {}
    distinct = 0
    for root in roots:
        stack: list[tuple[yaml.Node, bool]] = [(root, False)]
        open_nodes: set[int] = set()
        while stack:
            node, children_done = stack.pop()
            if id(node) in sizes:
                continue
            children = [n for pair in node.value for n in pair] if isinstance(node, yaml.MappingNode) else (
                list(node.value) if isinstance(node, yaml.SequenceNode) else [])
            if children_done:
                open_nodes.discard(id(node))
                distinct += 1
                sizes[id(node)] = min(1 + sum(sizes[id(c)] for c in children), 10 * MAX_EXPANDED_NODES)
                continue
            if id(node) in open_nodes:
                return line_of(node), "a YAML alias refers to a node that contains it (an endless structure)"
            open_nodes.add(id(node))
            stack.append((node, True))
            stack.extend((child, False) for child in children if id(child) not in sizes)
    total = sum(sizes[id(root)] for root in roots)
    if total > max(MAX_EXPANDED_NODES, distinct):
        return line_of(roots[0]), (f"YAML aliases (*name) expand this file to over {MAX_EXPANDED_NODES} "
                                   "values (an alias bomb?): write the commands out or use runFlow sub-flows")
    return None


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


def flow_variables(header: dict[str, Any], variables: Mapping[str, str]) -> dict[str, str]:
    """The variables a flow sees: `variables` (-e and MAESTRO_* shell variables), then its header `env`,
    each value evaluated with what is defined before it (Maestro's DefineVariablesCommand)."""
    defined = dict(variables)
    env = header.get("env")
    for key, value in (env.items() if isinstance(env, dict) else ()):
        try:
            defined[str(key)] = jsexpr.evaluate_template("" if value is None else str(value), defined).text
        except jsexpr.Unsupported:
            continue  # not needed for appId; Maestro evaluates it at run time
    return defined


def _app_id(path: Path, raw: str, variables: Mapping[str, str], problems: Problems) -> str:
    """The appId Maestro will use: `raw` with its `${...}` evaluated; a problem when it comes out empty."""
    if "${" not in raw:
        return raw
    try:
        value = jsexpr.evaluate_template(raw, variables)
    except jsexpr.Unsupported:
        return ""  # JavaScript beyond the names and fallbacks appIds use: Maestro evaluates it; unknown here
    if value.empty or not value.text.strip():
        names = value.undefined or ("APP_ID",)
        sets = " and ".join(f"--env {name}=<package>" for name in names)
        problems.add(path, 1, f"appId '{raw}' is empty because {', '.join(names)} "
                              f"{'is' if len(names) == 1 else 'are'} not set: pass {sets} (or set it in validation.env "
                              f"in invoke.yaml, or as a MAESTRO_* shell variable), or give a fallback "
                              f"${{{names[0]} || 'com.example.app'}}")
        return ""
    return value.text


def load_flow(path: Path, root: Path, problems: Problems, files: FlowFiles,
              variables: Mapping[str, str] | None = None) -> Flow | None:
    """Parse (into `files`) and preflight one top-level flow, its sub-flows too; None if it does not parse.

    `variables` are those the run passes (-e and MAESTRO_* shell variables), for evaluating appId.
    """
    parsed = files.parse(path, problems, sub_flow=False)
    if parsed is None:
        return None
    header = parsed.header
    raw_app_id = header.get("appId") or header.get("url")
    app_id = ""
    if not raw_app_id or not isinstance(raw_app_id, str):
        problems.add(path, 1, "the header has no 'appId' (or 'url'): add 'appId: <your.package.name>'")
    elif "appId" in header:
        app_id = _app_id(path, raw_app_id, flow_variables(header, variables or {}), problems)
    else:
        app_id = raw_app_id  # a web flow's url
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
        app_id=app_id,
        tags=_tags(tags),
        app_id_source=raw_app_id if isinstance(raw_app_id, str) and raw_app_id != app_id else "",
    )


def _read_config(path: Path, problems: Problems) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.MarkedYAMLError as exc:
        problems.add(path, *_yaml_problem(exc))
        return {}
    except yaml.reader.ReaderError as exc:
        problems.add(path, *_reader_problem(path.read_text(encoding="utf-8"), exc))
        return {}
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        problems.add(path, 1, f"cannot read the workspace config: {exc}")
        return {}
    if not isinstance(data, dict):
        problems.add(path, 1, "the workspace config must be a mapping (flows:, includeTags:, ...)")
        return {}
    return data


def _workspace_config(folder: Path, problems: Problems, config: Path | None = None) -> tuple[Path | None, dict[str, Any]]:
    """`--config FILE`, else the folder's config.yaml, then config.yml (Maestro's order)."""
    if config is not None:
        return config, _read_config(config, problems)
    for name in WORKSPACE_CONFIGS:
        path = folder / name
        if path.is_file():
            return path, _read_config(path, problems)
    return None, {}


def _as_list(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    return [str(v) for v in value]


def java_glob(pattern: str) -> re.Pattern[str]:
    """A Java NIO `glob:` pattern (as Maestro matches `flows:`) as a regex over '/'-separated paths:
    `*` and `?` stay within one folder, `**` crosses folders, `{a,b}` is a group, `[...]` a class."""
    out, i, in_group = [], 0, False
    while i < len(pattern):
        char = pattern[i]
        if char == "*":
            if pattern.startswith("**", i):
                out.append(".*")
                i += 2
                continue
            out.append("[^/]*")
        elif char == "?":
            out.append("[^/]")
        elif char == "{" and not in_group:
            out.append("(?:")
            in_group = True
        elif char == "}" and in_group:
            out.append(")")
            in_group = False
        elif char == "," and in_group:
            out.append("|")
        elif char == "[":
            end = pattern.find("]", i + 1)
            if end == -1:
                out.append(re.escape(char))
            else:
                body = pattern[i + 1:end]
                negate = body.startswith("!")
                body = body[1:] if negate else body
                out.append("[" + ("^" if negate else "") + body.replace("\\", "\\\\").replace("/", "") + "]")
                i = end
        elif char == "\\" and i + 1 < len(pattern):
            i += 1
            out.append(re.escape(pattern[i]))
        else:
            out.append(re.escape(char))
        i += 1
    return re.compile("".join(out) + (")" if in_group else ""))


def is_flow_file(path: Path, config_path: Path | None) -> bool:
    """Maestro's isFlowFile by name: a .yaml/.yml file that is not the config nor named config.* (a file whose
    content is a workspace config is left out by `FlowFiles.is_workspace_config`, which reads it once)."""
    if not path.is_file() or path.suffix not in FLOW_SUFFIXES or path.stem == "config":
        return False
    return config_path is None or path.resolve() != config_path.resolve()


def _candidates(folder: Path, patterns: list[str], config_path: Path | None) -> list[Path]:
    """Files the globs match that may be flows (by name; `FlowFiles.is_workspace_config` checks content)."""
    matchers = [java_glob(p) for p in patterns]
    found = []
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder).as_posix()
        if any(m.fullmatch(relative) for m in matchers) and is_flow_file(path, config_path):
            found.append(path)
    return found


@dataclass
class Workspace:
    """The flow files a flows path stands for, as Maestro finds them, before any tag filter."""

    root: Path
    candidates: list[Path]
    include_tags: tuple[str, ...] = ()
    exclude_tags: tuple[str, ...] = ()
    single_file: bool = False  # one flow file: no config, no tag filter
    flows_order: tuple[str, ...] = ()  # executionOrder.flowsOrder: flow names
    continue_on_failure: bool = True
    config_path: Path | None = None


def _execution_order(config: dict[str, Any], config_path: Path | None, problems: Problems) -> tuple[tuple[str, ...], bool]:
    order = config.get("executionOrder")
    if order is None:
        return (), True
    where = config_path or Path("config.yaml")
    if not isinstance(order, dict):
        problems.add(where, 1, "'executionOrder' must be a mapping with flowsOrder: [flow names] and continueOnFailure")
        return (), True
    names = order.get("flowsOrder") or []
    if not isinstance(names, list):
        problems.add(where, 1, "'executionOrder.flowsOrder' must be a list of flow names")
        names = []
    keep_going = order.get("continueOnFailure", True)
    if not isinstance(keep_going, bool):
        problems.add(where, 1, "'executionOrder.continueOnFailure' must be true or false")
        keep_going = True
    return tuple(dict.fromkeys(str(n) for n in names)), keep_going


def find_workspace(
    flows_path: Path, problems: Problems, include_tags: tuple[str, ...] = (), exclude_tags: tuple[str, ...] = (),
    config: Path | None = None,
) -> Workspace:
    """The candidate flows of a folder (workspace config globs) or a single file; tags only combined."""
    if not flows_path.exists():
        raise ConfigError(
            f"the flows path '{flows_path}' does not exist",
            fix="pass --flows PATH (a folder of Maestro flows or one flow file) or set validation.flows in invoke.yaml",
        )
    if config is not None and not config.is_file():
        raise ConfigError(f"the workspace config '{config}' does not exist",
                          fix="pass --config with the path of a Maestro workspace config (config.yaml), or leave it out")
    if not flows_path.is_dir():  # Maestro: a single flow file runs as it is, whatever the config and tags say
        return Workspace(flows_path.parent, [flows_path], single_file=True)
    config_path, data = _workspace_config(flows_path, problems, config)
    candidates = _candidates(flows_path, _as_list(data.get("flows")) or ["*"], config_path)
    include = tuple(_as_list(data.get("includeTags"))) + include_tags
    exclude = tuple(_as_list(data.get("excludeTags"))) + exclude_tags
    order, keep_going = _execution_order(data, config_path, problems)
    return Workspace(flows_path, candidates, include, exclude, flows_order=order, continue_on_failure=keep_going,
                     config_path=config_path)


@dataclass
class Selected:
    """What a run selects (`select`), with everything the preflight parsed and found."""

    workspace: Workspace
    selection: Selection
    files: FlowFiles
    problems: Problems


def select(flows_path: Path, include_tags: tuple[str, ...] = (), exclude_tags: tuple[str, ...] = (),
           config: Path | None = None, variables: Mapping[str, str] | None = None,
           require_tags: tuple[str, ...] = ()) -> Selected:
    """The flows a run selects, in Maestro's way, preflighted; problems collected, not raised.

    Maestro's rule first: a flow with one of the include tags (config.yaml's `includeTags` plus `include_tags`,
    OR), none of the exclude tags. Then the production guard, which nothing widens: with `require_tags`
    (validation.require_tags) a flow must carry one of them, also when the flows path is one file, and
    `include_tags` (--include-tags) only narrows: the flow must carry one of those as well.
    """
    problems = Problems(Path.cwd())
    workspace = find_workspace(flows_path, problems, include_tags, exclude_tags, config)
    include, exclude = workspace.include_tags, workspace.exclude_tags
    files = FlowFiles()
    selected: list[Flow] = []
    filtered: list[str] = []
    lacking: list[str] = []
    for path in workspace.candidates:
        if not workspace.single_file and files.is_workspace_config(path):
            continue  # Maestro: a file whose content is a workspace config is never a flow
        flow = load_flow(path, workspace.root, problems, files, variables)
        if flow is None:
            continue
        tags = set(flow.tags)
        if require_tags and not tags & set(require_tags):
            lacking.append(flow.file_name)
            continue
        narrowed = bool(require_tags and include_tags and not tags & set(include_tags))
        if (include and not tags & set(include)) or (exclude and tags & set(exclude)) or narrowed:
            filtered.append(flow.file_name)
            continue
        selected.append(flow)
    by_name = {flow.name: flow for flow in selected}
    missing = [name for name in workspace.flows_order if name not in by_name]
    if missing:
        problems.add(workspace.config_path or flows_path, 1,
                     f"executionOrder.flowsOrder names flow(s) this run does not select: {', '.join(missing)}; check "
                     "the names (a flow's name: or its file name without extension), the flows globs and the tags")
    sequence = [by_name[name] for name in workspace.flows_order if name in by_name]
    rest = [flow for flow in selected if flow not in sequence]
    return Selected(workspace, Selection(sequence + rest, filtered, tuple(f.file_name for f in sequence),
                                         workspace.continue_on_failure, lacking, require_tags), files, problems)


def discover(
    flows_path: Path, include_tags: tuple[str, ...] = (), exclude_tags: tuple[str, ...] = (),
    config: Path | None = None, variables: Mapping[str, str] | None = None, require_tags: tuple[str, ...] = (),
) -> Selection:
    """Select and preflight the flows to run; raise FlowError listing every problem.

    `variables` are the -e values and MAESTRO_* shell variables the run passes (appId is evaluated with them).
    """
    chosen = select(flows_path, include_tags, exclude_tags, config, variables, require_tags)
    problems, selection, workspace = chosen.problems, chosen.selection, chosen.workspace
    include, exclude = workspace.include_tags, workspace.exclude_tags
    if problems.items:
        raise FlowError(problems.items, fix="correct the lines above; `invoke lint-flows` re-checks without a device")
    if not selection.flows:
        filtered = selection.filtered_out
        why = f"{len(filtered)} flow(s) filtered out by tags" if filtered else "no *.yaml or *.yml flow found"
        tag_text = f" (include: {','.join(include) or '-'}; exclude: {','.join(exclude) or '-'})" if filtered else ""
        if selection.lacking_required:
            why = (f"{len(selection.lacking_required)} flow(s) lack a required tag ({required_text(selection)})"
                   + (f", {why}" if filtered else ""))
            if require_tags and include_tags:
                tag_text += f"; --include-tags {','.join(include_tags)} only narrows the required tags"
        raise ConfigError(
            f"no flow selected in '{flows_path}': {why}{tag_text}",
            fix="check --flows, the workspace config.yaml 'flows' globs and the --include-tags/--exclude-tags filters"
                + ("; a flow runs in production only with a tag of validation.require_tags"
                   if selection.lacking_required else ""),
        )
    return selection


def required_text(selection: Selection) -> str:
    """The required tags as messages name them: `production (validation.require_tags)`."""
    return f"{' or '.join(selection.require_tags)}, validation.require_tags"


def shell_variables(environ: Mapping[str, str]) -> dict[str, str]:
    """The MAESTRO_* shell variables Maestro injects into every flow."""
    return {key: value for key, value in environ.items() if key.startswith("MAESTRO_")}
