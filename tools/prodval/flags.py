"""The tasks' short flags, pinned: one letter means one long flag in every task that has it.

Invoke gives each parameter the first free letter of its name (`-e` was `--exclude-tags` in `validate` and
`--env` in `lint-flows`, `--results-dir` in `build-apk`, `--emulator-options` in `emulator.start`), so a
letter's meaning depended on the task and on the order of its parameters. Here the letters are declared once,
by letter, so no letter can stand for two flags; a parameter without a letter has only its long flag.

A letter a task does not have is not free: after a task name invoke still reads its own flags (`-d` is
`--debug`, `-e` `--echo`, `-c` `--collection`, `-w` `--warn-only`), so `boundary` refuses invoke's own flags
typed after a task (they go before the task names), and a letter a task had keeps its meaning where it can.

Letters Maestro users bring along mean what they mean in Maestro: `-e KEY=VALUE` is a flow variable
(`maestro test -e`), and `-c` (Maestro's `--continuous`) and `-p` (Maestro's `--platform`) are not given a
value-taking meaning that would silently swallow a flow path: `-c` is unused, and `-p` is only
`build-apk --property NAME=VALUE`, Gradle's `-P`.
"""

from __future__ import annotations

import functools
from typing import Any

from invoke.tasks import Task
from invoke.tasks import task as invoke_task

SHORT_FLAGS: dict[str, str] = {  # letter -> parameter (the long flag with - for _)
    "e": "env",  # Maestro's -e KEY=VALUE (validate, lint-flows)
    "f": "flows",
    "i": "include_tags",
    "x": "exclude_tags",
    "r": "results_dir",  # every task that reads or writes the run record
    "d": "dry_run",  # notify: what it always was (a removed -d would be invoke's own --debug: a real send)
    "a": "apk",  # validate
    "p": "property",  # build-apk: a Gradle project property, like Gradle's -P
    "v": "variant",  # build-apk
    "s": "serial",  # emulator.stop: adb's -s SERIAL
    "w": "wipe",  # emulator.start
}
LETTERS: dict[str, str] = {parameter: letter for letter, parameter in SHORT_FLAGS.items()}


class FlagTask(Task[Any]):
    """An invoke task whose short flags come from `SHORT_FLAGS`, never from invoke's first-free-letter rule."""

    def arg_opts(self, name: str, default: str, taken_names: set[str]) -> dict[str, Any]:
        auto, self.auto_shortflags = self.auto_shortflags, False
        try:
            opts: dict[str, Any] = super().arg_opts(name, default, taken_names)
        finally:
            self.auto_shortflags = auto
        letter = LETTERS.get(name)
        if letter is not None and not opts.get("positional"):
            opts["names"] = [*opts["names"], letter]
        return opts


task = functools.partial(invoke_task, klass=FlagTask)
