"""Every setting of the invoke tasks, declared once, and the one cascade that resolves them.

    defaults (declared here) < the section in invoke.yaml < INVOKE_<SECTION>_<KEY> environment < command line

Each setting is a field of its section's frozen dataclass (`Settings` for `validation:`, `BuildSettings`,
`NotifySettings`, `EmulatorSettings`) whose metadata (`Setting`) holds its default as written in
`invoke.yaml`, its parser (which checks the value and says how to fix it), its help, its flag and the tasks
that take the flag. Everything else is derived from the declarations: what tasks.py registers with invoke
(`*_INVOKE_DEFAULTS`), the tasks' `--help` (`task_help`), the `INVOKE_*` names (`Setting.env_var`), and the
configuration tables of the docs (`docs_table`, checked by a test). The model is cibuildwheel's options.py
(https://github.com/pypa/cibuildwheel/blob/main/cibuildwheel/options.py): one declaration per option, one
resolver over the cascade.

Invoke itself merges the first three layers: the declared keys are registered with `Collection.configure`
as None (or {} for a mapping), so invoke's environment loader, which casts a variable to the type of the
value it overrides, hands us the raw text of `INVOKE_<SECTION>_<KEY>`. `resolve` applies the command line
on top, checks every key and value, and suggests a close match for unknown keys. Secrets are never
settings: they come from the environment only (see `secrets.py`).

A new setting is one more field; a new section one more dataclass with a `SECTION` and a `load_*`.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
import re
import shlex
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, ClassVar

import yaml

from .errors import ConfigError

# ---- the declarations' machinery ----------------------------------------------------------------------

# A parser gets the raw value (the declared default, invoke.yaml's, an INVOKE_* variable's text, or a flag's),
# the setting, and where the value came from ("default", "invoke.yaml", "environment" or "command line"); it
# returns the field's value or raises ConfigError naming the setting and the fix.
Parser = Callable[[Any, "Setting", str], Any]


@dataclass(frozen=True)
class Setting:
    """One setting, as declared in its field's metadata (`section`, `key` and `field` are filled in from the
    dataclass: see `declarations`)."""

    default: Any  # as written in invoke.yaml: what the parser gets when nothing else sets it
    parse: Parser
    help: str  # one line: the docs table's meaning, and the flag's --help with "(default ...)" added
    flag: str = ""  # the tasks' parameter (`flow_timeout` is --flow-timeout); "" when no task takes one
    tasks: tuple[str, ...] = ()  # the tasks that take the flag
    metavar: str = ""  # how the docs show the flag's value, e.g. I/N
    shown: str = ""  # the default as people read it, when the raw default does not say it (markdown)
    merge: bool = False  # NAME=VALUE pairs: each layer adds to the ones below instead of replacing them
    path: bool = False  # text that is a path (a Path value is one anyway): relative from the project root
    key: str = ""  # the key in invoke.yaml (default: the field's name)
    section: str = ""
    field: str = ""

    @property
    def name(self) -> str:
        return f"{self.section}.{self.key}"

    @property
    def env_var(self) -> str:
        """The variable invoke reads for this setting (not for a mapping: invoke cannot cast text into one)."""
        return f"INVOKE_{self.section.upper()}_{self.key.upper()}"

    @property
    def switch(self) -> bool:
        return isinstance(self.default, bool)

    def shown_default(self) -> str:
        """The default for the docs (markdown): `shown`, else the raw default in backticks, else (none)."""
        if self.shown:
            return self.shown
        if self.switch:
            return f"`{str(self.default).lower()}`"
        if self.merge:
            return "`{}`"
        return f"`{self.default}`" if self.default not in ("", None) else "(none)"

    def flag_help(self) -> str:
        """The flag's --help: the help, and the default unless the flag is a switch or there is none."""
        text = (self.help[:1].upper() + self.help[1:]).replace("`", "")
        default = self.shown_default().replace("`", "")
        if self.merge:  # invoke shows no value for a repeatable flag: say what it takes
            return f"{self.metavar} (repeatable): {text}"
        if self.switch or default == "(none)":
            return text
        if self.shown:  # words, not a value
            return f"{text} (default: {default.removeprefix('(').removesuffix(')')})"
        return f"{text} (default {default})"


_MISSING: Any = object()


def setting(default: Any, parse: Callable[..., Any], help: str, *, flag: str | bool = False,
            tasks: Iterable[str] = (), metavar: str = "", shown: str = "", merge: bool = False, key: str = "",
            value: Any = _MISSING, path: bool = False) -> Any:
    """A dataclass field declaring one setting. `flag=True` names the flag after the key. The field's own
    default is the parsed declared default (or `value`, when it depends on other settings)."""
    declared = Setting(default=default, parse=parse, help=help, flag=flag if isinstance(flag, str) else "",
                       tasks=tuple(tasks), metavar=metavar, shown=shown, merge=merge, key=key, path=path)
    if flag is True:
        declared = dataclasses.replace(declared, flag="\0")  # the key, filled in by `declarations`
    if value is _MISSING:
        value = () if merge else parse(default, declared, "default")
    return field(default=value, metadata={"setting": declared})


@dataclass(frozen=True)
class Section:
    """What a section's dataclass declares: its name in invoke.yaml (and in INVOKE_<SECTION>_*)."""

    SECTION: ClassVar[str]


_DECLARED: dict[str, tuple[Setting, ...]] = {}


def declarations(cls: type[Section]) -> tuple[Setting, ...]:
    """The settings `cls` declares, in order, with their section, key and field filled in."""
    if cls.SECTION in _DECLARED:
        return _DECLARED[cls.SECTION]
    found = []
    for f in dataclasses.fields(cls):
        declared = f.metadata.get("setting")
        if declared is None:
            continue
        key = declared.key or f.name
        found.append(dataclasses.replace(declared, section=cls.SECTION, key=key, field=f.name,
                                         flag=key if declared.flag == "\0" else declared.flag))
    _DECLARED[cls.SECTION] = tuple(found)
    return _DECLARED[cls.SECTION]


def defaults(cls: type[Section]) -> dict[str, Any]:
    """The declared defaults of a section, by key, as invoke.yaml would write them."""
    return {s.key: ({} if s.merge else s.default) for s in declarations(cls)}


def invoke_defaults(cls: type[Section]) -> dict[str, Any]:
    """What tasks.py registers with invoke: every key as None (a mapping as {}), so that invoke's environment
    loader hands us the raw text of INVOKE_<SECTION>_<KEY> to check rather than casting it."""
    return {s.key: ({} if s.merge else None) for s in declarations(cls)}


def env_layer(cls: type[Section], environ: Mapping[str, str]) -> dict[str, str]:
    """The INVOKE_<SECTION>_<KEY> variables of a section, by key: what invoke will merge (for code that runs
    before invoke has read them, like the boundary of a command line that did not parse)."""
    return {s.key: environ[s.env_var] for s in declarations(cls) if not s.merge and s.env_var in environ}


