"""The chain `invoke build-apk validate notify`: every stage runs, and the exit code is the verdict.

Invoke stops at the first task that exits non-zero; a chain of stages must not, because each stage
records its outcome in the run record and `notify` has to tell people about a failed build or a failed
validation. `ChainExecutor` runs every task of a chain, remembers the worst exit code (0 pass < 1 fail <
2 error, which is how every stage exits) and exits with it at the end. Every task, alone or in a chain, runs
through `boundary.run_task`: whatever stops it that is not a flow's assertion is exit 2 with a finished
record, never a traceback.

Invoke picks the executor from `tasks.executor_class`, which it reads before any collection-level
configuration is loaded, so it is set in the project's `invoke.yaml`, not by `Collection.configure`.
"""

from __future__ import annotations

import contextlib
import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from invoke.exceptions import Exit, UnexpectedExit
from invoke.executor import Executor
from invoke.parser.context import ParserContext

from .boundary import config_sections, invoke_failed, run_task
from .errors import ConfigError
from .settings import NOTIFY_SECTION, SECTION, configured_deployed_sha, project_root, results_folder, task_flags

Task = str | tuple[str, dict[str, Any]] | ParserContext


def _name(task: Task) -> str:
    if isinstance(task, str):
        return task
    if isinstance(task, ParserContext):
        return str(task.name)
    return task[0]


class ChainExecutor(Executor):
    def execute(self, *tasks: Task) -> dict[Any, Any]:
        if not tasks:
            return super().execute()
        contexts = [t for t in tasks if isinstance(t, ParserContext)]
        for line in share_flags(contexts, self._refuse):
            print(line, file=sys.stderr, flush=True)
        results: dict[Any, Any] = {}
        worst = 0
        for number, task in enumerate(tasks, 1):
            code = 0
            with contextlib.suppress(Exception):  # what invoke loads before each task (INVOKE_* included), so the
                # boundary finds the record where the task writes it (a failure here recurs inside run_task)
                self.config.load_collection(self.collection.configuration(_name(task)))
                self.config.load_shell_env()
            try:  # every task through the one error boundary: a crash is exit 2 with a finished record
                results.update(run_task(_name(task), functools.partial(super().execute, task),
                                        results_dir=self._results_dir(task), deployed_sha=self._deployed_sha()))
            except Exit as exc:
                if exc.message:
                    print(exc.message, file=sys.stderr)
                code = exc.code
            except UnexpectedExit as exc:  # a c.run() that failed; invoke prints it the same way
                if exc.result.hide:
                    print(exc, file=sys.stderr, end="")
                code = exc.result.exited
            if code and number < len(tasks):
                print(f"chain: `{_name(task)}` exited with code {code}; going on (its outcome is in the run record)",
                      file=sys.stderr, flush=True)
            worst = max(worst, code)
        if worst:
            raise Exit(code=worst)
        return results

    def _refuse(self, error: ConfigError, contexts: list[ParserContext]) -> None:
        """The chain does not start: one message, the record and the verdict output say `error`, `notify` runs."""
        names = [str(c.name) for c in contexts]
        notify = next((c for c in contexts if c.name == "notify"), None)
        invoke_failed(error, sys.argv[1:], names, config_sections(self.config),
                       parser=lambda argv: dict(notify.as_kwargs) if notify is not None else {},
                       root=project_root(self.config))

    def _results_dir(self, task: Task) -> Path:
        """Where the task's run record is: its --results-dir, else validation.results_dir."""
        given = task.args["results-dir"].value if isinstance(task, ParserContext) and "results-dir" in task.args else None
        configured = None
        with contextlib.suppress(Exception):
            configured = self.config.get(SECTION, {}).get("results_dir")
        return results_folder(given, configured, project_root(self.config))

    def _deployed_sha(self) -> str | None:
        with contextlib.suppress(Exception):
            return configured_deployed_sha(self.config.get(NOTIFY_SECTION))
        return None


def share_flags(contexts: list[ParserContext],
                refuse: Callable[[ConfigError, list[ParserContext]], None]) -> list[str]:
    """A setting's flag given once in a chain applies to every task of the chain that takes it.

    Invoke gives a flag to the task it follows only: `invoke build-apk validate notify --results-dir X` sent only
    `notify` to X, which then found no run record. A flag that sets a setting (the results folder, the flows,
    the tags, the system image) means that setting for the whole chain, as invoke.yaml or INVOKE_* would; the
    tasks' own switches (`notify --dry-run`, `--previous`) stay theirs. Given twice with different values is
    ambiguous: `refuse(error, contexts)` stops the chain before any task runs. Returns what was shared."""
    if len(contexts) < 2:
        return []
    flags: dict[str, list[ParserContext]] = {}
    for context in contexts:
        for flag in task_flags(str(context.name)):
            flags.setdefault(flag, []).append(context)
    shared = []
    for flag, takers in flags.items():
        name = flag.replace("_", "-")
        given = [(c, c.args[name].value) for c in takers if name in c.args and c.args[name].got_value]
        if not given or len(takers) < 2:
            continue
        values = {repr(v) for _, v in given}
        if len(values) > 1:
            shown = ", ".join(f"`{c.name}` {_shown(v)}" for c, v in given)
            first = _shown(given[0][1])
            refuse(ConfigError(
                f"--{name} is given more than once in the chain, with different values ({shown}); the tasks of a "
                "chain share it",
                fix=f"give it once, anywhere in the chain (it applies to every task that takes it): "
                    f"`invoke {' '.join(str(c.name) for c in contexts)} --{name} {first}`"), contexts)
            return []
        value = given[0][1]
        for context in takers:
            argument = context.args[name]
            if argument.got_value:
                continue
            if isinstance(value, list):
                for item in value:
                    argument.set_value(item)
            else:
                argument.set_value(value, cast=False)
        if len(given) < len(takers):
            shared.append(f"chain: --{name} {_shown(value)} applies to {', '.join(f'`{c.name}`' for c in takers)}")
    return shared


def _shown(value: Any) -> str:
    """A flag's value for a message: NAME=VALUE pairs by their names only (a value may be a secret)."""
    if isinstance(value, list):
        return " ".join(f"{str(v).partition('=')[0]}=..." for v in value)
    return str(value)
