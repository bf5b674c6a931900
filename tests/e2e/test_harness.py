"""The suite's own guards: no process a test starts outlives it, and children get SIGINT as in a terminal."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

from conftest import MARKER_VAR, alive, leftovers


def test_a_process_a_test_started_is_found_by_its_marker_and_not_after_it_is_gone() -> None:
    marker = os.environ[MARKER_VAR]
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        assert proc.pid in leftovers(marker)
        assert proc.pid not in leftovers("another-test")
    finally:
        proc.kill()
        proc.wait()
    assert proc.pid not in leftovers(marker) and not alive(proc.pid)


def test_a_child_starts_with_sigint_at_its_default_even_when_the_suite_ignores_it() -> None:
    # a suite started in the background inherits SIGINT ignored; tests/conftest.py installs a handler instead
    assert signal.getsignal(signal.SIGINT) is not signal.SIG_IGN
    shown = subprocess.run([sys.executable, "-c", "import signal; print(signal.getsignal(signal.SIGINT))"],
                           capture_output=True, text=True, check=True).stdout
    assert "default_int_handler" in shown