def given(value: Any) -> bool:
    """A layer sets a value unless it is None (registered, set nowhere), {} or an empty repeatable flag."""
    return value is not None and not (isinstance(value, (dict, list, tuple)) and not value)


def project_root(config: Any) -> Path | None:
    """Where invoke found the project (tasks.py, invoke.yaml): its configured paths' root (`from_project`)."""
    prefix = getattr(config, "_project_prefix", None)
    return Path(prefix) if isinstance(prefix, str) and prefix else None


def results_folder(given: Any, configured: Any, root: Path | None) -> Path:
    """The results folder before the settings are loaded (the chain's boundary, invoke's own errors), as the
    tasks resolve it: a typed --results-dir from the current folder, else validation.results_dir (or its
    default) from the project root."""
    if given:
        return Path(str(given))
    folder = Path(str(configured or DEFAULTS["results_dir"]))
    base = project_base(root)
    return Path(os.path.relpath(base / folder)) if base is not None else folder


def configured_deployed_sha(notify_section: Mapping[str, Any] | None) -> str | None:
    """notify.deployed_sha as configured (invoke.yaml or INVOKE_NOTIFY_DEPLOYED_SHA): the commit every stage
    records (`results.deployed_commit` falls back to GITHUB_SHA)."""
    value = (notify_section or {}).get("deployed_sha")
    return None if value is None else str(value)


def project_base(root: Path | None) -> Path | None:
    """Where the configuration's relative paths resolve from, when not from the current folder: the project root
    (the folder of tasks.py and invoke.yaml) when the current folder is below it. None (the current folder) when
    they are the same, or when invoke runs the project from elsewhere (`invoke --search-root PROJECT` in a
    workspace folder: the paths are that folder's)."""
    if root is None:
        return None
    cwd, project = Path.cwd().resolve(), root.resolve()
    return project if project in cwd.parents else None


def from_project(value: Any, s: Setting, origin: str, base: Path | None) -> Any:
    """A relative path from the defaults, invoke.yaml or INVOKE_* resolved from the project root (`base`), as
    a path relative to the current folder (`../.maestro` from android/); one typed on the command line is the
    current folder's, as with any command."""
    if base is None or origin == "command line":
        return value
    if isinstance(value, Path) and str(value) and not value.is_absolute():
        return Path(os.path.relpath(base / value))
    if s.path and isinstance(value, str) and value and not os.path.isabs(value):
        return os.path.relpath(base / value)
    return value


def resolve(cls: type[Section], section: Mapping[str, Any] | None, flags: Mapping[str, Any],
            keys: Iterable[str] | None = None, environ: Mapping[str, str] | None = None,
            root: Path | None = None) -> dict[str, Any]:
    """The values of `cls`'s settings (by field) from the cascade: declared default < `section` (invoke.yaml <
    INVOKE_*, as invoke merged them) < the raw INVOKE_<SECTION>_<KEY> text of `environ` < `flags` (the task's
    parameters; None, an empty list and an unset switch do not override). The environment is read again
    because invoke casts a variable to the type of the invoke.yaml value it overrides (`wipe: true` in
    invoke.yaml and INVOKE_EMULATOR_WIPE=false would be True). Unknown keys in the section are refused with a
    did-you-mean; `keys` limits the resolution to some settings (another section's results folder, say) and
    then checks nothing else. `root` is the project root: see `from_project`."""
    declared = declarations(cls)
    base = project_base(root)
    layer = {key: value for key, value in (section or {}).items() if given(value)}
    variables = env_layer(cls, environ) if environ is not None else {}
    if keys is None:
        check_known_keys(layer, {s.key: None for s in declared}, cls.SECTION)
    wanted = None if keys is None else set(keys)
    values: dict[str, Any] = {}
    for s in declared:
        if wanted is not None and s.key not in wanted:
            continue
        flag = flags.get(s.flag) if s.flag else None
        if s.switch and flag is False:
            flag = None  # a switch cannot say "no": not given
        cascade = [(s.default, "default"), (layer.get(s.key), "invoke.yaml"), (variables.get(s.key), "environment"),
                   (flag, "command line")]
        present = [(value, origin) for value, origin in cascade if given(value)]
        if s.merge:  # NAME=VALUE pairs: each layer adds to (and overrides names of) the ones below
            pairs: dict[str, str] = {}
            for value, origin in present:
                pairs.update(s.parse(value, s, origin))
            values[s.field] = tuple(sorted(pairs.items()))
        else:
            value, origin = present[-1] if present else (s.default, "default")
            values[s.field] = from_project(s.parse(value, s, origin), s, origin, base)
    return values


