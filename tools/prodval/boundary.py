"""The one error boundary: of every invoke task, and of invoke itself before our tasks run.

Whatever stops a task that is not a flow's own assertion (a full disk, a read-only results folder, Ctrl-C
or SIGTERM in `notify` or while report.html renders, a bug) and invoke's own errors (an unknown flag, an
`invoke.yaml` that does not parse or has a key YAML reads as a boolean) end the same way:

- one message: what, where and the fix (a did-you-mean for a mistyped flag or task);
- exit code 2;
- the run record finished with verdict `error` and the cause, when the disk allows;
- `verdict=error` in `$GITHUB_OUTPUT` (the gate reads it), never absent;
- the chain still reaching `notify`, so people hear about it.

Tracebacks only with PRODVAL_DEBUG=1. `ChainExecutor` (chain.py) runs every task through `run_task`; inside
it, each task's own errors before its stage runs (a bad setting, a folder in use) are one message and an exit
code from `cli.entry`, which speaks through the same `redacting_console`.
Invoke parses the command line and reads `invoke.yaml` before any task runs, and its own `invoke`
program turns those errors into exit 1 or a traceback; `tasks.py` calls `install_invoke_hooks` when invoke
imports it, which is before both, so that `invoke ...` as typed behaves as described (invoke has no hook
of its own for this).
"""

from __future__ import annotations

import contextlib
import difflib
import errno
import os
import re
import sys
import traceback
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from invoke.config import Config
from invoke.env import Environment
from invoke.exceptions import Exit, ParseError
from invoke.parser import Parser
from invoke.program import Program

from .cli import VERDICT_TASKS  # tasks whose step must end with a verdict output
from .console import redacting_console, relative_display
from .errors import EXIT_ERROR, ConfigError, Interrupted, ValidationError, signals_ignored, sigterm_raises
from .outcomes import JobStatus, Verdict
from .results import (
    JUNIT_NAME,
    NOTIFY_STAGE,
    RECORD_NAME,
    REPORT_NAME,
    RUNNING,
    SUMMARY_NAME,
    RecordUnreadable,
    RecordWriter,
    RunRecord,
    Stage,
    alert_channels,
    atomic_write,
    job_from_env,
    junit_xml,
    keep_unwritten,
    load_record,
    now_iso,
    say_why_not_run,
    summary_markdown,
    unwritten_record,
)
from .secrets import Redactor
from .settings import (
    BUILD_SECTION,
    EMULATOR_SECTION,
    NOTIFY_INVOKE_DEFAULTS,
    NOTIFY_SECTION,
    SECTION,
    SECTIONS,
    NotifySettings,
    Settings,
    configured_deployed_sha,
    env_layer,
    project_root,
    results_folder,
)
from .settings import declarations as cls_declarations

# Tasks that write the run record, and the record's stage each one owns.
RECORD_STAGES = {"build-apk": "build", "validate": "validate", "merge-results": "validate", "notify": "notify"}
DEBUG_VAR = "PRODVAL_DEBUG"


def debugging(environ: Mapping[str, str]) -> bool:
    return environ.get(DEBUG_VAR, "").strip().lower() not in ("", "0", "false", "no")


# --- a task that stopped -----------------------------------------------------------------------------


def run_task(name: str, call: Callable[[], Any], *, results_dir: Path, deployed_sha: str | None,
             environ: Mapping[str, str] | None = None) -> Any:
    """Run one task; anything but invoke's Exit that escapes it is turned into exit 2 (`Exit` raised)."""
    environ = os.environ if environ is None else environ
    try:
        with sigterm_raises():
            return call()
    except Exit:
        raise
    except (KeyboardInterrupt, Exception) as exc:
        caught = exc
    with signals_ignored():
        if debugging(environ):
            traceback.print_exception(caught)
        stopped(name, explain(name, caught, results_dir), results_dir=results_dir, deployed_sha=deployed_sha,
                environ=environ)
    raise Exit(code=EXIT_ERROR)


