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
from pathlib import Path
from typing import Any

from invoke.exceptions import Exit, UnexpectedExit
from invoke.executor import Executor
from invoke.parser.context import ParserContext

from .boundary import DEFAULT_RESULTS_DIR, run_task
from .settings import NOTIFY_SECTION, SECTION

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

    def _results_dir(self, task: Task) -> Path:
        """Where the task's run record is: its --results-dir, else validation.results_dir."""
        given = task.args["results-dir"].value if isinstance(task, ParserContext) and "results-dir" in task.args else None
        with contextlib.suppress(Exception):
            given = given or self.config.get(SECTION, {}).get("results_dir")
        return Path(str(given or DEFAULT_RESULTS_DIR))

    def _deployed_sha(self) -> str | None:
        with contextlib.suppress(Exception):
            value = (self.config.get(NOTIFY_SECTION) or {}).get("deployed_sha")
            return None if value is None else str(value)
        return None