def check_known_keys(section: Mapping[str, Any], known: Mapping[str, Any], where: str) -> None:
    unknown = [k for k in section if k not in known]
    if not unknown:
        return
    problems = []
    for key in unknown:
        close = difflib.get_close_matches(key, list(known), n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        problems.append(f"unknown setting '{where}.{key}'{hint}")
    raise ConfigError("; ".join(problems), fix=f"known settings under {where}: {', '.join(sorted(known))}")


# ---- parsers (each: raw value, the setting, where it came from) ------------------------------------------

def number(*, minimum: float, whole: bool = False, positive: bool = False, maximum: float = math.inf) -> Parser:
    """A number from invoke.yaml, the environment (text) or a flag; the fix suggests the declared default.

    `minimum` is inclusive; `positive` means strictly above zero (seconds to wait, for instance).
    """
    def parse(value: Any, s: Setting, origin: str = "") -> float:
        checked = _number(value, s.name, s.default, minimum=minimum, whole=whole, positive=positive,
                          maximum=maximum)
        return int(checked) if whole else checked
    return parse


def _number(value: Any, where: str, example: Any, *, minimum: float, whole: bool = False,
            positive: bool = False, maximum: float = math.inf) -> float:
    kind = "a whole number" if whole else "a positive number" if positive else "a number"
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = float("nan")
    fix = f"set {where.rsplit('.', 1)[-1]} to a number such as {example}"
    if isinstance(value, bool) or math.isnan(number) or (whole and number != int(number)):
        raise ConfigError(f"{where} must be {kind}, got {value!r}", fix=fix)
    if positive and number <= 0:
        raise ConfigError(f"{where} must be a positive number, got {value!r}", fix=fix)
    if number < minimum:
        raise ConfigError(f"{where} must be at least {minimum:g}, got {value!r}", fix=fix)
    if math.isinf(number) or number > maximum:
        limit = f"at most {maximum:g}" if math.isfinite(maximum) else "finite"
        raise ConfigError(f"{where} must be {limit}, got {value!r}", fix=fix)
    return number


def _text(value: Any) -> str:
    return "" if value is None else str(value).strip()


def text(pattern: str | None = None, example: str = "", *, required: bool = False, or_default: bool = False) -> Parser:
    """Stripped text. With `pattern`, a non-empty value (any value when `required`) must match it; with
    `or_default`, an empty value means the declared default."""
    compiled = re.compile(pattern) if pattern else None

    def parse(value: Any, s: Setting, origin: str = "") -> str:
        checked = _text(value)
        if compiled is not None and (checked or required) and not compiled.match(checked):
            raise ConfigError(f"{s.name} is not valid: {value!r}", fix=f"set {s.key} to something like {example}")
        return checked or (str(s.default) if or_default else "")
    return parse


def boolean(value: Any, s: Setting, origin: str = "") -> bool:
    if isinstance(value, bool):
        return value
    checked = str(value).strip().lower()
    if checked in ("1", "true", "yes", "on"):
        return True
    if checked in ("0", "false", "no", "off", ""):
        return False
    raise ConfigError(f"{s.name} must be true or false, got {value!r}", fix=f"set {s.key}: true or {s.key}: false")


def folder(fix: str) -> Parser:
    """A path that must not be empty."""
    def parse(value: Any, s: Setting, origin: str = "") -> Path:
        checked = _text(value)
        if not checked:
            raise ConfigError(f"{s.name} is empty", fix=fix)
        return Path(checked)
    return parse


def optional_path(value: Any, s: Setting, origin: str = "") -> Path | None:
    checked = _text(value)
    return Path(checked) if checked else None


def comma_list(value: Any, s: Setting, origin: str = "") -> tuple[str, ...]:
    return tuple(d.strip() for d in str(value or "").split(",") if d.strip())


def words(value: Any, s: Setting, origin: str = "") -> tuple[str, ...]:
    """A command line: a list as it is, or text split like a shell does."""
    if isinstance(value, (list, tuple)):
        return tuple(str(o) for o in value)
    try:
        return tuple(shlex.split(str(value or "")))
    except ValueError as exc:
        raise ConfigError(f"{s.name} cannot be split into words: {exc}", fix="check its quotes") from None


def _pairs(pairs: Mapping[str, Any] | list[str] | tuple[str, ...], origin: str, form: str, flag: str) -> list[tuple[str, str]]:
    """NAME=VALUE items from a mapping (invoke.yaml) or strings (a repeatable flag)."""
    if isinstance(pairs, Mapping):
        return [(str(k), "" if v is None else str(v)) for k, v in pairs.items()]
    items = []
    for pair in pairs:
        key, sep, value = str(pair).partition("=")
        if not sep:
            raise ConfigError(f"{origin}: '{pair}' is not {form}", fix=f"pass it as {flag} {form}")
        items.append((key.strip(), value))
    return items


def _origin(s: Setting, origin: str) -> str:
    """Where NAME=VALUE pairs came from, as their errors say it."""
    return f"--{s.flag.replace('_', '-')}" if origin == "command line" else f"{s.name} in invoke.yaml"


# ---- `invoke validate` (and the results folder of every task): the `validation:` section -------------------

MAX_RETRIES = 10
MAX_FLOW_TIMEOUT = 24 * 3600  # a flow that needs longer than a day is hung
_ENV_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# Flow variables the harness sets itself; a user value would silently change production behaviour.
RESERVED_FLOW_ENV = ("SKIP_DATA_CLEANUP", "VALIDATION_RUN_ID")
RESULTS_TASKS = ("validate", "merge-results", "report", "build-apk", "notify", "emulator.start", "emulator.stop",
                 "emulator.status")
FLOW_TASKS = ("validate", "lint-flows")


def parse_env_pairs(pairs: Mapping[str, Any] | list[str] | tuple[str, ...], origin: str) -> dict[str, str]:
    """Flow variables from a mapping (invoke.yaml) or KEY=VALUE strings (--env)."""
    result: dict[str, str] = {}
    for key, value in _pairs(pairs, origin, "KEY=VALUE", "--env"):
        if not _ENV_KEY.match(key):
            raise ConfigError(f"{origin}: '{key}' is not a valid variable name",
                              fix="use letters, digits and underscores, not starting with a digit")
        if key in RESERVED_FLOW_ENV:
            raise ConfigError(f"{origin}: {key} is set by the harness itself and cannot be overridden",
                              fix=f"remove {key}; production runs always pass SKIP_DATA_CLEANUP=true")
        result[key] = value
    return result


def _flow_env(value: Any, s: Setting, origin: str) -> dict[str, str]:
    return parse_env_pairs(value, _origin(s, origin))


def _tags(value: Any, s: Setting, origin: str = "") -> tuple[str, ...]:
    if value is None or value == "":
        return ()
    if isinstance(value, str):
        items = value.split(",")
    elif isinstance(value, (list, tuple)):
        items = [str(v) for v in value]
    else:
        raise ConfigError(f"{s.name} must be a comma-separated list of tags, got {value!r}",
                          fix=f"write {s.key}: \"smoke,production\"")
    return tuple(t.strip() for t in items if t.strip())


def _shard(value: Any, s: Setting, origin: str = "") -> tuple[int, int] | None:
    if value in (None, ""):
        return None
    index, sep, count = str(value).partition("/")
    try:
        shard = (int(index), int(count))
    except ValueError:
        shard = (0, 0)
    if not sep or not 1 <= shard[0] <= shard[1]:
        raise ConfigError(f"{s.name} must be I/N with 1 <= I <= N, got {value!r}",
                          fix="pass e.g. --shard 2/4 for the second of four shards")
    return shard


def _secret_env(value: Any, s: Setting, origin: str = "") -> tuple[str, ...]:
    """Variable names (a list, or comma-separated text)."""
    items = value if isinstance(value, (list, tuple)) else str(value or "").split(",")
    names = tuple(str(n).strip() for n in items if str(n).strip())
    for name in names:
        if not _ENV_KEY.match(name):
            raise ConfigError(f"{s.name}: '{name}' is not a variable name",
                              fix="list variable names such as MY_SESSION_COOKIE, comma-separated")
    return names


# ---- validation.quarantine: flows that run but do not gate, each until a date ---------------------------

QUARANTINE_KEYS = ("flow", "reason", "owner", "until")
QUARANTINE_EXAMPLE = ("quarantine: [{flow: checkout.yaml, reason: \"payment sandbox times out (JIRA-123)\", "
                      "owner: \"@payments\", until: 2026-12-31}]")
_ISO_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def utc_today() -> date:
    """The day a quarantine is judged on: UTC's (the runners' clock), so `until: 2026-12-31` holds through
    2026-12-31 23:59 UTC."""
    return datetime.now(UTC).date()


@dataclass(frozen=True)
class QuarantineEntry:
    """One `validation.quarantine` entry: `flow` (its file name as recorded, `flowFileName`) still runs and is
    recorded, but does not gate the run through `until` (inclusive, a UTC day); from the next day it gates again."""

    flow: str
    reason: str
    owner: str
    until: date
    position: int = 0  # 1-based place in the list, as messages name it

    def expired(self, today: date) -> bool:
        return today > self.until

    def to_record(self) -> dict[str, str]:
        """`FlowResult.quarantine` in results.json."""
        return {"reason": self.reason, "owner": self.owner, "until": self.until.isoformat()}

    def describe(self) -> str:
        return f"validation.quarantine entry {self.position} (flow '{self.flow}')"

    def expiry_warning(self) -> str:
        """What validate and lint-flows say, loudly, once the entry has expired."""
        return (f"{self.flow}: its quarantine (owner {self.owner}: {self.reason}) ended on {self.until.isoformat()}; "
                f"the flow gates again, so its failure fails the run. Fix: renew it (a later `until`) or remove "
                f"{self.describe()} from invoke.yaml")


def _quarantine_entry(raw: Any, position: int, where: str) -> QuarantineEntry:
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where}: entry {position} is not a mapping of {', '.join(QUARANTINE_KEYS)}, got {raw!r}",
                          fix=f"write each entry as a mapping, e.g. {QUARANTINE_EXAMPLE}")
    flow = raw.get("flow")
    label = f"{where}: entry {position}" + (f" (flow '{flow}')" if isinstance(flow, str) and flow.strip() else "")
    fix = f"give every entry flow, reason, owner and until (YYYY-MM-DD), e.g. {QUARANTINE_EXAMPLE}"
    unknown = [str(key) for key in raw if key not in QUARANTINE_KEYS]
    if unknown:
        hints = []
        for key in unknown:
            close = difflib.get_close_matches(key, QUARANTINE_KEYS, n=1)
            hints.append(f"'{key}'" + (f" (did you mean '{close[0]}'?)" if close else ""))
        raise ConfigError(f"{label}: unknown key {', '.join(hints)}", fix=fix)
    missing = [key for key in QUARANTINE_KEYS if raw.get(key) is None or str(raw.get(key)).strip() == ""]
    if missing:
        raise ConfigError(f"{label}: {' and '.join(repr(k) for k in missing)} "
                          f"{'is' if len(missing) == 1 else 'are'} missing or empty", fix=fix)
    texts: dict[str, str] = {}
    for key in ("flow", "reason", "owner"):
        value = raw[key]
        if isinstance(value, (Mapping, list, tuple, bool)):
            raise ConfigError(f"{label}: '{key}' must be text, got {value!r}", fix=fix)
        texts[key] = str(value).strip()
    until = raw["until"]
    if isinstance(until, datetime) or not isinstance(until, (date, str)):
        raise ConfigError(f"{label}: 'until' must be a day written YYYY-MM-DD, got {until!r}", fix=fix)
    if isinstance(until, str):
        try:
            if not _ISO_DAY.match(until.strip()):
                raise ValueError(until)
            until = date.fromisoformat(until.strip())
        except ValueError:
            raise ConfigError(f"{label}: 'until' must be a day written YYYY-MM-DD, got {until!r}", fix=fix) from None
    return QuarantineEntry(flow=texts["flow"], reason=texts["reason"], owner=texts["owner"], until=until,
                           position=position)