def explain(name: str, exc: BaseException, results_dir: Path) -> ValidationError:
    """What stopped `invoke <name>`, where, and the fix."""
    if isinstance(exc, (KeyboardInterrupt, Interrupted)):
        signal_name = exc.signal_name if isinstance(exc, Interrupted) else "Ctrl-C (SIGINT)"
        while_ = f" while {REPORT_NAME} was being rendered" if _in_function(exc.__traceback__, "render_report") else ""
        return ValidationError(f"`invoke {name}` was interrupted by {signal_name}{while_}",
                               fix=_INTERRUPT_FIX.get(name, "run it again"))
    if isinstance(exc, OSError):
        return disk_error(exc, results_dir)
    if isinstance(exc, ValidationError):  # a stage's own error that escaped its stage (e.g. while finishing)
        return exc
    return ValidationError(f"`invoke {name}` stopped on an internal error: {type(exc).__name__}: {exc}",
                           fix=f"run it again with {DEBUG_VAR}=1 for the traceback, and report it")


_INTERRUPT_FIX = {
    "notify": "run `invoke notify` again to send the alerts (the record keeps the verdict; deliveries "
              "already made are listed above)",
    "validate": f"run `invoke report` to render {REPORT_NAME} from the record, or run the validation again",
}


def _in_function(tb: TracebackType | None, function: str) -> bool:
    while tb is not None:
        if tb.tb_frame.f_code.co_name == function:
            return True
        tb = tb.tb_next
    return False


def disk_error(exc: OSError, results_dir: Path) -> ValidationError:
    """What a results folder that cannot be written means, and how to fix it."""
    folder = _shown(results_dir)
    shown = _shown(exc.filename or results_dir)
    reason = _not_a_folder(results_dir) or exc.strerror or str(exc)
    if shown != folder:
        reason += f": {shown}"
    if isinstance(exc, IsADirectoryError) and shown != folder:
        fix = f"remove the folder {shown} (the results are files there), or pass --results-dir with another folder"
    elif exc.errno is not None and exc.errno in _FULL:
        fix = f"free space on the disk holding {folder} (`df -h {folder}`), or pass --results-dir on another disk"
    else:
        fix = (f"make {folder} a writable folder (not a file, not a dangling or looping symlink), "
               "or pass --results-dir with another folder")
    return ValidationError(f"could not write the results in {folder}: {reason}", fix=fix)


def _shown(path: str | os.PathLike[str]) -> str:
    """A path as typed, relative to the working directory when inside it; symlinks not followed."""
    absolute = os.path.abspath(path)
    relative = os.path.relpath(absolute)
    return absolute if relative.startswith("..") else relative


_FULL = {errno.ENOSPC, errno.EDQUOT}


def _not_a_folder(folder: Path) -> str:
    """Why `folder` cannot hold files, when it is not a folder at all ('' when it is one)."""
    try:
        if folder.is_dir():
            return ""
        if folder.is_symlink():
            try:
                os.stat(folder)
            except OSError as exc:
                if exc.errno == errno.ELOOP:
                    return "it is a symlink loop"
                return f"it is a symlink to {os.readlink(folder)}, which does not exist"
        if folder.exists():
            return "it is a file, not a folder"
    except OSError:
        return ""
    return ""


def stopped(name: str, error: ValidationError, *, results_dir: Path, deployed_sha: str | None,
            environ: Mapping[str, str]) -> None:
    """After task `name` stopped on `error`: the message, and for a stage of a run the record and the verdict."""
    console = redacting_console(environ)
    stage = RECORD_STAGES.get(name)
    note = "" if stage is None else finish_record(results_dir, stage, error, environ, deployed_sha)
    console.error(str(error) + note, title=f"{name} stopped")
    if stage is not None:
        with contextlib.suppress(OSError):  # $GITHUB_OUTPUT on the same full disk: the exit code still says 2
            console.set_outputs({"verdict": "error", "results-path": str(results_dir)})


