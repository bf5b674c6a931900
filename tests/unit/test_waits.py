"""The waits that are parameters: the tests' fakes that ignore SIGTERM must not cost 5 s each."""

from __future__ import annotations

import pytest
from prodval.commands import TERM_WAIT, TERM_WAIT_DEFAULT, term_wait


def test_term_wait_is_five_seconds_unless_set() -> None:
    assert term_wait({}) == TERM_WAIT_DEFAULT == 5.0
    assert term_wait({"PRODVAL_TERM_WAIT": " "}) == 5.0
    assert term_wait({"PRODVAL_TERM_WAIT": "0.5"}) == 0.5


def test_the_suite_runs_with_a_short_term_wait() -> None:
    assert TERM_WAIT == 2.0  # tests/conftest.py sets PRODVAL_TERM_WAIT before prodval is imported


@pytest.mark.parametrize("raw", ["soon", "0", "-1", "inf", "nan"])
def test_a_term_wait_that_is_not_seconds_keeps_the_default_and_says_so(raw: str,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    assert term_wait({"PRODVAL_TERM_WAIT": raw}) == 5.0
    assert f"PRODVAL_TERM_WAIT={raw!r} is not a number of seconds > 0; using 5" in capsys.readouterr().err