def _quarantine(value: Any, s: Setting, origin: str = "") -> tuple[QuarantineEntry, ...]:
    """The entries of `validation.quarantine`: a list in invoke.yaml, or the same list as YAML text in
    INVOKE_VALIDATION_QUARANTINE."""
    where = f"{s.name} ({s.env_var})" if origin == "environment" else f"{s.name} in invoke.yaml"
    if isinstance(value, str):
        try:
            value = yaml.safe_load(value) if value.strip() else None
        except (yaml.YAMLError, ValueError) as exc:
            raise ConfigError(f"{where} is not valid YAML: {exc}",
                              fix=f"write it as a YAML list, e.g. {QUARANTINE_EXAMPLE}") from None
    if value is None:
        return ()
    if not isinstance(value, (list, tuple)):
        raise ConfigError(f"{where} must be a list of entries, got {value!r}",
                          fix=f"write it as a list, e.g. {QUARANTINE_EXAMPLE}")
    entries = tuple(_quarantine_entry(raw, position, where) for position, raw in enumerate(value, 1))
    first: dict[str, QuarantineEntry] = {}
    for entry in entries:
        if entry.flow in first:
            raise ConfigError(f"{where}: entries {first[entry.flow].position} and {entry.position} both name flow "
                              f"'{entry.flow}'", fix="keep one entry per flow")
        first[entry.flow] = entry
    return entries


