"""The suite's own guards: no process a test starts outlives it, and children get SIGINT as in a terminal."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

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
    """A suite started in the background inherits SIGINT ignored; tests/conftest.py installs a handler instead,
    so what a test starts gets SIGINT at its default. Checked in a process that starts with SIGINT ignored and
    loads conftest.py, as such a suite does."""
    tests = Path(__file__).resolve().parents[1]
    grandchild = "import signal; print(signal.getsignal(signal.SIGINT))"
    code = (f"import subprocess, sys; sys.path.insert(0, {str(tests)!r}); import conftest; "
            f"print(subprocess.run([sys.executable, '-c', {grandchild!r}], capture_output=True, text=True).stdout)")
    shown = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60,
                           preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN)).stdout
    assert "default_int_handler" in shown, shown
