"""The one lifecycle of every stage that writes the run record: build, validate, merge-results, notify.

    start     chain the record an earlier stage of the same run left (`results.start_record`), start a
              new one (`build-apk` begins a chain), or continue a finished run's record (`notify`)
    run       the stage's body; Ctrl-C and SIGTERM raise `Interrupted`, so every `finally` runs
    end       a `ValidationError` is the stage's error (said once, kept in the record, and why the flows
              that did not run did not); the outcome and the end time; when the stage decides the run,
              the verdict and the derived files (`write_files`: junit.xml, summary.md, report.html)

A stage returns its record, the outcome (nox's `SessionRunner.execute() -> Result`); only the entry point
(`cli.py`) turns it into an exit code (`exit_code`).
"""

from __future__ import annotations

import contextlib
import functools
import sys
import uuid
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime

from .console import MAX_ANNOTATIONS, Console, relative_display
from .errors import Interrupted, ValidationError, sigterm_raises
from .history import remember
from .outcomes import JobStatus, Status, Verdict
from .report import write_report
from .results import (
    JUNIT_NAME,
    PASSING,
    RECORD_NAME,
    REPORT_NAME,
    RUNNING,
    SUMMARY_NAME,
    RecordWriter,
    RunRecord,
    Stage,
    gating,
    headline,
    not_run_groups,
    not_run_line,
    now_iso,
    quarantined,
    say_why_not_run,
    start_new_record,
    start_record,
    summary_markdown,
)
from .schedule import remember_timings
from .settings import HistorySettings

# What a stage's `decide` returns: the run's verdict when this stage decides it, else None (the run goes on).
Decide = Callable[[RunRecord, Stage], str | None]


def new_run_id(environ: Mapping[str, str]) -> str:
    """VALIDATION_RUN_ID when given (shards of one run share it), else one per workflow run, else one per
    process: the stages of one chain (`invoke build-apk validate notify`) are one run.

    A workflow run keeps its id through "Re-run failed jobs": a re-run shard must take the APK the build job
    of the first attempt recorded and merge with the shards that were not re-run (the attempt is recorded
    apart, in `shard.attempt`)."""
    if environ.get("VALIDATION_RUN_ID"):
        return environ["VALIDATION_RUN_ID"]
    if environ.get("GITHUB_RUN_ID"):
        return f"gh-{environ['GITHUB_RUN_ID']}"
    return _local_run_id()


@functools.cache
def _local_run_id() -> str:
    return f"local-{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:6]}"


@contextlib.contextmanager
def signals_as_interrupts() -> Iterator[None]:
    """Turn SIGTERM and Ctrl-C into `Interrupted` so every `finally` (process groups, record) runs."""
    with sigterm_raises():
        try:
            yield
        except KeyboardInterrupt:
            raise Interrupted("Ctrl-C (SIGINT)") from None


@contextlib.contextmanager
def stage(writer: RecordWriter, name: str, console: Console, environ: Mapping[str, str], *,
          decide: Decide, title: str = "", new: bool = False, record: RunRecord | None = None,
          deployed_sha: str | None = None, paths: Callable[[], Mapping[str, str]] | None = None,
          history: HistorySettings | None = None) -> Iterator[RunRecord]:
    """Stage `name` of the run in `writer`'s folder: `with stage(writer, "build", ...) as record: ...`.

    The record is chained (or `new`, or the given `record` continued). A `ValidationError` in the body ends
    the stage with that error; anything else (a full disk, a bug) goes to the boundary (`boundary.run_task`).
    Then `decide(record, stage)` gives the run's verdict or None. With a verdict the record is finished
    (`finish`: the derived files, and with `paths`, the timings and the verdict announced; without, the
    job summary); without one it is saved and the next stage goes on. With `history`, `finish` remembers the
    run in the run history (`history.remember`). A continued `record` (notify) keeps
    the job as it was, and its errors are not caught: they go to the boundary.
    """
    owned = record is None
    if record is None:
        run_id = new_run_id(environ)
        record = (start_new_record(writer, environ, name, run_id, deployed_sha) if new else
                  start_record(writer, environ, name, run_id, deployed_sha, warn=console.warning))
    else:
        record.stages[name] = Stage(RUNNING, now_iso())
    entry = record.stages[name]
    try:
        with signals_as_interrupts():
            yield record
    except ValidationError as exc:
        if not owned:
            raise
        entry.error = str(exc)
        console.error(str(exc), title=f"{title or name} stopped ({exc.stage})")
        say_why_not_run(record, exc.message)
    entry.endTime = now_iso()
    verdict = decide(record, entry)
    if verdict is not None:
        record.verdict = entry.outcome = Verdict(verdict)
    elif entry.outcome == RUNNING:
        entry.outcome = Verdict.ERROR if entry.error else Verdict.PASS
    if owned:
        record.job.endTime = entry.endTime
        record.job.status = JobStatus.SUCCESS if entry.outcome == Verdict.PASS else JobStatus.FAILURE
    if verdict is None:
        writer.save(record)
    elif paths is None:
        write_files(writer, record)
        console.step_summary(summary_markdown(record))
    else:
        finish(record, writer, console, paths(), history)