@dataclass(frozen=True)
class Settings(Section):
    SECTION: ClassVar[str] = "validation"

    flows: Path = setting(".maestro", folder("point it at the folder of Maestro flows, e.g. .maestro"),
                          "folder of flows, or one flow file", flag=True, tasks=FLOW_TASKS)
    results_dir: Path = setting("build/validation", folder("set it to a folder such as build/validation"),
                                "where the run record (results.json), junit.xml, summary.md, report.html and the "
                                "artifacts go: the chain's one folder", flag=True, tasks=RESULTS_TASKS)
    apk: Path | None = setting("", optional_path, "APK installed (adb install -r -g) before running", flag=True,
                               tasks=("validate",), shown="(the one `build-apk` recorded)")
    # serials to run on (comma-separated on the command line)
    device: tuple[str, ...] = setting("", comma_list, "the device to run on (its adb serial), or several "
                                      "comma-separated", flag=True, tasks=("validate",),
                                      shown="(the single booted device)")
    include_tags: tuple[str, ...] = setting("", _tags, "run only flows with one of these tags (comma-separated; "
                                            "adds to config.yaml's `includeTags`, as in Maestro; with `require_tags` "
                                            "it narrows: a flow needs one of these and a required one)", flag=True,
                                            tasks=FLOW_TASKS)
    exclude_tags: tuple[str, ...] = setting("", _tags, "skip flows with any of these tags (comma-separated; adds "
                                            "to config.yaml)", flag=True, tasks=FLOW_TASKS)
    require_tags: tuple[str, ...] = setting("", _tags, "the production guard: every flow a run selects must carry "
                                            "one of these tags (comma-separated); unlike Maestro's tags nothing "
                                            "widens it: `--include-tags` only narrows within it, and a flows path "
                                            "of one file must carry it too. No flag")
    quarantine: tuple[QuarantineEntry, ...] = setting(
        "", _quarantine, "flows that still run but do not gate: a list of `{flow, reason, owner, until: YYYY-MM-DD}` "
        "(`flow` is the file name as recorded); from the day after `until` (UTC) the flow gates again",
        shown="(none)")
    config: Path | None = setting("", optional_path, "Maestro workspace config (`flows`, tags, "
                                  "`executionOrder`)", flag=True, tasks=FLOW_TASKS,
                                  shown="the flows folder's `config.yaml`, then `config.yml`")
    retries: int = setting(1, number(minimum=0, whole=True, maximum=MAX_RETRIES),
                           "retries of a flow that did not pass (at most 10); a pass after a failure is 'flaky'",
                           flag=True, tasks=("validate",))
    flow_timeout: float = setting(600, number(minimum=0, positive=True, maximum=MAX_FLOW_TIMEOUT),
                                  "seconds before a flow's whole process tree is killed (finite, at most 86400)",
                                  flag=True, tasks=("validate",))
    install_timeout: float = setting(300, number(minimum=0, positive=True, maximum=MAX_FLOW_TIMEOUT),
                                     "seconds `adb install` of the APK may take")
    secret_env: tuple[str, ...] = setting("", _secret_env, "more variable names (comma-separated), from the "
                                          "environment or `env`, whose values are masked")
    env: tuple[tuple[str, str], ...] = setting({}, _flow_env, "extra flow variables, passed to Maestro with -e; "
                                               "`SKIP_DATA_CLEANUP` and `VALIDATION_RUN_ID` are the harness's own",
                                               flag=True, tasks=FLOW_TASKS, metavar="KEY=VALUE", merge=True)
    maestro: str = setting("", text(), "path of the maestro executable",
                           shown="`PATH`, then `~/.maestro/bin/maestro`")
    adb: str = setting("", text(), "path of adb",
                       shown="`$ANDROID_HOME/platform-tools/adb` (or `$ANDROID_SDK_ROOT`), then `PATH`")
    driver_startup_timeout: int = setting(180000, number(minimum=1000, whole=True),
                                          "ms, passed as `MAESTRO_DRIVER_STARTUP_TIMEOUT`")
    devices: int = setting(1, number(minimum=1, whole=True), "devices to run flows on at once from one queue "
                           "(emulators are booted for the missing ones)", flag=True, tasks=("validate",))
    shard: tuple[int, int] | None = setting("", _shard, "run only share I of N of the flows (e.g. 2/4), balanced "
                                            "by recorded durations", flag=True, tasks=("validate",), metavar="I/N")
    timings: Path | None = setting("", optional_path, "a `results.json` or `timings.json` whose durations order "
                                   "(and, for shards, balance) the flows", flag=True, tasks=("validate",),
                                   shown="the results folder's `timings.json`")
    session_wait: float = setting(22, number(minimum=0), "seconds a device rests after a SIGKILLed flow "
                                  "(Maestro's stale session window is 21 s)")
    device_wait: float = setting(600, number(minimum=0), "seconds to wait for a device another run (in another "
                                 "results folder) is driving, before giving up with exit 2")
    released_apk: str = setting("", text(), "the released app (the APK in users' hands): a path or a glob (several "
                                "match: the highest versionCode); each failed flow runs again with it to tell "
                                "`current-users` from `new-build-only` (impact triage)", path=True,
                                shown="(none: impact triage is off)")
    video: bool = setting(True, boolean, "record each flow attempt's screen (`adb shell screenrecord`, 3-minute "
                          "segments chained); the video is kept only for attempts that did not pass")
    video_budget_mb: float = setting(200, number(minimum=0), "megabytes (10^6 bytes) of screen recordings one "
                                     "run keeps at most; after that, attempts keep none and say so")

    @property
    def flow_env(self) -> dict[str, str]:
        return dict(self.env)


SECTION = Settings.SECTION
DEFAULTS: dict[str, Any] = defaults(Settings)
INVOKE_DEFAULTS: dict[str, Any] = invoke_defaults(Settings)


def load(section: Mapping[str, Any], cli: Mapping[str, Any], environ: Mapping[str, str] | None = None,
         root: Path | None = None) -> Settings:
    """Settings from the merged invoke `validation` section and the task's flags (None: not given)."""
    return Settings(**resolve(Settings, section, cli, environ=environ, root=root))


def _validation(validation: Mapping[str, Any], cli: Mapping[str, Any], environ: Mapping[str, str] | None,
                root: Path | None = None) -> dict[str, Any]:
    """What another section's task takes from `validation:`: the results folder (--results-dir) and the
    names of more secrets; the rest of `validation:` is validate's to check."""
    return resolve(Settings, validation, cli, keys=("results_dir", "secret_env"), environ=environ, root=root)


# ---- `invoke build-apk`: the `build:` section ---------------------------------------------------------
# The results folder is the chain's one (`validation.results_dir`, or --results-dir), so validate and notify
# find the record.

_PROPERTY_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]*$")


def _gradle_properties(value: Any, s: Setting, origin: str) -> dict[str, str]:
    where = _origin(s, origin)
    items = _pairs(value, where, "NAME=VALUE", "--property")
    for key, _ in items:
        if not _PROPERTY_NAME.match(key):
            raise ConfigError(f"{where}: '{key}' is not a valid Gradle property name",
                              fix="use letters, digits, '_' and '.', not starting with a digit")
    return dict(items)


def _apk_name(value: Any, s: Setting, origin: str = "") -> str:
    name = _text(value)
    if not name.endswith(".apk") or "/" in name or name.startswith("."):
        raise ConfigError(f"{s.name} must be a file name ending in .apk, got {name!r}",
                          fix="set it to e.g. app-production.apk")
    return name


def _property_prefix(value: Any, s: Setting, origin: str = "") -> str:
    prefix = str(value or "")
    if prefix and not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", prefix):
        raise ConfigError(f"{s.name} is not valid: {prefix!r}",
                          fix="use letters, digits and '_', e.g. RELEASE_ or MYAPP_UPLOAD_")
    return prefix


