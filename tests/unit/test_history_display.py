"""A flow's history (`flow.history`, as history.annotate fills it) and the quarantine in summary.md and
report.html: the strip of outcomes, pass and flaky rates, failing since, new vs still failing, p50/p95 and
`slow`, the duration trend; without history nothing changes. The history dicts are built here."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from prodval.report import render_report, strip_svg, trend_svg
from prodval.results import (
    SUMMARY_BUDGET,
    SUMMARY_STRIP,
    Attempt,
    FlowResult,
    Job,
    RunRecord,
    Stage,
    summary_markdown,
)

SVG = "{http://www.w3.org/2000/svg}"


def history(strip: list[str], *, durations: list[int] | None = None, since: dict[str, Any] | None = None,
            state: str = "", p50: int | None = 10_000, p95: int | None = 12_000, slow: bool = False) -> dict[str, Any]:
    fails = sum(s in ("failed", "error", "timed_out") for s in strip)
    return {"strip": strip, "runs": len(strip) - 1, "passRate": strip.count("passed") / len(strip),
            "flakyRate": strip.count("flaky") / len(strip), "failRate": fails / len(strip), "failingSince": since,
            "state": state, "p50": p50, "p95": p95, "slow": slow,
            "durations": durations if durations is not None else [10_000 + 100 * i for i in range(len(strip))]}


def flow(name: str, status: str, hist: dict[str, Any] | None = None, duration: int = 10_000,
         error: str = "") -> FlowResult:
    attempts = [Attempt(1, status, 0 if status == "passed" else 1, duration, "emulator-5554",
                        "2026-11-30T06:00:00.000Z", error)]
    return FlowResult(flowFileName=name, name=name.removesuffix(".yaml"), status=status, duration=duration,
                      attempts=attempts, device="emulator-5554", errorSummary=error, history=hist)


def run(*flows: FlowResult) -> RunRecord:
    record = RunRecord(runId="r9", job=Job(jobId="j", commit="def5678999"), flows=list(flows))
    record.verdict = record.decide()
    return record


STILL = history(["passed", "passed", "failed", "failed", "failed"],
                since={"runId": "r7", "commit": "abc1234567890", "startTime": "t", "runsAgo": 2}, state="still failing")
NEW = history(["passed", "flaky", "passed", "failed"],
              since={"runId": "r9", "commit": "def5678999", "startTime": "t", "runsAgo": 0}, state="new")
SLOW = history(["passed"] * 6, p50=10_000, p95=11_000, slow=True, durations=[10_000] * 5 + [30_000])


def table_row(summary: str, name: str) -> str:
    return next(line for line in summary.splitlines() if line.startswith("|") and f"`{name}`" in line)


def test_summary_shows_the_history_of_each_flow() -> None:
    summary = summary_markdown(run(flow("pay.yaml", "failed", STILL, error="Element not found: Pay"),
                                   flow("login.yaml", "failed", NEW, error="Timeout"),
                                   flow("feed.yaml", "passed", SLOW, duration=30_000)))
    # the main table says new vs still failing before the error (the status cell stays the status), and slow
    assert table_row(summary, "pay.yaml").endswith(
        "| failed | 1 | 10.0s | emulator-5554 | still failing since abc1234, 2 runs ago · Element not found: Pay |")
    assert table_row(summary, "login.yaml").endswith("| failed | 1 | 10.0s | emulator-5554 | 🆕 new · Timeout |")
    assert "| 30.0s 🐢 slow (p95 11.0s) |" in table_row(summary, "feed.yaml")
    history_part = summary[summary.index("### History"):]
    pay = table_row(history_part, "pay.yaml")
    assert "| 🟩🟩🟥🟥🟥 | 40% | 0% | still failing since abc1234, 2 runs ago | 10.0s / 12.0s |" in pay
    login = table_row(history_part, "login.yaml")
    assert "| 🟩🟨🟩🟥 | 50% | 25% | 🆕 new: def5678, this run |" in login
    feed = table_row(history_part, "feed.yaml")
    assert "| 🟩🟩🟩🟩🟩🟩 | 100% | 0% |  | 10.0s / 11.0s 🐢 slow (p95 11.0s) |" in feed
    assert "🟥 failed · 🟪 error · 🟧 timed out · 🟨 flaky · 🟩 passed; rates over the outcomes shown" in history_part
    # a flow failing since a run without a recorded commit says the run
    no_commit = history(["failed", "failed"], since={"runId": "local-1", "commit": "", "startTime": "t", "runsAgo": 1},
                        state="still failing")
    assert "since local-1, 1 run ago" in summary_markdown(run(flow("x.yaml", "failed", no_commit)))


def test_a_long_strip_shows_its_newest_outcomes() -> None:
    strip = ["failed"] * 10 + ["passed"] * (SUMMARY_STRIP + 5)
    row = table_row(summary_markdown(run(flow("a.yaml", "passed", history(strip)))).split("### History")[1], "a.yaml")
    assert f"| …{'🟩' * SUMMARY_STRIP} |" in row


def test_without_history_summary_and_report_are_as_before(tmp_path: Path) -> None:
    plain = run(flow("pay.yaml", "failed", error="Element not found: Pay"), flow("feed.yaml", "passed"))
    summary = summary_markdown(plain)
    assert "History" not in summary and "🐢" not in summary and "Quarantined" not in summary
    assert table_row(summary, "pay.yaml") == ("| ❌ | `pay.yaml` | failed | 1 | 10.0s | emulator-5554 "
                                               "| Element not found: Pay |")
    page = render_report(plain, tmp_path).split("</style>")[1]
    assert 'class="history' not in page and "<svg class=\"strip\"" not in page and "quarantined" not in page


def test_quarantined_flows_are_shown_apart_in_the_summary() -> None:
    held = flow("pay.yaml", "failed", STILL, error="Element not found: Pay")
    held.quarantined, held.quarantine = True, {"reason": "sandbox | flaky", "owner": "@payments", "until": "2031-01-02"}
    summary = summary_markdown(run(held, flow("feed.yaml", "passed")))
    main = summary[:summary.index("### Quarantined")]
    assert "`pay.yaml`" not in main  # not in the gating table
    assert "✅ 1 passed · 🔕 1 quarantined" in main and "❌" not in main.split("\n\n")[2]
    assert "All 1 flows passed against production; 1 quarantined, 1 of them failing" in main
    section = summary[summary.index("### Quarantined (they ran, but do not gate the run)"):]
    assert ("| ❌ | `pay.yaml` | failed | 2031-01-02 | @payments | sandbox \\| flaky "
            "| still failing since abc1234, 2 runs ago · Element not found: Pay |") in section
    assert "`pay.yaml` 🔕 |" in summary[summary.index("### History"):]  # its history too, marked
    # every flow quarantined: the main table says so instead
    alone = summary_markdown(run(held))
    assert "No flow gates this run: every flow is quarantined (below)." in alone


def test_the_summary_stays_within_githubs_step_summary_limit() -> None:
    """GitHub refuses a step summary over 1024 KiB: thousands of flows with long errors and histories keep the
    failed ones (first) and say how many more there are."""
    flows = [flow(f"flow-{n:04}.yaml", "failed" if n < 50 else "passed", STILL if n < 50 else SLOW,
                  error="x" * 400) for n in range(4000)]
    record = run(*flows)
    record.stages["validate"] = Stage("fail", "t", "t", "E" * 100_000)
    summary = summary_markdown(record)
    assert len(summary.encode()) <= SUMMARY_BUDGET
    assert "`flow-0000.yaml`" in summary and "`flow-0049.yaml`" in summary  # failed flows first, kept
    assert re.search(r"\| … \| \d+ more flows: every one is in report.html and results.json \|", summary)
    assert "… (cut; the whole error is in results.json)" in summary
    small = summary_markdown(run(*flows[:3]))
    assert "more flows" not in small


# --- report.html -----------------------------------------------------------------------------------------

def svg(page: str, cls: str) -> list[ET.Element]:
    return [ET.fromstring(found) for found in re.findall(rf'<svg class="{cls}".*?</svg>', page, re.DOTALL)]


def test_the_strip_is_one_square_per_run_coloured_by_status_this_run_outlined() -> None:
    hist = history(["passed", "error", "timed_out", "flaky", "failed"], durations=[1000, 2000, 3000, 4000, 5000])
    root = ET.fromstring(strip_svg(hist, _esc()))
    squares = root.findall(f"{SVG}g")
    assert [g.get("class") for g in squares] == ["sq st-passed", "sq st-error", "sq st-timed_out", "sq st-flaky",
                                                 "sq st-failed this-run"]
    assert [g.findtext(f"{SVG}title") for g in squares] == [
        "4 runs ago: passed · 1.0s", "3 runs ago: error · 2.0s", "2 runs ago: timed out · 3.0s",
        "1 run ago: flaky · 4.0s", "this run: failed · 5.0s"]
    xs = [float(g.find(f"{SVG}rect").get("x", "")) for g in squares]  # type: ignore[union-attr]
    assert xs == sorted(xs) and len(set(xs)) == 5


def test_the_trend_draws_every_duration_and_marks_this_run() -> None:
    hist = history(["passed"] * 4, durations=[10_000, 20_000, 15_000, 40_000], p95=20_000)
    root = ET.fromstring(trend_svg(hist, _esc()))
    points = [tuple(map(float, p.split(","))) for p in root.find(f"{SVG}polyline").get("points", "").split()]  # type: ignore[union-attr]
    assert len(points) == 4
    assert points[3][1] < points[1][1] < points[2][1] < points[0][1]  # higher is longer (SVG y grows down)
    marker = root.find(f"{SVG}circle")
    assert marker is not None and marker.get("class") == "this-run"
    assert (float(marker.get("cx", "")), float(marker.get("cy", ""))) == points[3]
    assert marker.findtext(f"{SVG}title") == "this run: 40.0s"
    p95 = root.find(f"{SVG}line")
    assert p95 is not None and float(p95.get("y1", "")) == points[1][1]  # p95 = the second run's 20 s
    assert trend_svg(history(["failed"], durations=[5]), _esc()) == ""  # one point: no trend


def test_the_report_card_shows_the_history_and_quarantined_flows_apart(tmp_path: Path) -> None:
    held = flow("pay.yaml", "failed", STILL, error="Element not found: Pay")
    held.quarantined, held.quarantine = True, {"reason": "sandbox flaky", "owner": "@payments", "until": "2031-01-02"}
    page = render_report(run(flow("login.yaml", "failed", NEW, error="Timeout"), held,
                             flow("feed.yaml", "passed", SLOW, duration=30_000)), tmp_path)
    assert len(svg(page, "strip")) == 3 and len(svg(page, "trend")) == 3
    cards = re.findall(r'<article class="flow (.*?)" id="flow-(\d)">.*?<code class="file">(.*?)</code>', page)
    assert cards == [("st-failed", "1", "login.yaml"), ("st-passed", "2", "feed.yaml"),
                     ("st-failed quarantined", "3", "pay.yaml")]
    assert page.index('<h2 id="quarantined">Quarantined flows</h2>') < page.index('id="flow-3"')
    assert '<ol class="index" start="3"><li><a href="#flow-3">' in page  # the index numbers go on
    assert '<li class="chip quarantined"><a href="#quarantined">1 quarantined</a></li>' in page
    assert "<dt>Quarantined</dt><dd>until 2031-01-02 · owner @payments · sandbox flaky</dd>" in page
    assert '<span class="chip state-new">new failure</span>' in page
    assert '<span class="chip state-still">still failing</span> since abc1234, 2 runs ago' in page
    assert '<span class="chip slow">slow</span>' in page
    assert "pass 40% · flaky 0% · fail 60% over 4 earlier runs and this one" in page
    assert "p50 10.0s · p95 11.0s" in page
    first = render_report(run(flow("new.yaml", "failed", history(["failed"], p50=None, p95=None))), tmp_path)
    assert "pass 0% · flaky 0% · fail 100% (this run is the first in the history)</p>" in first
    assert "p50" not in first.split("</style>")[1] and len(svg(first, "strip")) == 1 and svg(first, "trend") == []
    assert 'class="chips strip-legend"' in page
    # the timeline links each bar to its card: the quarantined one is the third
    assert re.search(r'<a href="#flow-3"><g class="bar st-failed"><title>pay.yaml', page)


def _esc() -> Any:
    from prodval.report import _Html

    return _Html(str)