def _redactor(environ: Mapping[str, str]) -> Redactor:
    return Redactor.from_env(environ)


def finish_record(results_dir: Path, stage_name: str, error: ValidationError, environ: Mapping[str, str],
                  deployed_sha: str | None, *, new: bool = False) -> str:
    """The record gets verdict `error` and the cause under `stage_name`; '' or why it could not be written.

    It continues the record in the results folder (keeping every flow it holds) unless `new`. No
    report.html here: rendering can be slow and this runs after an interrupt (`invoke report` renders it).
    """
    from .stage import new_run_id  # noqa: PLC0415 (the stage lifecycle imports the report; only a stopped run needs it)

    redact = _redactor(environ)
    cause = str(error)
    record = None if new else unwritten_record(results_dir)
    if record is None and not new:
        try:
            record = load_record(results_dir / RECORD_NAME)
        except RecordUnreadable:  # not a folder, a loop, corrupt: nothing to continue, a new record says why
            record = None
        if record is not None and stage_name != NOTIFY_STAGE and record.runId != new_run_id(environ):
            # an older run's record: this run's error is its own record (notify only reports on the run it finds)
            record, new = None, True
    if record is None:
        record = RunRecord(runId=new_run_id(environ), job=job_from_env(environ, deployed_sha))
        record.environment.alertChannels = alert_channels(environ)
    now = now_iso()
    stage = record.stages.get(stage_name) or Stage(RUNNING, now)
    stage.outcome, stage.endTime = Verdict.ERROR, now
    stage.error = f"{stage.error}\n{cause}" if stage.error and cause not in stage.error else cause
    record.stages[stage_name] = stage
    say_why_not_run(record, error.message)
    record.verdict = Verdict.ERROR
    record.job.status, record.job.endTime = JobStatus.FAILURE, now
    record.job.startTime = record.job.startTime or now
    try:
        writer = RecordWriter(results_dir, redact)
        if new:  # the previous run's report must not pass for this one's
            (results_dir / REPORT_NAME).unlink(missing_ok=True)
        writer.save(record, indent=2)
        masked = RunRecord.from_json(redact.mask_tree(record.to_json()))  # values, never the rendered text
        atomic_write(results_dir / JUNIT_NAME, junit_xml(masked))
        atomic_write(results_dir / SUMMARY_NAME, summary_markdown(masked))
    except OSError as exc:
        keep_unwritten(results_dir, record)  # `notify` later in this chain still alerts with it
        return f"\n  (the run record could not be updated either: {exc.strerror or exc})"
    keep_unwritten(results_dir, None)
    return ""


# --- invoke itself: the command line and invoke.yaml -------------------------------------------------

_installed = False


