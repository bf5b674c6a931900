"""What a flow, a run and its alerts can come to: statuses, verdicts, job statuses and alert kinds, one
vocabulary for every layer.

`StrEnum`s, so the record's JSON holds the plain values (`"passed"`, `"fail"`); `results` builds the record
from them, `maestro` classifies an attempt with them, `alerts` say them.
"""

from __future__ import annotations

from enum import StrEnum


class Status(StrEnum):
    """A flow's (and an attempt's) status. `flaky` passed after a failed attempt; `not_run` never started
    (interrupt, build failed). A `str`: the record's JSON holds the plain value."""

    PASSED = "passed"
    FAILED = "failed"
    FLAKY = "flaky"
    ERROR = "error"
    TIMED_OUT = "timed_out"
    NOT_RUN = "not_run"


class Verdict(StrEnum):
    """The run's verdict, and a finished stage's outcome (`running` until then)."""

    PASS = "pass"  # noqa: S105 (a verdict, not a password)
    FAIL = "fail"
    ERROR = "error"


class Kind(StrEnum):
    """What an alert says: the run's verdict, a recovery (a pass after a failed run), or a --test alert."""

    FAIL = Verdict.FAIL.value
    ERROR = Verdict.ERROR.value
    RECOVERY = "recovery"
    PASS = Verdict.PASS.value
    TEST = "test"


class JobStatus(StrEnum):
    """The job's status in the record (GitHub's words): running until its stage ends."""

    RUNNING = "running"
    SUCCESS = "success"
    FAILURE = "failure"