@dataclass(frozen=True)
class BuildSettings(Section):
    SECTION: ClassVar[str] = "build"

    project_dir: Path = setting("android", folder("set it to the Android project folder, e.g. android"),
                                "where the build runs (Gradle: the Android project)", flag=True, tasks=("build-apk",))
    module: str = setting("app", text(r"^[A-Za-z0-9_-]+(?::[A-Za-z0-9_-]+)*$", "app", required=True),
                          "the Gradle module")
    variant: str = setting("release", text(r"^[A-Za-z][A-Za-z0-9]*$", "release or productionRelease", required=True),
                           "build variant (with flavors e.g. productionRelease)", flag=True, tasks=("build-apk",))
    command: tuple[str, ...] = setting("", words, "the build command instead of Gradle's (e.g. an EAS local build)",
                                       flag=True, tasks=("build-apk",), shown="`./gradlew :<module>:assemble<Variant>`")
    output: str = setting("", text(), "path or glob of the APK a custom command writes (from the repository root)",
                          flag=True, tasks=("build-apk",), shown="Gradle's outputs", path=True)
    abi: str = setting("x86_64", text(), "which ABI split to take when the build splits APKs by ABI", flag=True,
                       tasks=("build-apk",))
    properties: tuple[tuple[str, str], ...] = setting(
        {}, _gradle_properties, "Gradle project properties: production settings such as API_BASE_URL",
        flag="property", tasks=("build-apk",), metavar="NAME=VALUE", merge=True)
    signing_property_prefix: str = setting("RELEASE_", _property_prefix, "prefix of the signing properties "
                                           "(<prefix>STORE_FILE, _STORE_PASSWORD, _KEY_ALIAS, _KEY_PASSWORD)")
    apk_name: str = setting("app-production.apk", _apk_name, "the APK's copy in the results folder")
    timeout: float = setting(3600, number(minimum=0, positive=True),
                             "seconds before the build's process tree is stopped")
    results_dir: Path = Path(DEFAULTS["results_dir"])  # validation.results_dir, or --results-dir
    secret_env: tuple[str, ...] = ()  # validation.secret_env


BUILD_SECTION = BuildSettings.SECTION


def load_build(section: Mapping[str, Any], validation: Mapping[str, Any], cli: Mapping[str, Any],
               environ: Mapping[str, str] | None = None, root: Path | None = None) -> BuildSettings:
    """BuildSettings from the merged `build:` section, the `validation:` section (results folder) and flags."""
    return BuildSettings(**resolve(BuildSettings, section, cli, environ=environ, root=root),
                         **_validation(validation, cli, environ, root))


# --- `invoke notify` ------------------------------------------------------------------------------
# The `notify:` section holds what is not secret; the channels' secrets and addresses come from the
# environment only (SLACK_WEBHOOK_URL, SMTP_*, ALERT_EMAIL_*, PAGERDUTY_*, GITHUB_*): see alerts/.

NOTIFY_ON = ("failure", "always")