def install_invoke_hooks(task_names: Sequence[str]) -> None:
    """Make invoke's own errors (command line, invoke.yaml) end like any other stopped run.

    `task_names` are the collection's task names (for a did-you-mean when the collection is not built yet).
    """
    global _installed  # noqa: PLW0603 (invoke's classes are patched once per process)
    if _installed:
        return
    _installed = True
    parse_tasks = Program.parse_tasks

    def checked_parse_tasks(self: Program) -> None:
        names = sorted(self.collection.task_names) if self.collection is not None else list(task_names)
        try:
            parse_tasks(self)
            error = core_flag_after_task(self)
        except ParseError as exc:
            error = usage_error(exc, names)
        if error is not None:
            config = config_sections(self.config)
            invoke_failed(error, self.argv[1:], names, config, parser=lambda argv: _parse_notify(self, argv),
                           root=project_root(self.config))

    Program.parse_tasks = checked_parse_tasks  # type: ignore[method-assign]

    for method in ("load_project", "load_runtime"):
        original = getattr(Config, method)

        def checked_load(self: Config, merge: bool = True, *, _original: Any = original, _which: str = method) -> None:
            try:
                _original(self, merge=merge)
                problem = _config_problem(self)
                if problem is None and _which == "load_project":  # once per run, with invoke.yaml merged
                    problem = unknown_variable(os.environ, self)
            except Exception as exc:  # the YAML error types are invoke's vendored ones or PyYAML's
                problem = _config_error(self, _which, exc)
            if problem is not None:
                invoke_failed(problem, sys.argv[1:], list(task_names), {}, parser=None, root=project_root(self))

        setattr(Config, method, checked_load)

    # Invoke casts INVOKE_<SECTION>_<KEY> to the type of the value it overrides: with `retries: 3` in
    # invoke.yaml, INVOKE_VALIDATION_RETRIES=abc would crash in int(). Our settings keep the text (their parsers
    # check it and say which variable is wrong: settings.resolve reads it again).
    path_set = Environment._path_set

    def lenient_path_set(self: Environment, key_path: Sequence[str], value: str) -> None:
        try:
            path_set(self, key_path, value)
        except (TypeError, ValueError):
            if not key_path or key_path[0] not in {cls.SECTION for cls in SECTIONS}:
                raise
            target = self.data
            for key in key_path[:-1]:
                target = target.setdefault(key, {})
            target[key_path[-1]] = value

    Environment._path_set = lenient_path_set  # type: ignore[method-assign]


def core_flag_after_task(program: Any) -> ConfigError | None:
    """Invoke's own flag typed after a task name, where invoke still takes it as its own: `invoke notify -d`
    would turn on invoke's --debug and send the alerts for real, `invoke validate -c FILE` would set the
    collection and run with the default config. They go before the task names."""
    if program.collection is None or program.initial_context is None:
        return None
    contexts = {str(c.name): set(c.flag_names()) for c in program.collection.to_contexts()}
    for context in program.collection.to_contexts():
        for alias in context.aliases:
            contexts[str(alias)] = contexts[str(context.name)]
    core = list(program.initial_context.flags.values())
    core_names = set(program.initial_context.flag_names())
    current = None
    for word in program.argv[1:]:
        if word in contexts:
            current = word
            continue
        flag = word.split("=", 1)[0]
        if current is None or not flag.startswith("-") or flag in contexts[current] or flag not in core_names \
                or flag in ("-h", "--help"):  # `invoke validate --help`: invoke shows the task's help
            continue
        long = next((f"--{a.name.replace('_', '-')}" for a in core if flag.lstrip("-") in a.names), flag)
        letters = sorted(f for f in contexts[current] if len(f) == 2)
        return ConfigError(f"`invoke {current}` has no flag {flag}: after a task name invoke takes it as its own "
                           f"{long}", fix=f"invoke's own flags go before the task names (`invoke {flag} {current} "
                           f"...`); `invoke --help {current}` lists its flags"
                           + (f" (short: {' '.join(letters)})" if letters else ""))
    return None


