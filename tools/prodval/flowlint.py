"""`invoke lint-flows`: the preflight of `validate` on every flow, plus variable and cleanup checks.

Built on `flows`: the same discovery (every flow the workspace `config.yaml` globs match, whatever
its tags), the same file checks, the same walk over the command tree, on the files the preflight parsed
(`FlowFiles`; nothing is parsed twice). On top of them:

Variables, as Maestro treats them. Undeclared names are `undefined` on purpose in Maestro's JavaScript,
so `${NAME || "default"}`, `when: {true: ${FLAG == 'true'}}` and optional launch `arguments` are idioms,
not mistakes, and built-in functions (`relativePoint(...)`, ...) are not variables. A name is reported
only where its use cannot work without it: a bare `${NAME}` (the whole expression is the name), outside
`when:` and launch `arguments`, that no path to it defines. Defined means:
- the flow header's `env` (so the documented default idiom `NAME: ${NAME || "x"}` is fine),
- the `env` of the `runFlow` that leads to a sub-flow or inline `commands` (and everything the caller has),
- the `-e` values the harness passes: `SKIP_DATA_CLEANUP`, `VALIDATION_RUN_ID` and the keys of
  `validation.env` in invoke.yaml (or `--env`), and the MAESTRO_* shell variables,
- Maestro's built-ins and any `MAESTRO_*` name, the JavaScript globals Maestro provides (`output`,
  `maestro`, ...) and names an `evalScript` assigns.
A sub-flow reached from several flows (or also run as a flow) is reported once, with a normalised path,
and only when none of its routes defines the name. The appId is evaluated by the preflight (flows.py).

What is linted is what `validate` would run: the same selection (workspace config globs, `--config`,
tags from the config and `--include-tags`/`--exclude-tags`), plus the sub-flows those flows reach.

Cleanup in production. In every flow a run selects (and the sub-flows it runs), whatever its tags, cleanup
must be guarded so that it does not run when the harness passes `SKIP_DATA_CLEANUP=true`: every run of
this harness is against production. With `validation.require_tags` (the project sets `production`) a flow
without a required tag is never selected, and `--include-tags` cannot widen that, so what is checked here
with the project's settings covers every flow any production run can select. Cleanup is a
`runFlow`/`runScript` of a file whose path mentions clean-up (`cleanup`, `clean-up`, `clean_up`, in any
folder or file name, e.g. `subflows/cleanup.yaml`) or any command whose `label` mentions it. Guarded
means the command, or a `runFlow` around it, has `when: true: ${SKIP_DATA_CLEANUP != 'true'}` (`!==`
and either quote work; it may be combined with other conditions by `&&`, not by `||`).
`clearState`/`clearKeychain` are not cleanup: they reset the app on the device, not data on the
server, and a production flow needs them to start as a fresh anonymous test user.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import date
from pathlib import Path

import yaml

from .console import relative_display
from .errors import ConfigError, FlowError
from .flows import (
    HOOKS,
    Command,
    Flow,
    FlowFiles,
    ParsedFlow,
    Problems,
    commands_of,
    flow_commands,
    hook_lists,
    line_of,
    required_text,
    select,
    shell_variables,
)
from .settings import RESERVED_FLOW_ENV, QuarantineEntry

PRODUCTION_TAG = "production"
GUARD_VARIABLE = "SKIP_DATA_CLEANUP"
GUARD_EXAMPLE = "when: {true: ${SKIP_DATA_CLEANUP != 'true'}}"
MAESTRO_BUILTINS = ("MAESTRO_FILENAME", "MAESTRO_DEVICE_UDID", "MAESTRO_SHARD_ID", "MAESTRO_SHARD_INDEX")
# Objects Maestro's JavaScript engine provides, and JavaScript's own globals and keywords.
JS_NAMES = frozenset({
    "output", "maestro", "faker", "http", "json", "console",
    "Math", "JSON", "Date", "String", "Number", "Boolean", "Array", "Object", "RegExp", "Error",
    "parseInt", "parseFloat", "isNaN", "isFinite", "encodeURIComponent", "decodeURIComponent", "encodeURI",
    "decodeURI", "undefined", "NaN", "Infinity",
    "true", "false", "null", "typeof", "instanceof", "new", "in", "of", "void", "delete", "this",
    "var", "let", "const", "function", "return", "if", "else",
    # Maestro's built-in JavaScript functions
    "relativePoint",
})

_CLEANUP = re.compile(r"clean[-_ ]?up", re.IGNORECASE)
_GUARD = re.compile(
    rf"""{GUARD_VARIABLE}\s*!==?\s*(['"])true\1|(['"])true\2\s*!==?\s*{GUARD_VARIABLE}"""
)
_STRING = re.compile(r"""'(?:\\.|[^'\\])*'|"(?:\\.|[^"\\])*"|`(?:\\.|[^`\\])*`""")
_NUMBER = re.compile(r"\b\d[\w.]*")
_IDENTIFIER = re.compile(r"(?<![\w$.])[A-Za-z_$][\w$]*")
_BARE = re.compile(r"^\s*([A-Za-z_$][\w$]*)\s*$")
# Where an undefined name is an idiom: a condition, optional launch arguments.
OPTIONAL_KEYS = ("when", "arguments")
_ASSIGNED = re.compile(r"^\s*(?:(?:var|let|const)\s+)?([A-Za-z_$][\w$]*)\s*=(?!=)")


@dataclass(frozen=True)
class LintReport:
    flows: tuple[Flow, ...]
    sub_flows: tuple[Path, ...]
    lacking_required: tuple[str, ...] = ()  # flows a run never selects: no tag of validation.require_tags


def expressions(text: str) -> Iterator[tuple[int, str]]:
    """(offset, body) of every `${...}` in a string; braces inside strings and objects are balanced."""
    start = text.find("${")
    while start != -1:
        depth, index, quote = 1, start + 2, ""
        while index < len(text) and depth:
            char = text[index]
            if quote:
                if char == "\\":
                    index += 1
                elif char == quote:
                    quote = ""
            elif char in "'\"`":
                quote = char
            elif char == "{":
                depth += 1
            elif char == "}":
                depth -= 1
            index += 1
        if depth:
            return  # unterminated: Maestro keeps it as text
        yield start, text[start + 2 : index - 1]
        start = text.find("${", index)


def identifiers(expression: str) -> list[str]:
    """The free variable names of a JavaScript expression (no literals, no property names, no object keys)."""
    code = _NUMBER.sub(" 0 ", _STRING.sub(" '' ", expression))
    names = []
    for match in _IDENTIFIER.finditer(code):
        before = code[: match.start()].rstrip()
        after = code[match.end() :].lstrip()
        if after.startswith(":") and not after.startswith("::") and before.endswith(("{", ",")):
            continue  # an object literal's key
        if match.group() not in names:
            names.append(match.group())
    return names


def is_guard(expression_text: str) -> bool:
    """True when a `when: true:` value is false whenever SKIP_DATA_CLEANUP is 'true'."""
    bodies = [body for _, body in expressions(expression_text)]
    return any("||" not in body and _GUARD.search(body) for body in bodies)


def _scalars(node: yaml.Node | None, skip: tuple[str, ...] = ()) -> Iterator[yaml.ScalarNode]:
    """Every scalar value below a node (mapping keys excluded), not entering keys named in `skip`."""
    if isinstance(node, yaml.ScalarNode):
        yield node
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            yield from _scalars(item)
    elif isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode) and key.value in skip:
                continue
            yield from _scalars(value)


