"""The chain `invoke build-apk validate notify`: every stage runs, and the exit code is the verdict.

Invoke stops at the first task that exits non-zero; a chain of stages must not, because each stage
records its outcome in the run record and `notify` has to tell people about a failed build or a failed
validation. `ChainExecutor` runs every task of a chain, remembers the worst exit code (0 pass < 1 fail <
2 error, which is how every stage exits) and exits with it at the end. A task run alone behaves exactly
as with invoke's own executor.

Invoke picks the executor from `tasks.executor_class`, which it reads before any collection-level
configuration is loaded, so it is set in the project's `invoke.yaml`, not by `Collection.configure`.
"""

from __future__ import annotations

import sys
import traceback
from typing import Any

from invoke.exceptions import Exit, UnexpectedExit
from invoke.executor import Executor
from invoke.parser.context import ParserContext

from .errors import EXIT_ERROR

Task = str | tuple[str, dict[str, Any]] | ParserContext


def _name(task: Task) -> str:
    if isinstance(task, str):
        return task
    if isinstance(task, ParserContext):
        return str(task.name)
    return task[0]


class ChainExecutor(Executor):
    def execute(self, *tasks: Task) -> dict[Any, Any]:
        if len(tasks) <= 1:
            return super().execute(*tasks)
        results: dict[Any, Any] = {}
        worst = 0
        for task in tasks:
            code = 0
            try:
                results.update(super().execute(task))
            except Exit as exc:
                if exc.message:
                    print(exc.message, file=sys.stderr)
                code = exc.code
            except UnexpectedExit as exc:  # a c.run() that failed; invoke prints it the same way
                if exc.result.hide:
                    print(exc, file=sys.stderr, end="")
                code = exc.result.exited
            except Exception:  # a bug in one stage must not keep the others (notify) from running
                traceback.print_exc()
                code = EXIT_ERROR
            if code:
                print(f"chain: `{_name(task)}` exited with code {code}; going on (its outcome is in the run record)",
                      file=sys.stderr, flush=True)
            worst = max(worst, code)
        if worst:
            raise Exit(code=worst)
        return results