def _alert_on(value: Any, s: Setting, origin: str = "") -> str:
    on = _text(value).lower()
    if on not in NOTIFY_ON:
        close = difflib.get_close_matches(on, NOTIFY_ON, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise ConfigError(f"{s.name} (--on) must be one of {', '.join(NOTIFY_ON)}, got {value!r}{hint}",
                          fix="use --on failure (alert on fail, error and recovery) or --on always")
    return on


IMPACTS = ("current-users", "new-build-only", "unknown")  # a failed flow's impact (impact.py)


def _impacts(value: Any, s: Setting, origin: str = "") -> tuple[str, ...]:
    chosen = comma_list(value, s, origin)
    for impact in chosen:
        if impact not in IMPACTS:
            close = difflib.get_close_matches(impact, IMPACTS, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise ConfigError(f"{s.name} names an unknown impact {impact!r}{hint}",
                              fix=f"list some of {', '.join(IMPACTS)}, comma-separated (empty: never page on a failure)")
    return chosen


@dataclass(frozen=True)
class NotifySettings(Section):
    SECTION: ClassVar[str] = "notify"

    # (Not "on": YAML reads an unquoted `on` key as the boolean true.)
    on: str = setting("failure", _alert_on, "`failure`: alert on fail and error, and a recovery message after a "
                      "failed run; `always`: every run (the key is not `on`: YAML reads that as `true`)",
                      key="alert_on", flag="on", tasks=("notify",))
    environment: str = setting("production", text(or_default=True), "named in alerts and in PagerDuty's dedup key")
    check_name: str = setting("production-validation", text(or_default=True),
                              "the commit status context and part of the dedup key")
    deployed_sha: str = setting("", text(), "the deployed commit: every stage records it and the status goes on "
                                "it (after `workflow_run` pass its `head_sha`)", shown="`GITHUB_SHA`")
    artifacts_url: str = setting("", text(), "where the results folder is served; `{run_id}` and `{sha}` are "
                                 "filled in", shown="in Actions: `<run>#artifacts`")
    report_url: str = setting("", text(), "where `report.html` is served", shown="`<artifacts_url>/report.html`")
    timeout: float = setting(10, number(minimum=0.1), "seconds per request")
    retries: int = setting(3, number(minimum=0, whole=True), "retries after the first try (429, 5xx, network "
                           "errors)")
    retry_backoff: float = setting(1, number(minimum=0), "seconds before the first retry, doubled each time")
    max_retry_after: float = setting(30, number(minimum=0), "cap on a server's `Retry-After` and on the backoff, "
                                     "seconds")
    # Wall-clock bounds, whatever a server does (a byte every few seconds defeats a per-read timeout):
    channel_deadline: float = setting(60, number(minimum=0.1, maximum=3600), "wall-clock seconds for one "
                                      "channel, retries included; then it is stopped and recorded as `timed out`")
    deadline: float = setting(100, number(minimum=0.1, maximum=3600), "wall-clock seconds for all deliveries "
                              "together (and the previous-run lookup): a run with every channel hanging ends "
                              "within two minutes")
    remind_every: float = setting(24, number(minimum=0), "hours between reminders while scheduled runs keep "
                                  "failing (they alert on a change of state only); `0`: every failing scheduled run")
    page_on_impact: tuple[str, ...] = setting("current-users,unknown", _impacts, "a failing run pages (PagerDuty "
                                              "trigger; `<!here>` in Slack when a flow hits current users) when a "
                                              "failed flow has one of these impacts (comma-separated: current-users, "
                                              "new-build-only, unknown); otherwise Slack and email only, and the "
                                              "deploy gate still fails")
    results_dir: Path = Path(DEFAULTS["results_dir"])  # validation.results_dir, or --results-dir
    previous: Path | None = None
    test: bool = False
    dry_run: bool = False
    secret_env: tuple[str, ...] = ()  # validation.secret_env


NOTIFY_SECTION = NotifySettings.SECTION
NOTIFY_DEFAULTS: dict[str, Any] = defaults(NotifySettings)
NOTIFY_INVOKE_DEFAULTS: dict[str, Any] = invoke_defaults(NotifySettings)


def load_notify(section: Mapping[str, Any], validation: Mapping[str, Any], cli: Mapping[str, Any],
                environ: Mapping[str, str] | None = None, root: Path | None = None) -> NotifySettings:
    """NotifySettings from the merged `notify:` section, `validation.results_dir` and the task's flags
    (--previous, --test and --dry-run are the run's own, not settings)."""
    previous = _text(cli.get("previous"))
    return NotifySettings(**resolve(NotifySettings, section, cli, environ=environ),
                          **_validation(validation, cli, environ, root),
                          previous=Path(previous) if previous else None, test=bool(cli.get("test")),
                          dry_run=bool(cli.get("dry_run")))


# ---- `invoke emulator.*`, `doctor`, `setup`: the `emulator:` section ------------------------------------

DEFAULT_EMULATOR_OPTIONS = "-no-window -gpu swiftshader_indirect -noaudio -no-boot-anim -no-snapshot-save"
MAESTRO_RELEASE_URL = "https://github.com/mobile-dev-inc/maestro/releases/download/cli-{version}/maestro.zip"
# SHA-256 of the official maestro.zip per release, as pinned by Maestro's own Homebrew formula (JReleaser) and the
# AUR package; used when `maestro_sha256` is not set and `maestro_url` is the official release.
MAESTRO_RELEASE_SHA256 = {
    "2.8.0": "b3e561161904fb391875ca5834d5b22cf0b01c052dd1b408ad83e30d8f8951b3",
}
EMULATOR_ARCHS = ("x86_64", "x86", "arm64-v8a", "armeabi-v7a")
FIRST_CONSOLE_PORT, LAST_CONSOLE_PORT = 5554, 5584  # the 16 console ports adb scans for emulators
_SIZE = r"^\d+[KMG]?$"
START, SETUP = ("emulator.start",), ("emulator.start", "setup")


def _arch(value: Any, s: Setting, origin: str = "") -> str:
    arch = _text(value) or str(s.default)
    if arch not in EMULATOR_ARCHS:
        close = difflib.get_close_matches(arch, EMULATOR_ARCHS, n=1)
        raise ConfigError(f"{s.name} must be one of {', '.join(EMULATOR_ARCHS)}, got {arch!r}"
                          + (f" (did you mean '{close[0]}'?)" if close else ""), fix="use x86_64 on Linux runners")
    return arch


def _port(value: Any, s: Setting, origin: str = "") -> int:
    port = int(_number(value, s.name, s.default, minimum=FIRST_CONSOLE_PORT, whole=True))
    if port % 2 or port > LAST_CONSOLE_PORT:
        raise ConfigError(f"{s.name} must be an even console port from {FIRST_CONSOLE_PORT} to "
                          f"{LAST_CONSOLE_PORT} (the ones adb scans), got {value!r}", fix="use e.g. 5554")
    return port


def _emulator_options(value: Any, s: Setting, origin: str = "") -> tuple[str, ...]:
    options = words(value, s, origin)
    for key in ("-avd", "-port", "-ports"):
        if key in options:
            raise ConfigError(f"{s.name} must not contain {key}: the harness sets it",
                              fix="use --avd / --port (emulator.avd, emulator.port) instead")
    return options


def _sha256(value: Any, s: Setting, origin: str = "") -> str:
    checked: str = text(r"^[0-9a-fA-F]{64}$", "the 64 hex digits of `sha256sum maestro.zip`")(value, s, origin)
    return checked.lower()


@dataclass(frozen=True)
class EmulatorSettings(Section):
    SECTION: ClassVar[str] = "emulator"

    avd: str = setting("", text(r"^[A-Za-z0-9._-]+$", "prodval-api34"), "AVD name; further emulators add -2, -3, ...",
                       flag=True, tasks=START, shown="`prodval-api<api_level>-<target>-<arch>`",
                       value="prodval-api34-google_apis-x86_64")
    api_level: int = setting(34, number(minimum=21, whole=True), "API level of the system image", flag=True,
                             tasks=SETUP)
    target: str = setting("google_apis", text(r"^[a-z][a-z0-9_]*$", "google_apis", or_default=True),
                          "system image target: google_apis, default, google_apis_playstore, ...", flag=True,
                          tasks=SETUP)
    arch: str = setting("x86_64", _arch, "system image ABI", flag=True, tasks=SETUP)
    device_profile: str = setting("", text(r"^[\w .()-]+$", "pixel_6"), "`avdmanager --device`, e.g. pixel_6",
                                  shown="(avdmanager's)")
    count: int = setting(1, number(minimum=1, whole=True), "how many emulators `emulator.start` boots, each with "
                         "its own port and serial", flag=True, tasks=START)
    port: int = setting(5554, _port, "first console port (even, up to 5584: the ports adb scans); further "
                        "emulators take the next free even ports", flag=True, tasks=START)
    boot_timeout: float = setting(600, number(minimum=1), "seconds per boot attempt (one cold-boot retry follows "
                                  "a timeout)", flag=True, tasks=START)
    boot_poll: float = setting(2, number(minimum=0.05), "seconds between boot checks (and unlock retries)")
    stop_timeout: float = setting(20, number(minimum=0), "seconds `emu kill` gets before the process group is "
                                  "terminated, then killed")
    emulator_options: tuple[str, ...] = setting(DEFAULT_EMULATOR_OPTIONS, _emulator_options, "emulator options "
                                                "replacing the defaults; snapshot reuse is opt-in by leaving out "
                                                "-no-snapshot-save", flag=True, tasks=START)
    wipe: bool = setting(False, boolean, "wipe the AVDs' user data (-wipe-data) before booting", flag=True,
                         tasks=START)
    cores: int = setting(2, number(minimum=1, whole=True), "`hw.cpu.ncore` in the AVD's config.ini")
    ram_size: str = setting("2048M", text(_SIZE, "2048M"), "`hw.ramSize` in config.ini; empty keeps the AVD's")
    heap_size: str = setting("", text(_SIZE, "512M"), "`hw.heapSize` in config.ini, e.g. 512M", shown="(AVD's)")
    data_partition_size: str = setting("", text(_SIZE, "6G"), "`disk.dataPartition.size` in config.ini, e.g. 6G",
                                       shown="(AVD's)")
    disable_animations: bool = setting(True, boolean, "the three animation scales set to 0 on each device")
    disable_spell_checker: bool = setting(True, boolean, "the spell checker turned off on each device")
    maestro_version: str = setting("2.8.0", text(r"^[0-9][0-9A-Za-z.+-]*$", "2.8.0", or_default=True),
                                   "Maestro version `invoke setup` installs", flag=True, tasks=("setup",))
    maestro_url: str = setting(MAESTRO_RELEASE_URL, text(r"^https?://\S+$", MAESTRO_RELEASE_URL, or_default=True),
                               "download URL of maestro.zip; {version} is replaced", flag=True, tasks=("setup",),
                               shown="the GitHub release's `maestro.zip`")
    maestro_sha256: str = setting("", _sha256, "SHA-256 the download must have", flag=True, tasks=("setup",),
                                  shown="(built in for the official 2.8.0)")

    @property
    def system_image(self) -> str:
        """The sdkmanager package of the system image, e.g. system-images;android-34;google_apis;x86_64."""
        return f"system-images;android-{self.api_level};{self.target};{self.arch}"

    @property
    def download_url(self) -> str:
        return self.maestro_url.replace("{version}", self.maestro_version)

    @property
    def expected_sha256(self) -> str:
        """The checksum `invoke setup` verifies: the pinned one, else the known one of an official release."""
        if self.maestro_sha256:
            return self.maestro_sha256
        return MAESTRO_RELEASE_SHA256.get(self.maestro_version, "") if self.maestro_url == MAESTRO_RELEASE_URL else ""


EMULATOR_SECTION = EmulatorSettings.SECTION


def load_emulator(section: Mapping[str, Any], cli: Mapping[str, Any],
                  environ: Mapping[str, str] | None = None) -> EmulatorSettings:
    """EmulatorSettings from the merged `emulator:` section and the task's flags (None: not given)."""
    values = resolve(EmulatorSettings, section, cli, environ=environ)
    values["avd"] = values["avd"] or f"prodval-api{values['api_level']}-{values['target']}-{values['arch']}"
    return EmulatorSettings(**values)


# ---- the run history (`validate`, `merge-results`, `invoke history`): the `history:` section ------------

@dataclass(frozen=True)
class HistorySettings(Section):
    SECTION: ClassVar[str] = "history"

    path: Path = setting("build/history.sqlite", folder("set it to a file such as build/history.sqlite"),
                         "the history file (SQLite): every finished run and its flows; missing is created, "
                         "unreadable is set aside and started afresh")
    window: int = setting(20, number(minimum=1, whole=True, maximum=1000), "stored runs the strip, the "
                          "rates and p50/p95 look back over (`failingSince` looks back over every kept run)")
    keep: int = setting(1000, number(minimum=1, whole=True), "runs kept in the file; older ones are removed")
    slow_factor: float = setting(1.5, number(minimum=1), "a flow is `slow` when this run took more than p95 x "
                                 "this (with at least 5 passing samples in the window)")
    candidate_flaky_rate: float = setting(0.2, number(minimum=0, maximum=1), "`invoke history` lists a flow as a "
                                          "quarantine candidate when its flaky rate over the window is above this")


HISTORY_SECTION = HistorySettings.SECTION


def load_history(section: Mapping[str, Any], cli: Mapping[str, Any], environ: Mapping[str, str] | None = None,
                 root: Path | None = None) -> HistorySettings:
    """HistorySettings from the merged `history:` section (its path relative to the project root)."""
    return HistorySettings(**resolve(HistorySettings, section, cli, environ=environ, root=root))


# ---- what is derived from the declarations: invoke's defaults, --help, the docs' tables ---------------------

SECTIONS: tuple[type[Section], ...] = (Settings, BuildSettings, NotifySettings, EmulatorSettings, HistorySettings)


def all_settings() -> tuple[Setting, ...]:
    return tuple(s for cls in SECTIONS for s in declarations(cls))


def invoke_configuration() -> dict[str, dict[str, Any]]:
    """Every section's keys, as tasks.py registers them with invoke (`Collection.configure`)."""
    return {cls.SECTION: invoke_defaults(cls) for cls in SECTIONS}


def task_help(task: str, **extra: str) -> dict[str, str]:
    """The `help=` of an invoke task: each setting it takes as a flag, with its default, and `extra` flags that
    are not settings (a task's own switches)."""
    helps = {s.flag: s.flag_help() for s in all_settings() if task in s.tasks}
    return {**helps, **extra}


def task_flags(task: str) -> dict[str, Setting]:
    """The settings task `task` takes as flags, by parameter name."""
    return {s.flag: s for s in all_settings() if task in s.tasks}


def _flag_column(s: Setting) -> str:
    if not s.flag:
        return ""
    shown = f"--{s.flag.replace('_', '-')}" + (f" {s.metavar}" if s.metavar else "")
    return f"`{shown}`" + (" (repeatable)" if s.merge else "")


def docs_table(cls: type[Section]) -> str:
    """The configuration table of a section, for the docs: key, flag, default, meaning."""
    section = cls.SECTION
    lines = [f"Section `{section}:` of `invoke.yaml`; each key can also be set as `INVOKE_{section.upper()}_<KEY>`"
             " (a mapping only in `invoke.yaml`); flags win. The table is generated from `tools/prodval/settings.py` by "
             "`python -m prodval.settings`.",
             "",
             f"| key (`{section}:`) | flag | default | meaning |",
             "|---|---|---|---|"]
    for s in declarations(cls):
        lines.append(f"| `{s.key}` | {_flag_column(s)} | {s.shown_default()} | {s.help} |")
    return "\n".join(lines)


def _markers(section: str) -> tuple[str, str]:
    return f"<!-- settings-table:{section}:start -->", f"<!-- settings-table:{section}:end -->"


DOC_FILES = ("README.md", "docs")  # where the tables may live, from the repository root


def doc_blocks(root: Path) -> dict[str, list[Path]]:
    """Which Markdown files (README.md, docs/**) hold each section's table block, found by its markers."""
    files = [root / "README.md", *sorted((root / "docs").rglob("*.md"))]
    found: dict[str, list[Path]] = {cls.SECTION: [] for cls in SECTIONS}
    for path in files:
        if not path.is_file():
            continue
        content = path.read_text(encoding="utf-8")
        for section, paths in found.items():
            if _markers(section)[0] in content:
                paths.append(path)
    return found


def render_docs(content: str) -> str:
    """`content` with every section's table block (between its markers) replaced by the generated table."""
    for cls in SECTIONS:
        start, end = _markers(cls.SECTION)
        pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.DOTALL)
        block = f"{start}\n{docs_table(cls)}\n{end}"
        content = pattern.sub(block.replace("\\", "\\\\"), content)  # the block as it is: no group references
    return content


def update_docs(root: Path, *, check: bool = False) -> list[str]:
    """Regenerate the tables in place (or, with `check`, only say what differs): the problems, or []."""
    problems = []
    for section, paths in doc_blocks(root).items():
        start, end = _markers(section)
        if len(paths) != 1:
            where = ", ".join(str(p.relative_to(root)) for p in paths) or "no file"
            problems.append(f"the `{section}` settings table (between {start} and {end}) must be in exactly one "
                            f"of README.md and docs/*.md; found in {where}")
    for path in sorted({p for paths in doc_blocks(root).values() for p in paths}):
        content = path.read_text(encoding="utf-8")
        rendered = render_docs(content)
        if rendered != content:
            if check:
                problems.append(f"{path.relative_to(root)}: a settings table differs from the declarations in "
                                "tools/prodval/settings.py; run `python -m prodval.settings`")
            else:
                path.write_text(rendered, encoding="utf-8")
    return problems


if __name__ == "__main__":  # python -m prodval.settings [--check]: the docs' tables from the declarations
    import sys

    repository = Path(__file__).resolve().parents[2]
    found = update_docs(repository, check="--check" in sys.argv[1:])
    for problem in found:
        print(problem, file=sys.stderr)
    sys.exit(1 if found else 0)