def _mapping_keys(node: yaml.Node | None) -> set[str]:
    if not isinstance(node, yaml.MappingNode):
        return set()
    return {key.value for key, _ in node.value if isinstance(key, yaml.ScalarNode)}


def _expression_line(node: yaml.ScalarNode, offset: int) -> int:
    """The line of an expression inside a scalar: block scalars (`|`) keep their lines."""
    if node.style == "|":
        return line_of(node) + 1 + str(node.value).count("\n", 0, offset)
    return line_of(node)


@dataclass(frozen=True)
class _Context:
    defined: frozenset[str]
    production: bool
    guarded: bool = False
    via: tuple[str, ...] = ()  # the runFlow call sites that led here, for messages about sub-flows
    tags: tuple[str, ...] = ()  # the selected flow's, for messages


@dataclass
class _Linter:
    problems: Problems
    known: frozenset[str]
    files: FlowFiles  # parsed by the preflight, which reported their problems
    walked: set[Path] = field(default_factory=set)
    active: set[Path] = field(default_factory=set)
    seen_problems: set[tuple[Path, int, str]] = field(default_factory=set)
    # bare `${NAME}` uses: those some route defines, and the first route of those none has defined yet
    defined_uses: set[tuple[Path, int, str]] = field(default_factory=set)
    undefined_uses: dict[tuple[Path, int, str], tuple[Path, str, _Context]] = field(default_factory=dict)

    def add(self, path: Path, line: int, key: str, message: str, ctx: _Context) -> None:
        path = Path(os.path.normpath(path.absolute()))
        if (path.resolve(), line, key) in self.seen_problems:
            return
        self.seen_problems.add((path.resolve(), line, key))
        if ctx.via:
            message += f" (reached through {' -> '.join(ctx.via)})"
        self.problems.add(path, line, message)

    def report_undefined(self) -> None:
        """Bare names no route defined, once each."""
        for key, (path, message, ctx) in self.undefined_uses.items():
            if key not in self.defined_uses:
                self.add(path, key[1], f"var:{key[2]}", message, ctx)

    def assigned(self, path: Path, parsed: ParsedFlow, seen: set[Path]) -> set[str]:
        """Names an evalScript (`${NAME = ...}`) assigns in this flow or a sub-flow it runs: JavaScript
        globals for the rest of that flow. Per top-level flow, so one flow's names never excuse another's."""
        seen.add(path.resolve())
        names = _assigned_names(parsed)
        for command in flow_commands(parsed):
            sub = self.files.sub_flow(path, command)
            if sub is not None and sub[0].resolve() not in seen:
                names |= self.assigned(*sub, seen)
        return names

    # walking ---------------------------------------------------------------------------------------
    def flow(self, flow: Flow) -> None:
        parsed = self.files.get(flow.path, sub_flow=False)
        if parsed is not None:
            defined = self.known | self.assigned(flow.path, parsed, set())
            # every flow a run selects runs against production, whatever its tags
            self.file(flow.path, parsed, _Context(defined, True, tags=flow.tags))

    def file(self, path: Path, parsed: ParsedFlow, ctx: _Context) -> None:
        resolved = path.resolve()
        if resolved in self.active:
            return  # a sub-flow that runs itself: the preflight walks it once, so do we
        self.walked.add(resolved)
        self.active.add(resolved)
        try:
            env = parsed.header.get("env")
            keys = {str(k) for k in env} if isinstance(env, dict) else set()
            ctx = replace(ctx, defined=ctx.defined | keys)
            for node in _scalars(parsed.header_node, skip=(*HOOKS, "appId")):  # appId: the preflight's check
                self.variables(path, node, ctx)
            for hook in hook_lists(parsed.header_node):
                self.commands(path, hook, ctx)
            self.commands(path, parsed.commands_node, ctx)
        finally:
            self.active.discard(resolved)

    def commands(self, path: Path, node: yaml.Node | None, ctx: _Context) -> None:
        for command in commands_of(node):
            self.command(path, command, ctx)

    def command(self, path: Path, command: Command, ctx: _Context) -> None:
        when = command.option("when")
        guard = when is not None and any(
            is_guard(n.value) for n in _scalars(when) if isinstance(n, yaml.ScalarNode))
        inner = replace(ctx, guarded=ctx.guarded or guard)
        optional = OPTIONAL_KEYS if command.name in ("launchApp", "runFlow", "runScript") else ("when",)
        for node in _scalars(command.value, skip=("commands", *optional)):
            self.variables(path, node, ctx)
        cleanup = _cleanup_of(command)
        if cleanup and ctx.production and not inner.guarded:
            self.add(path, command.line, "cleanup",
                     f"cleanup ({cleanup}) in {_selected_flow(ctx.tags)} is not guarded: give it "
                     f"`{GUARD_EXAMPLE}` so it does not run against production, where the harness passes "
                     f"{GUARD_VARIABLE}=true", ctx)
        if command.name == "runFlow":
            inner = replace(inner, defined=inner.defined | _mapping_keys(command.option("env")))
        self.commands(path, command.nested, inner)
        sub = self.files.sub_flow(path, command)
        if sub is not None and command.file is not None:
            where = relative_display(Path(os.path.normpath(path.absolute())))
            self.file(*sub, replace(inner, via=(*ctx.via, f"{where}:{command.file[1]}")))

    def variables(self, path: Path, node: yaml.ScalarNode, ctx: _Context) -> None:
        if "${" not in node.value:
            return
        for offset, body in expressions(node.value):
            bare = _BARE.match(body)
            if bare is None:
                continue  # `${X || 'd'}`, `${X == 'true'}`, calls: undefined names are Maestro idioms there
            name = bare.group(1)
            if name.startswith("MAESTRO_"):
                continue
            key = (path.resolve(), _expression_line(node, offset), name)
            if name in ctx.defined:
                self.defined_uses.add(key)
                continue
            if key in self.undefined_uses:
                continue
            close = difflib.get_close_matches(name, sorted(ctx.defined - JS_NAMES), n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            self.undefined_uses[key] = (path, (
                f"variable '{name}' is never defined on any path to this line{hint}, so Maestro would use the "
                f"text 'undefined': pass it with --env {name}=... (or validation.env in invoke.yaml), define it in "
                f"the flow's env: or the calling runFlow's env:, or write ${{{name} || 'default'}} if it is optional "
                f"(the harness passes {', '.join(RESERVED_FLOW_ENV)} and those with -e)"), ctx)


def _selected_flow(tags: tuple[str, ...]) -> str:
    if PRODUCTION_TAG in tags:
        return f"a flow tagged '{PRODUCTION_TAG}'"
    shown = f"tagged {', '.join(repr(t) for t in tags)}" if tags else "without tags"
    return f"a flow a production run selects ({shown}, not '{PRODUCTION_TAG}')"


def _cleanup_of(command: Command) -> str:
    """What makes a command cleanup (for the message), or '' when it is not."""
    label = command.option("label")
    if isinstance(label, yaml.ScalarNode) and _CLEANUP.search(label.value):
        return f"{command.name} labelled '{label.value}'"
    if command.name in ("runFlow", "runScript") and command.file is not None:
        ref = command.file[0]
        if _CLEANUP.search(ref):
            return f"{command.name} {ref}"
    return ""


def _assigned_names(parsed: ParsedFlow) -> set[str]:
    """Names an evalScript assigns (`${NAME = ...}`): JavaScript globals from then on."""
    names: set[str] = set()
    for command in flow_commands(parsed):
        if command.name == "evalScript" and isinstance(command.value, yaml.ScalarNode):
            for _, body in expressions(command.value.value):
                for statement in body.split(";"):
                    match = _ASSIGNED.match(statement)
                    if match:
                        names.add(match.group(1))
    return names


def lint(flows_path: Path, flow_env: Iterable[str] | Mapping[str, str] = (), include_tags: tuple[str, ...] = (),
         exclude_tags: tuple[str, ...] = (), config: Path | None = None,
         environ: Mapping[str, str] | None = None, require_tags: tuple[str, ...] = ()) -> LintReport:
    """Check the flows a run would select (and their sub-flows); raise FlowError listing every problem.

    `flow_env` is what the harness passes with -e (validation.env and --env; names, or names and values
    for evaluating appId); `environ`'s MAESTRO_* variables are passed too, as Maestro injects them.
    """
    values = dict(flow_env) if isinstance(flow_env, Mapping) else {name: "" for name in flow_env}
    variables = {**shell_variables(environ or {}), **{name: "-" for name in RESERVED_FLOW_ENV}, **values}
    chosen = select(flows_path, include_tags, exclude_tags, config, variables, require_tags)
    problems, files = chosen.problems, chosen.files
    flows = chosen.selection.flows
    if not flows and not problems.items:
        why = (f"{len(chosen.selection.filtered_out)} flow(s) filtered out by tags" if chosen.selection.filtered_out
               else "top-level *.yaml or *.yml, or the config.yaml 'flows' globs")
        if chosen.selection.lacking_required:
            why += (f"; {len(chosen.selection.lacking_required)} without a required tag "
                    f"({required_text(chosen.selection)})")
        raise ConfigError(f"no flow found in '{flows_path}' ({why})",
                          fix="point --flows (or validation.flows) at the folder of Maestro flows, and check the tags")
    known = frozenset({*variables, *MAESTRO_BUILTINS, *JS_NAMES})
    linter = _Linter(problems, known, files)
    for flow in flows:
        linter.flow(flow)
    linter.report_undefined()
    if problems.items:
        raise FlowError(list(dict.fromkeys(problems.items)),
                        fix="correct the lines above, then run `invoke lint-flows` again")
    return LintReport(tuple(flows), tuple(sorted(linter.walked - {f.path.resolve() for f in flows})),
                      tuple(chosen.selection.lacking_required))


def quarantine_warnings(entries: Iterable[QuarantineEntry], flows: Iterable[Flow], today: date) -> list[str]:
    """What lint-flows says about validation.quarantine beyond expired entries: an entry that names no flow a
    run with these settings selects (a typo, or a flow renamed or deleted), and a selection that nothing gates."""
    names = [flow.file_name for flow in flows]
    warnings = []
    in_force = []
    for entry in entries:
        if entry.flow not in names:
            close = difflib.get_close_matches(entry.flow, names, n=1)
            warnings.append(f"{entry.describe()} names no flow this selection has"
                            + (f" (did you mean '{close[0]}'?)" if close else "")
                            + "; fix: use the flow's file name as the run records it (relative to the flows folder, "
                            "e.g. auth/login.yaml), or remove the entry")
        elif not entry.expired(today):
            in_force.append(entry.flow)
    if names and sorted(in_force) == sorted(names):
        warnings.append(f"every selected flow is quarantined ({', '.join(names)}): no failure can fail a run; fix "
                        "the flows, or shorten the quarantine in invoke.yaml (validation.quarantine)")
    return warnings
