"""What a flow and a run can come to: the record's statuses and verdicts, one vocabulary for every layer.

`StrEnum`s, so the record's JSON holds the plain values (`"passed"`, `"fail"`); `results` builds the record
from them, `maestro` classifies an attempt with them.
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