def usage_error(exc: Exception, task_names: Sequence[str]) -> ConfigError:
    """invoke's ParseError as one message with a did-you-mean."""
    text = str(exc)
    context = getattr(exc, "context", None)
    task = getattr(context, "name", None)
    unknown = text.removeprefix("No idea what ").removesuffix(" is!").strip("'\"") if text.startswith("No idea") else None
    if unknown is not None and unknown.startswith("-"):
        flags = sorted(getattr(context, "flags", {}) or {}) if context is not None else []
        close = difflib.get_close_matches(unknown, flags, n=1, cutoff=0.6)
        where = f"`invoke {task}`" if task else "invoke"
        message = f"{where} has no flag {unknown}" + (f" (did you mean {close[0]}?)" if close else "")
        fix = f"`invoke --help {task}` lists its flags" if task else "`invoke --help` lists the core flags"
        letters = [f for f in flags if len(f) == 2]
        if task and len(unknown) == 2 and not close:  # a letter: say which letters mean something here
            fix += (f"; its short flags: {' '.join(letters)}" if letters else "; it has no short flags") + (
                " (a letter means the same flag in every task; the rest are long only)")
    elif unknown is not None:
        close = difflib.get_close_matches(unknown, task_names, n=1, cutoff=0.6)
        message = f"no task named {unknown!r}" + (f" (did you mean {close[0]}?)" if close else "")
        fix = "`invoke --list` lists the tasks"
    else:
        flag = re.search(r"Flag <Argument: (\w+)", text)
        named = f"--{flag[1].replace('_', '-')}" if flag else ""
        where = f"`invoke {task}`" if task else "invoke"
        if flag and "needed value" in text:
            message = f"{where}: {named} needs a value"
        elif flag and "doesn't take any value" in text:
            message = f"{where}: {named} is a switch and takes no value"
        else:
            message = f"{where}: invalid command line: {text}"
        fix = f"`invoke --help {task}` lists its flags" if task else "`invoke --list` lists the tasks"
    return ConfigError(message, fix=fix)


def _config_error(config: Any, which: str, exc: Exception) -> ConfigError:
    path = getattr(config, "_project_path" if which == "load_project" else "_runtime_path", None) or "invoke.yaml"
    shown = relative_display(Path(str(path)))
    mark = getattr(exc, "problem_mark", None)
    where = f"{shown}:{mark.line + 1}" if mark is not None else shown
    reason = " ".join(str(getattr(exc, "problem", None) or exc).split())
    return ConfigError(f"{where}: cannot read the invoke configuration: {reason}",
                       fix="fix the YAML there (indentation, brackets, quotes); docs/configuration.md lists every key")


def _config_problem(config: Any) -> ConfigError | None:
    """What invoke would trip over later (a TypeError, an AmbiguousMergeError): a key that is not a
    name (YAML reads a bare on/off/yes/no as a boolean), or one of our sections that is not a mapping."""
    for which, label in (("_project", "_project_path"), ("_runtime", "_runtime_path")):
        data, path = getattr(config, which, None), getattr(config, label, None)
        if not path or not isinstance(data, dict):
            continue
        shown = relative_display(Path(str(path)))
        for section in (SECTION, NOTIFY_SECTION, BUILD_SECTION, EMULATOR_SECTION):
            if section in data and data[section] is not None and not isinstance(data[section], dict):
                return ConfigError(f"{shown}: `{section}:` must be a mapping of settings, got {data[section]!r}",
                                   fix=f"write the settings indented under `{section}:` (key: value); "
                                       "docs/configuration.md lists every key")
        bad = _non_string_key(data, ())
        if bad is None:
            unknown = unknown_config_key(data, shown)
            if unknown is not None:
                return unknown
        if bad is not None:
            keys, key = bad
            under = f"under `{'.'.join(keys)}:` " if keys else ""
            hint = " (the setting is `alert_on`)" if keys == (NOTIFY_SECTION,) and key is True else ""
            return ConfigError(f"{shown}: {under}the key {key!r} is not a name: YAML reads a bare "
                               f"on/off/yes/no as a boolean{hint}",
                               fix="use the setting's documented name, or quote the key ('on': ...); "
                                   "docs/configuration.md lists every key")
    return None


_OUR_SECTIONS = tuple(cls.SECTION for cls in SECTIONS)
# Invoke's own sections, and those of their keys a project may set (`runners:` maps any runner's name).
_INVOKE_SECTIONS: dict[str, Any] = Config.global_defaults()
_ANY_KEY = ("runners",)
# Variables invoke itself reads that are no configuration key.
_INVOKE_VARIABLES = ("INVOKE_RUNTIME_CONFIG", "INVOKE_DEBUG")


