"""`nox -s bench` rewrites BENCHMARKS.md but keeps the test-suite timing written by hand; with `--only NAME`
only the named rows are measured again, the rest kept."""

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


def test_only_the_measured_rows_are_replaced_and_new_ones_added() -> None:
    bench = _bench()
    previous = ("# Benchmarks\n\n| benchmark | measured | baseline | result | target | ok |\n|---|---|---|---|---|---|\n"
                "| Shard balance: 2 shards | a | b | c | d | yes |\n| Shard balance: 4 shards | e | f | g | h | yes |\n"
                "\n## Test-suite timing\n\n| when | command |\n|---|---|\n| before | pytest |\n")
    figures = [bench.Figure("Shard balance: 4 shards", "new", "b", "c", "d", True),
               bench.Figure("History: x", "1 ms", "b", "c", "< 1 s", True)]
    rows = bench.merged_rows(previous, figures)
    assert rows == ["| Shard balance: 2 shards | a | b | c | d | yes |", "| Shard balance: 4 shards | new | b | c | d | yes |",
                    "| History: x | 1 ms | b | c | < 1 s | yes |"]
    assert set(bench.BENCHES) >= {"history", "startup", "memory"}