def write_files(writer: RecordWriter, record: RunRecord) -> None:
    """The finished record and the files derived from it: junit.xml, summary.md (`RecordWriter.finish`) and
    report.html. The record is written first, so a report that cannot be written (a full disk) loses
    nothing else: it is a warning."""
    if REPORT_NAME not in record.job.artifactPaths:
        record.job.artifactPaths.append(REPORT_NAME)
    writer.finish(record)
    try:
        write_report(record, writer.results_dir, writer.redact)
    except OSError as exc:
        print(writer.redact(f"warning: {REPORT_NAME} not written: {exc}"), file=sys.stderr)


def finish(record: RunRecord, writer: RecordWriter, console: Console, paths: Mapping[str, str],
           history: HistorySettings | None = None) -> None:
    """The end of a stage that decides the verdict of flows (validate, merge-results): the run remembered in
    the run history (with `history`; never a shard's), so the record and every file derived from it carry it;
    the derived files, the flows' durations for the next run's order (timings.json), and the verdict announced."""
    if history is not None and record.shard is None:
        remember(record, history, lambda text: console.warning(text, title="history"), redact=writer.redact)
    write_files(writer, record)
    remember_timings(writer.results_dir, record.to_json())
    announce(record, console, writer, paths)


def artifact_paths(record: RunRecord) -> list[str]:
    """The job's artifacts: the record's own files first, then the job's and every flow's."""
    return list(dict.fromkeys([RECORD_NAME, JUNIT_NAME, SUMMARY_NAME, *record.job.artifactPaths,
                               *(path for flow in record.flows for path in flow.artifactPaths)]))


def announce(record: RunRecord, console: Console, writer: RecordWriter, paths: Mapping[str, str]) -> None:
    """The verdict for people and for the workflow: annotations, the log, the job summary, outputs.

    `paths` maps a flow's file name to its path in the repository (for annotations).
    """
    verdict = record.verdict or Verdict.ERROR
    broken = [f for f in gating(record.flows) if f.status not in PASSING]  # quarantined ones: warnings below
    failed = [f for f in broken if f.status == Status.FAILED]
    # One annotation a flow (the failed ones, or when none failed the broken ones), but the flows that did
    # not run one a reason: "4 flows not run: build failed", not "not_run: not run: build failed" 4 times.
    groups = [] if failed else not_run_groups(broken)
    notes: list[tuple[str, str, str, list[str]]] = [  # (text, title, file, the flows it names)
        (flow.errorSummary or flow.status, f"{flow.flowFileName} {flow.status}",
         paths.get(flow.flowFileName, flow.flowFileName), [flow.flowFileName])
        for flow in (failed or [f for f in broken if f.status != Status.NOT_RUN])]
    notes += [(", ".join(f.flowFileName for f in flows), not_run_line(reason, flows), "", [f.flowFileName for f in flows])
              for reason, flows in groups]
    # GitHub shows 10 annotations a step: past 10, the 10th names the rest.
    cut = len(notes) if len(notes) <= MAX_ANNOTATIONS else MAX_ANNOTATIONS - 1
    for text, title, file, _ in notes[:cut]:
        console.error(text, title=title, file=file)
    rest = [name for *_, names in notes[cut:] for name in names]
    if rest:
        console.error(f"{len(rest)} more flows: " + ", ".join(rest), title="more failed flows")
    warn_quarantined(record, console, paths)
    console.step(f"Verdict: {verdict.upper()}: {headline(record)}")
    console.info(f"run record: {relative_display(writer.path)}")
    console.step_summary(summary_markdown(record))
    console.set_outputs({
        "verdict": verdict,
        "failed-flows": ",".join(f.flowFileName for f in broken),
        "results-path": str(writer.results_dir),
    })


def warn_quarantined(record: RunRecord, console: Console, paths: Mapping[str, str]) -> None:
    """A quarantined flow that did not pass is a warning, not an error: it does not gate the run (at most 10;
    past 10, the 10th names the rest)."""
    broken = [f for f in quarantined(record.flows) if f.status not in PASSING and f.status != Status.NOT_RUN]
    cut = len(broken) if len(broken) <= MAX_ANNOTATIONS else MAX_ANNOTATIONS - 1
    for flow in broken[:cut]:
        entry = flow.quarantine or {}
        console.warning(f"{flow.errorSummary or flow.status} (quarantined until {entry.get('until', '?')}, "
                        f"owner {entry.get('owner', '?')}: {entry.get('reason', '')}; it does not gate the run)",
                        title=f"{flow.flowFileName} {flow.status} (quarantined)",
                        file=paths.get(flow.flowFileName, flow.flowFileName))
    if broken[cut:]:
        console.warning(f"{len(broken) - cut} more quarantined flows did not pass: "
                        + ", ".join(f.flowFileName for f in broken[cut:]), title="more quarantined flows")