def _suggest(word: str, candidates: Sequence[str], cutoff: float = 0.6) -> str:
    close = difflib.get_close_matches(word, list(candidates), n=1, cutoff=cutoff)
    return f" (did you mean '{close[0]}'?)" if close else ""


def unknown_config_key(data: Mapping[str, Any], shown: str) -> ConfigError | None:
    """A top-level section of an invoke configuration file that is neither ours nor invoke's (`validaton:`
    would be ignored: every setting in it silently left at its default), or a key invoke does not know under
    one of invoke's own sections (`tasks: {exector_class: ...}` would silently run the chain without its
    executor). Our own sections' keys are checked by `settings.resolve`."""
    known = (*_OUR_SECTIONS, *_INVOKE_SECTIONS)
    for key, value in data.items():
        if key not in known:
            return ConfigError(f"{shown}: unknown section `{key}:`{_suggest(key, known)}",
                               fix=f"the sections are {', '.join(f'`{k}:`' for k in _OUR_SECTIONS)} (this project's; "
                                   "docs/configuration.md lists every key) and invoke's own "
                                   f"({', '.join(f'`{k}:`' for k in _INVOKE_SECTIONS)})")
        defaults = _INVOKE_SECTIONS.get(key)
        if key in _ANY_KEY or not isinstance(defaults, dict) or not isinstance(value, dict):
            continue
        for sub in value:
            if sub not in defaults:
                return ConfigError(f"{shown}: invoke has no setting `{key}.{sub}`{_suggest(str(sub), list(defaults))}",
                                   fix=f"invoke's settings under `{key}:` are {', '.join(sorted(defaults))}")
    return None


