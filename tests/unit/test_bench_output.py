"""`nox -s bench` rewrites BENCHMARKS.md but keeps the test-suite timing written by hand."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]


def _bench() -> Any:
    spec = importlib.util.spec_from_file_location("prodval_bench", REPO / "tests" / "benchmarks" / "bench.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules[spec.name]
    return module


def test_the_test_suite_timing_survives_a_benchmark_run() -> None:
    bench = _bench()
    previous = "# Benchmarks\n\n| old table |\n\n## Test-suite timing\n\nbefore: 400 s\n"
    assert bench.kept_sections(previous) == "\n## Test-suite timing\n\nbefore: 400 s\n"
    assert bench.kept_sections("# Benchmarks\n\n| old table |\n") == ""


def test_benchmarks_md_has_the_test_suite_timing() -> None:
    text = (REPO / "BENCHMARKS.md").read_text()
    assert "\n## Test-suite timing\n" in text and "`nox -s tests`" in text.split("## Test-suite timing")[1]