def unknown_variable(environ: Mapping[str, str], config: Any = None) -> ConfigError | None:
    """An INVOKE_<SECTION>_<KEY> variable of one of our sections (or of a section one typo away from ours)
    that no setting reads: invoke would ignore it silently. Invoke's own variables (INVOKE_RUN_ECHO, ...) and
    unrelated ones are left alone; a mapping's entry (INVOKE_BUILD_PROPERTIES_API_BASE_URL) is read by invoke
    only when the mapping in invoke.yaml has that entry."""
    known = {s.env_var: s for cls in SECTIONS for s in cls_declarations(cls)}
    for name in sorted(environ):
        if not name.startswith("INVOKE_") or name in known or name in _INVOKE_VARIABLES:
            continue
        rest = name.removeprefix("INVOKE_")
        section = next((sec for sec in _OUR_SECTIONS if rest.startswith(f"{sec.upper()}_")), None)
        if section is None:
            first = rest.split("_", 1)[0].lower()
            if first in _INVOKE_SECTIONS or not difflib.get_close_matches(first, _OUR_SECTIONS, n=1, cutoff=0.75):
                continue  # invoke's own, or nothing to do with this project
        mapping = next((s for s in known.values() if s.merge and name.startswith(f"{s.env_var}_")), None)
        if mapping is not None:
            entries = _mapping_entries(config, mapping.section, mapping.key)
            if name.removeprefix(f"{mapping.env_var}_") in entries:
                continue
            return ConfigError(f"{name} is not read: invoke sets a mapping's entry from the environment only when "
                               f"`{mapping.name}` in invoke.yaml already has it",
                               fix=f"add the entry under `{mapping.section}: {mapping.key}:` in invoke.yaml, or pass it "
                                   f"as --{mapping.flag.replace('_', '-')} NAME=VALUE")
        close = difflib.get_close_matches(name, [v for v, s in known.items() if not s.merge], n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        return ConfigError(f"{name} is no setting: it would be ignored{hint}",
                           fix="rename or unset it; docs/configuration.md lists every setting and its "
                               "INVOKE_<SECTION>_<KEY> variable")
    return None


def _mapping_entries(config: Any, section: str, key: str) -> set[str]:
    with contextlib.suppress(Exception):
        value = (config.get(section) or {}).get(key) or {}
        return {str(k).upper() for k in value}
    return set()


def _non_string_key(data: Any, keys: tuple[str, ...]) -> tuple[tuple[str, ...], Any] | None:
    if not isinstance(data, dict):
        return None
    for key, value in data.items():
        if not isinstance(key, str):
            return keys, key
        found = _non_string_key(value, (*keys, key))
        if found is not None:
            return found
    return None


def config_sections(config: Any) -> dict[str, dict[str, Any]]:
    sections: dict[str, dict[str, Any]] = {}
    for name in (SECTION, NOTIFY_SECTION):
        with contextlib.suppress(Exception):
            value = config.get(name)
            if isinstance(value, Mapping):
                sections[name] = dict(value)
    return sections


def _parse_notify(program: Any, argv: list[str]) -> dict[str, Any]:
    """The flags of `notify ...` alone (the rest of the command line did not parse)."""
    parsed = Parser(contexts=program.collection.to_contexts()).parse_argv(argv)
    return dict(parsed[0].as_kwargs) if parsed else {}


def invoke_failed(error: ConfigError, argv: Sequence[str], task_names: Sequence[str],
                   config: Mapping[str, Mapping[str, Any]], parser: Callable[[list[str]], dict[str, Any]] | None,
                   root: Path | None = None) -> None:
    """Invoke could not start the tasks: message, record, verdict output; then `notify` when asked for. Exit 2."""
    environ = os.environ
    with signals_ignored():
        if debugging(environ) and sys.exc_info()[0] is not None:
            traceback.print_exc()
        words = [w for w in argv if not w.startswith("-")]
        tasks = [w for w in words if w in task_names]
        # invoke has not read INVOKE_* yet: the settings' own variables (the gate's commit, the folder)
        validation = {**config.get(SECTION, {}), **env_layer(Settings, environ)}
        notify_section = {**NOTIFY_INVOKE_DEFAULTS, **config.get(NOTIFY_SECTION, {}),
                          **env_layer(NotifySettings, environ)}
        after_task = list(argv)[next((i for i, w in enumerate(argv) if w in task_names), len(argv)):]  # -r before
        # the first task is invoke's --search-root
        given = _flag(argv, "--results-dir") or _flag(after_task, "-r")
        results_dir = results_folder(given, validation.get("results_dir"), root)
        validation["results_dir"] = str(results_dir)
        deployed = configured_deployed_sha(notify_section)
        console = redacting_console(environ)
        note = ""
        verdict_step = any(t in VERDICT_TASKS for t in tasks)
        if verdict_step:
            note = finish_record(results_dir, "config", error, environ, deployed,
                                 new=True)
        console.error(str(error) + note, title="invoke")
        if verdict_step:
            with contextlib.suppress(OSError):
                console.set_outputs({"verdict": "error", "results-path": str(results_dir)})
    if "notify" in tasks and verdict_step:
        flags: dict[str, Any] = {}
        if parser is not None:
            with contextlib.suppress(Exception):
                flags = parser(list(argv[list(argv).index("notify"):]))
        console.info("chain: going on to `notify`, so the failure is reported")
        from . import cli  # noqa: PLC0415 (only here: the notify task of a chain invoke could not start)

        flags = {"results_dir": None, "on": None, "previous": None, "test": False, "dry_run": False, **flags}
        with contextlib.suppress(Exit):
            run_task("notify", lambda: cli.notify({SECTION: validation, NOTIFY_SECTION: notify_section}, flags),
                     results_dir=results_dir,
                     deployed_sha=deployed)
    raise Exit(code=EXIT_ERROR)


def _flag(argv: Sequence[str], name: str) -> str | None:
    """The first value of `name` on a command line (`--name VALUE` or `--name=VALUE`)."""
    for index, word in enumerate(argv):
        if word == name and index + 1 < len(argv):
            return argv[index + 1]
        if word.startswith(f"{name}="):
            return word.split("=", 1)[1]
    return None
