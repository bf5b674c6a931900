"""The run record (`results.json`) and the files derived from it (`junit.xml`, `summary.md`).

Field names follow the data model (docs/run-record.md): job metadata, environment configuration and one
entry per flow with `flowFileName`, `exitCode`, `stdout`, `stderr`, `duration` (ms), `artifactPaths`.
The record is rewritten atomically after every flow, so a crash or kill mid-run keeps what finished.
"""

from __future__ import annotations

import html
import json
import os
import re
import tempfile
import xml.etree.ElementTree as ET
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, is_dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from .errors import EXIT_ERROR, EXIT_FAIL, EXIT_PASS, ConfigError
from .outcomes import JobStatus, Kind, Status, Verdict
from .runlock import note_run_id
from .secrets import Redactor
from .settings import QuarantineEntry

SCHEMA_VERSION = 1
WORKFLOW_NAME = "Production Validation"
# The files of a results folder: the record and what is derived from it.
RECORD_NAME = "results.json"
JUNIT_NAME = "junit.xml"
SUMMARY_NAME = "summary.md"
REPORT_NAME = "report.html"  # written by prodval.report, from the stage finisher (`stage.write_files`)


RUNNING = JobStatus.RUNNING.value  # a stage's outcome, and the job's status, until it ends
BUILD_STAGE, VALIDATE_STAGE, NOTIFY_STAGE = "build", "validate", "notify"  # the record's stages
FLOW_STATUSES: tuple[str, ...] = tuple(Status)
# Failed and flaky flows first (summary, report): what a person came to see.
STATUS_ORDER: tuple[str, ...] = (Status.FAILED, Status.ERROR, Status.TIMED_OUT, Status.FLAKY, Status.NOT_RUN, Status.PASSED)
STATUS_LABEL: dict[str, str] = {status: status.replace("_", " ") for status in Status}
PASSING: tuple[str, ...] = (Status.PASSED, Status.FLAKY)
BROKEN: tuple[str, ...] = (Status.FAILED, Status.ERROR, Status.TIMED_OUT)  # what an alert lists, in this order
VERDICT_EXIT: dict[str, int] = {Verdict.PASS: EXIT_PASS, Verdict.FAIL: EXIT_FAIL, Verdict.ERROR: EXIT_ERROR}


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class Attempt:
    number: int
    status: str
    exitCode: int | None
    duration: int
    device: str
    startTime: str
    errorSummary: str = ""
    artifactPaths: list[str] = field(default_factory=list)
    crash: bool = False  # the app crashed or did not respond (ANR) during it: crash.txt holds the block
    apk: str = ""  # which APK ran: "new" (this run's build) or "released" (impact triage); "" in older records
    video: str = ""  # the kept screen recording (relative path; more segments follow as video-2.mp4, ...)
    noVideo: str = ""  # why there is no video (or not all of it)

    @property
    def folder(self) -> str:
        """The attempt's folder under `flows/<flow>/`: `attempt-N`, or `released-N` for the released app."""
        return f"{'released' if self.apk == RELEASED else 'attempt'}-{self.number}"


NEW, RELEASED = "new", "released"  # Attempt.apk


@dataclass
class FlowResult:
    flowFileName: str
    name: str
    status: str = Status.NOT_RUN
    exitCode: int | None = None
    stdout: str = ""
    stderr: str = ""
    duration: int = 0
    artifactPaths: list[str] = field(default_factory=list)
    attempts: list[Attempt] = field(default_factory=list)
    device: str = ""
    errorSummary: str = ""
    tags: list[str] = field(default_factory=list)
    history: dict[str, Any] | None = None  # this flow in the run history (history.annotate); None: no history
    quarantined: bool = False  # validation.quarantine holds it: it ran, but does not gate (RunRecord.decide)
    quarantine: dict[str, str] | None = None  # {"reason", "owner", "until"} of the entry in force
    impact: str = ""  # a failed flow's impact triage (impact.py): current-users | new-build-only | unknown
    impactReason: str = ""  # what the released app's rerun showed, or why the impact is unknown

    def build_attempts(self) -> list[Attempt]:
        """The attempts with this run's build: every one but the released app's reruns (impact triage)."""
        return [a for a in self.attempts if a.apk != RELEASED]


@dataclass
class Job:
    jobId: str
    workflow: str = WORKFLOW_NAME
    status: str = "pending"
    startTime: str = ""
    endTime: str = ""
    artifactPaths: list[str] = field(default_factory=list)
    url: str = ""
    commit: str = ""  # the deployed commit (deployed_commit)
    simulated: bool = False  # PRODVAL_SIMULATED=1 (the demo): every artifact and alert says SIMULATED
    trigger: str = ""  # deploy | schedule | manual (`run_trigger`)


@dataclass
class Environment:
    SKIP_DATA_CLEANUP: bool = True
    maestroFlowPaths: list[str] = field(default_factory=list)
    apkBuildPath: str = ""
    alertChannels: list[str] = field(default_factory=list)
    requiredTags: list[str] = field(default_factory=list)  # validation.require_tags: each flow carried one
    releasedApk: dict[str, Any] | None = None  # validation.released_apk: which APK impact triage took, or why none


@dataclass
class Stage:
    outcome: str  # running | pass | fail | error
    startTime: str
    endTime: str = ""
    error: str = ""


@dataclass
class RunRecord:
    runId: str
    job: Job
    environment: Environment = field(default_factory=Environment)
    flows: list[FlowResult] = field(default_factory=list)
    verdict: str | None = None
    devices: list[str] = field(default_factory=list)
    stages: dict[str, Stage] = field(default_factory=dict)
    apk: dict[str, Any] | None = None  # what build-apk read from the APK it built
    alerts: list[dict[str, Any]] = field(default_factory=list)  # what notify delivered, per channel
    shard: dict[str, int] | None = None  # {"index": I, "count": N} when this record is one shard's
    retiredDevices: list[dict[str, str]] = field(default_factory=list)  # {"serial", "reason"}
    schemaVersion: int = SCHEMA_VERSION
    history: dict[str, Any] | None = None  # {"path", "runs", "note", "previous"} (history.annotate)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RunRecord:
        flows = [
            FlowResult(**{**f, "attempts": [Attempt(**a) for a in f.get("attempts", [])]})
            for f in data.get("flows", [])
        ]
        return cls(
            runId=data["runId"],
            job=Job(**data["job"]),
            environment=Environment(**data.get("environment", {})),
            flows=flows,
            verdict=data.get("verdict"),
            devices=list(data.get("devices", [])),
            stages={name: Stage(**stage) for name, stage in data.get("stages", {}).items()},
            apk=data.get("apk"),
            alerts=list(data.get("alerts", [])),
            shard=data.get("shard"),
            retiredDevices=list(data.get("retiredDevices", [])),
            schemaVersion=data.get("schemaVersion", SCHEMA_VERSION),
            history=data.get("history"),
        )

    def counts(self) -> dict[str, int]:
        return count_statuses(self.flows)

    def decide(self) -> str:
        """pass when every flow passed (or was flaky); fail on any assertion failure; error otherwise.
        Quarantined flows do not count: a run whose flows are all quarantined passes (nothing gates it)."""
        statuses = {flow.status for flow in gating(self.flows)}
        if Status.FAILED in statuses:
            return Verdict.FAIL
        if not self.flows or statuses - set(PASSING):
            return Verdict.ERROR
        return Verdict.PASS

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = _plain(self)
        data["counts"] = self.counts()
        return data


def gating(flows: Sequence[FlowResult]) -> list[FlowResult]:
    """The flows that decide the verdict: all but the quarantined ones."""
    return [flow for flow in flows if not flow.quarantined]


def quarantined(flows: Sequence[FlowResult]) -> list[FlowResult]:
    return [flow for flow in flows if flow.quarantined]


def apply_quarantine(flows: Sequence[FlowResult], entries: Sequence[QuarantineEntry],
                     today: date) -> list[QuarantineEntry]:
    """Mark the flows an entry in force names (`quarantined`, `quarantine`); return the expired entries that
    name one of `flows`: those flows gate again, which validate says loudly."""
    by_flow = {entry.flow: entry for entry in entries}
    expired = []
    for flow in flows:
        entry = by_flow.get(flow.flowFileName)
        if entry is None:
            continue
        if entry.expired(today):
            expired.append(entry)
        else:
            flow.quarantined, flow.quarantine = True, entry.to_record()
    return expired


def count_statuses(flows: Sequence[FlowResult]) -> dict[str, int]:
    """Flows per status, every status present (the record's `counts`)."""
    counts = dict.fromkeys(FLOW_STATUSES, 0)
    for flow in flows:
        counts[flow.status] += 1
    return counts


def _plain(value: Any) -> Any:
    """JSON-ready data from the record's dataclasses: like dataclasses.asdict, without its deep copies of
    every leaf (the record is rewritten after every flow; its leaves are already JSON values)."""
    if is_dataclass(value) and not isinstance(value, type):
        return {name: _plain(item) for name, item in vars(value).items()}
    if isinstance(value, list):
        return [_plain(item) for item in value]
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    return value


def deployed_commit(configured: str | None, environ: Mapping[str, str]) -> str:
    """The deployed commit, the one place it is worked out: `notify.deployed_sha` (invoke.yaml, or
    INVOKE_NOTIFY_DEPLOYED_SHA through invoke's configuration), else GITHUB_SHA."""
    return (configured or "").strip() or environ.get("GITHUB_SHA", "")


def run_url(environ: Mapping[str, str]) -> str:
    """The GitHub Actions run's page, the one place it is built ('' outside a workflow run)."""
    run_id, repository = environ.get("GITHUB_RUN_ID"), environ.get("GITHUB_REPOSITORY")
    if not (run_id and repository):
        return ""
    return f"{environ.get('GITHUB_SERVER_URL', 'https://github.com')}/{repository}/actions/runs/{run_id}"


def job_from_env(environ: Mapping[str, str], deployed_sha: str | None = None) -> Job:
    run_id, job = environ.get("GITHUB_RUN_ID"), environ.get("GITHUB_JOB")
    url = run_url(environ)
    job_id = f"{run_id}/{job}" if run_id and job else f"local-{os.getpid()}-{datetime.now(UTC):%Y%m%dT%H%M%S}"
    return Job(jobId=job_id, url=url, commit=deployed_commit(deployed_sha, environ),
               simulated=environ.get(SIMULATED_VAR, "").strip() == "1", trigger=run_trigger(environ))


TRIGGER_VAR = "PRODVAL_TRIGGER"  # overrides the trigger GITHUB_EVENT_NAME gives (tests, local runs)
TRIGGERS = ("deploy", "schedule", "manual")
_EVENT_TRIGGERS = {"workflow_run": "deploy", "push": "deploy", "schedule": "schedule"}


def run_trigger(environ: Mapping[str, str]) -> str:
    """Why this run happened: `deploy` (the workflow after a deployment: workflow_run, push), `schedule`
    (the cron re-validation) or `manual` (anything else, or outside Actions). PRODVAL_TRIGGER, when it
    names one of the three, wins."""
    forced = environ.get(TRIGGER_VAR, "").strip().lower()
    if forced in TRIGGERS:
        return forced
    return _EVENT_TRIGGERS.get(environ.get("GITHUB_EVENT_NAME", "").strip(), "manual")


SIMULATED_VAR = "PRODVAL_SIMULATED"  # set by the demo (tests/fakes/demo.py): the toolchain is the fakes'


def simulated_mark(record: RunRecord) -> str:
    """The prefix every headline of a SIMULATED run (the demo) carries: summary, report, console, alerts."""
    return "SIMULATED: " if record.job.simulated else ""


# The variables that turn each alert channel on, all of them needed (`notify.configure_channels` reads
# the rest of each channel's settings).
CHANNEL_VARS = {
    "slack": ("SLACK_WEBHOOK_URL",),
    "email": ("SMTP_HOST", "ALERT_EMAIL_TO", "ALERT_EMAIL_FROM"),
    "pagerduty": ("PAGERDUTY_ROUTING_KEY",),
    "github-status": ("GITHUB_TOKEN", "GITHUB_REPOSITORY"),
}


def alert_channels(environ: Mapping[str, str]) -> list[str]:
    """Which alert channels are configured (names only: their settings are secrets); the one rule, which
    `notify` follows too. A variable set to blanks sets nothing."""
    return [name for name, needed in CHANNEL_VARS.items() if all(environ.get(var, "").strip() for var in needed)]


class RecordWriter:
    """Writes the record and its derived files into the results folder, atomically."""

    def __init__(self, results_dir: Path, redact: Redactor) -> None:
        self.results_dir = results_dir
        self.redact = redact
        self.results_dir.mkdir(parents=True, exist_ok=True)

    @property
    def path(self) -> Path:
        return self.results_dir / RECORD_NAME

    def save(self, record: RunRecord, *, indent: int | None = None) -> None:
        """Rewrite the record. Compact while the run goes on (json's C encoder only works without
        indentation, and this runs after every flow); `finish` writes it indented for people."""
        # Masked value by value, never the JSON text: a secret such as `passed` must not break the record.
        text = json.dumps(self.redact.mask_tree(record.to_json()), indent=indent, ensure_ascii=False)
        atomic_write(self.path, text)

    def finish(self, record: RunRecord) -> None:
        """The record plus junit.xml and summary.md, after the verdict is known (report.html is the stage
        finisher's, `stage.write_files`). The record is written first."""
        self.save(record, indent=2)
        masked = RunRecord.from_json(self.redact.mask_tree(record.to_json()))
        atomic_write(self.results_dir / JUNIT_NAME, junit_xml(masked))
        atomic_write(self.results_dir / SUMMARY_NAME, summary_markdown(masked))


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_FILE_MODE = 0o666 & ~_umask()


def atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:  # name the file we were writing, not our temporary one
        exc.filename, exc.filename2 = str(path), None
        raise
    try:
        # No fsync: the rename is atomic, which is what a killed or crashed run needs; syncing every
        # rewrite would cost more than the flows themselves in short runs.
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.chmod(tmp, _FILE_MODE)  # mkstemp makes 0600; results are for the whole team
        os.replace(tmp, path)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError):  # name the file we were writing, not our temporary one
            exc.filename, exc.filename2 = str(path), None
        raise


def _seconds(ms: int) -> str:
    return f"{ms / 1000:.3f}"


_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b[@-_]")
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def xml_text(text: str) -> str:
    """Text that XML 1.0 can hold: colour codes dropped, other control characters as U+FFFD."""
    return _NOT_XML.sub("\ufffd", _ANSI.sub("", text))


def junit_xml(record: RunRecord) -> str:
    """One testcase per flow; flaky flows pass with a `flaky` property and a `flakyFailure` per failed try.
    A quarantined flow carries `quarantined` and `quarantine.*` properties; when it failed (or hit an error)
    it is `skipped`, not a failure, as it does not gate the run (a test report must not go red on a run
    that passed), with the failure in the message and its output in system-out/system-err.

    Whatever bytes a tool printed, the file stays well-formed: every text goes through `xml_text`."""
    counts = record.counts()
    held = [flow for flow in quarantined(record.flows) if flow.status in BROKEN]
    suite = ET.Element("testsuite", {
        "name": WORKFLOW_NAME,
        "tests": str(len(record.flows)),
        "failures": str(counts[Status.FAILED] - sum(f.status == Status.FAILED for f in held)),
        "errors": str(counts[Status.ERROR] + counts[Status.TIMED_OUT] - sum(f.status != Status.FAILED for f in held)),
        "skipped": str(counts[Status.NOT_RUN] + len(held)),
        "time": _seconds(sum(f.duration for f in record.flows)),
        "timestamp": record.job.startTime,
    })
    if record.job.simulated:
        ET.SubElement(ET.SubElement(suite, "properties"), "property", {"name": "simulated", "value": "true"})
    for flow in record.flows:
        case = ET.SubElement(suite, "testcase", {
            "name": flow.name, "classname": flow.flowFileName, "file": flow.flowFileName,
            "time": _seconds(flow.duration),
        })
        props = ET.SubElement(case, "properties")
        ET.SubElement(props, "property", {"name": "device", "value": flow.device})
        ET.SubElement(props, "property", {"name": "attempts", "value": str(len(flow.build_attempts()))})
        if flow.impact:
            ET.SubElement(props, "property", {"name": "impact", "value": flow.impact})
        if flow.quarantined and _junit_quarantined(case, props, flow):
            continue
        if flow.status == Status.FLAKY:
            ET.SubElement(props, "property", {"name": "flaky", "value": "true"})
            for attempt in flow.attempts[:-1]:
                ET.SubElement(case, "flakyFailure", {"message": attempt.errorSummary, "type": attempt.status})
        elif flow.status == Status.FAILED:
            ET.SubElement(case, "failure", {"message": flow.errorSummary, "type": "assertion"}).text = flow.stdout[-4000:]
        elif flow.status in (Status.ERROR, Status.TIMED_OUT):
            ET.SubElement(case, "error", {"message": flow.errorSummary, "type": flow.status}).text = flow.stderr[-4000:]
        elif flow.status == Status.NOT_RUN:
            ET.SubElement(case, "skipped", {"message": not_run_reason(flow) or "not run"})  # <skipped> says "not run"
    root = ET.Element("testsuites")
    root.append(suite)
    for element in root.iter():
        element.attrib = {k: xml_text(v) for k, v in element.attrib.items()}
        element.text = xml_text(element.text) if element.text else element.text
    ET.indent(root)
    return "<?xml version='1.0' encoding='UTF-8'?>\n" + ET.tostring(root, encoding="unicode") + "\n"


def _junit_quarantined(case: ET.Element, props: ET.Element, flow: FlowResult) -> bool:
    """The quarantine's properties; a broken quarantined flow as `skipped` (True: nothing else to add)."""
    entry = flow.quarantine or {}
    ET.SubElement(props, "property", {"name": "quarantined", "value": "true"})
    for key in ("reason", "owner", "until"):
        ET.SubElement(props, "property", {"name": f"quarantine.{key}", "value": str(entry.get(key, ""))})
    if flow.status not in BROKEN:
        return False
    ET.SubElement(case, "skipped", {"message": f"quarantined until {entry.get('until', '?')} "
                                               f"({entry.get('owner', '?')}: {entry.get('reason', '')}); "
                                               f"{STATUS_LABEL[flow.status]}: {flow.errorSummary}"})
    ET.SubElement(case, "system-out").text = flow.stdout[-4000:]
    ET.SubElement(case, "system-err").text = flow.stderr[-4000:]
    return True


_ICONS: dict[str, str] = {Status.PASSED: "✅", Status.FLAKY: "⚠️", Status.FAILED: "❌", Status.ERROR: "🛑", Status.TIMED_OUT: "⏱️",
          Status.NOT_RUN: "⏭️"}


def order_flows(flows: Sequence[FlowResult]) -> list[FlowResult]:
    """Failed, error, timed out, flaky, not run, passed; by file name within a status."""
    rank = {status: index for index, status in enumerate(STATUS_ORDER)}
    return sorted(flows, key=lambda f: (rank.get(f.status, len(rank)), f.flowFileName))


NOT_RUN_PREFIX = "not run: "  # how a flow that never started says why, in its errorSummary


def say_why_not_run(record: RunRecord, cause: str) -> None:
    """The flows that never started (and say nothing yet) did not because of `cause` (its first line): the one
    place a stopped stage (stage.py) or a stopped task (boundary.py) writes it."""
    for flow in record.flows:
        if flow.status == Status.NOT_RUN and not flow.errorSummary:
            flow.errorSummary = NOT_RUN_PREFIX + (cause.splitlines() or [""])[0]


def not_run_reason(flow: FlowResult) -> str:
    """Why a flow did not run, without the "not run: " of its errorSummary: every view that shows it beside
    the status (`not_run`) says "not run" once."""
    return flow.errorSummary.removeprefix(NOT_RUN_PREFIX)


def not_run_groups(flows: Sequence[FlowResult]) -> list[tuple[str, list[FlowResult]]]:
    """The flows that did not run, by reason, in the order the reasons first appear: a build that failed
    leaves every flow `not_run` for one reason, said once (summary, annotations) rather than once a flow."""
    groups: dict[str, list[FlowResult]] = {}
    for flow in flows:
        if flow.status == Status.NOT_RUN:
            groups.setdefault(not_run_reason(flow), []).append(flow)
    return list(groups.items())


def not_run_line(reason: str, flows: Sequence[FlowResult]) -> str:
    """`4 flows not run: build failed` (the one wording of a group of flows that did not run)."""
    count = len(flows)
    return f"{count} flow{'s' if count != 1 else ''} not run" + (f": {reason}" if reason else "")


def stage_error(record: RunRecord) -> str:
    """The first stage that stopped with an error is the cause; later stages (notify) only report it."""
    for name, stage in record.stages.items():
        if stage.error and name != NOTIFY_STAGE:
            return stage.error
    return ""


def headline(record: RunRecord, kind: str | None = None, environment: str = "production") -> str:
    """The run in one line, the one wording of the summary, the report and every alert. `kind` is the
    alert's (fail, error, recovery, pass; see notify.plan), by default the record's verdict. A SIMULATED
    run (the demo) says so first."""
    return simulated_mark(record) + _headline(record, kind, environment) + impact_note(record, kind)


IMPACT_LABEL: dict[str, str] = {"current-users": "current users affected: the released app fails too",
                                "new-build-only": "new build only: the released app passes",
                                "unknown": "impact unknown"}
_IMPACT_SHORT: dict[str, str] = {"current-users": "hit{s} current users", "new-build-only": "new build only",
                                 "unknown": "impact unknown"}


def impact_note(record: RunRecord, kind: str | None = None) -> str:
    """` (1 hits current users, 1 new build only)`: the failed flows' impact triage, for a failing headline."""
    if (kind or record.verdict) != Verdict.FAIL:
        return ""
    counts: dict[str, int] = {}
    for flow in gating(record.flows):  # quarantined flows are said apart (quarantine_note)
        if flow.status == Status.FAILED and flow.impact:
            counts[flow.impact] = counts.get(flow.impact, 0) + 1
    parts = [f"{counts[impact]} " + _IMPACT_SHORT[impact].format(s="s" if counts[impact] == 1 else "")
             for impact in _IMPACT_SHORT if counts.get(impact)]
    return f" ({', '.join(parts)})" if parts else ""


def quarantine_note(flows: Sequence[FlowResult]) -> str:
    """`; 2 quarantined, 1 of them failing` (empty without quarantined flows): what the headline adds, since
    quarantined flows are not in its counts."""
    held = quarantined(flows)
    if not held:
        return ""
    failing = sum(flow.status in BROKEN for flow in held)
    return f"; {len(held)} quarantined" + (f", {failing} of them failing" if failing else "")


def _headline(record: RunRecord, kind: str | None, environment: str) -> str:
    kind = kind or record.verdict or Verdict.ERROR
    flows = gating(record.flows)  # quarantined flows are said apart (quarantine_note)
    total = len(flows)
    counts = count_statuses(flows)
    flaky = f" ({counts[Status.FLAKY]} flaky)" if counts[Status.FLAKY] else ""
    note = quarantine_note(record.flows)
    if record.flows and not flows and kind in (Verdict.PASS, Kind.RECOVERY):
        failing = sum(flow.status in BROKEN for flow in record.flows)
        return (f"No flow gates this run: all {len(record.flows)} flows are quarantined"
                + (f", {failing} of them failing" if failing else ""))
    if kind == Verdict.FAIL:
        return f"{counts[Status.FAILED]} of {total} flows failed against {environment}{note}"
    if kind == Verdict.ERROR:
        cause = stage_error(record).strip()
        if cause:
            return f"Validation could not run: {cause.splitlines()[0]}"
        broken = counts[Status.ERROR] + counts[Status.TIMED_OUT]
        if broken:
            return f"Validation could not run: {broken} of {total} flows hit infrastructure errors{note}"
        return "Validation could not run: it did not finish"
    if kind == Kind.RECOVERY:
        return f"Recovered: all {total} flows pass against {environment} again{flaky}{note}"
    return f"All {total} flows passed against {environment}{flaky}{note}"


def duration_text(seconds: float) -> str:
    """A duration for people (report, alerts): `12.3s`, `4m 05s`, `1h 02m`."""
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, rest = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes}m {rest:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m"


def _cell(text: str) -> str:
    return html.escape(text[:300], quote=False).replace("|", "\\|").replace("\n", " ")


# GitHub refuses a step summary over 1024 KiB (the whole upload is aborted), and a chain's stages share the step:
# summary.md stays within half of it, leaving out table rows (passed flows first) when a run has very many flows.
SUMMARY_BUDGET = 512 * 1024
SUMMARY_STRIP = 30  # squares of a flow's history strip at most in summary.md (the report draws them all)
MAX_STAGE_ERROR = 16_000  # characters of a stage's error in summary.md (results.json keeps all of it)
STRIP_ICONS: dict[str, str] = {Status.PASSED: "🟩", Status.FLAKY: "🟨", Status.FAILED: "🟥", Status.ERROR: "🟪",
                               Status.TIMED_OUT: "🟧", Status.NOT_RUN: "⬜"}


def summary_markdown(record: RunRecord, budget: int = SUMMARY_BUDGET) -> str:
    """summary.md: within `budget` bytes, by keeping only the first rows of each table when it must."""
    text = _summary(record, None)
    if len(text.encode()) <= budget:
        return text
    low, high = 0, len(record.flows)  # the most rows per table that fit
    while low < high:
        middle = (low + high + 1) // 2
        if len(_summary(record, middle).encode()) <= budget:
            low = middle
        else:
            high = middle - 1
    return _summary(record, low)


def _rows(rows: list[str], limit: int | None, what: str = "flows") -> list[str]:
    if limit is None or len(rows) <= limit:
        return rows
    return [*rows[:limit], f"| … | {len(rows) - limit} more {what}: every one is in {REPORT_NAME} and {RECORD_NAME} |"]


def _summary(record: RunRecord, limit: int | None) -> str:
    lines = [f"## {simulated_mark(record)}{WORKFLOW_NAME}: {record.verdict or RUNNING}", "", f"**{_cell(headline(record))}**", ""]
    gate, held = gating(record.flows), quarantined(record.flows)
    counts = count_statuses(gate)
    lines.append(" · ".join([f"{_ICONS[s]} {n} {STATUS_LABEL[s]}" for s, n in counts.items() if n]
                            + ([f"🔕 {len(held)} quarantined"] if held else [])))
    lines += ["", f"Run `{record.runId}`" + (f" · [workflow run]({record.job.url})" if record.job.url else "")
              + (f" · devices: {', '.join(record.devices)}" if record.devices else ""), ""]
    artifacts = f" (in the [run's artifacts]({record.job.url}#artifacts))" if record.job.url else ""
    lines += [f"📄 [HTML report]({REPORT_NAME}){artifacts}: screenshots, output and a timeline of every flow", ""]
    if gate:
        lines += ["| | flow | status | attempts | duration | device | error |", "|---|---|---|---|---|---|---|"]
        rows = []
        for flow in order_flows(gate):
            error = "" if flow.status == Status.NOT_RUN else flow.errorSummary  # said once, below the table
            rows.append(
                f"| {_ICONS[flow.status]} | `{_cell(flow.flowFileName)}` | {flow.status} | {len(flow.build_attempts())} "
                f"| {flow.duration / 1000:.1f}s{_slow(flow)} | {flow.device} | {_state(flow)}{_cell(error)} |"
            )
        lines += _rows(rows, limit)
    elif held:
        lines.append("No flow gates this run: every flow is quarantined (below).")
    if record.flows:
        groups = not_run_groups(record.flows)
        for index, (reason, flows) in enumerate(groups):
            which = " (" + ", ".join(f"`{_cell(f.flowFileName)}`" for f in flows[:limit]) + ")" if len(groups) > 1 else ""
            lines += [""] if index == 0 else []
            lines.append(f"{_ICONS[Status.NOT_RUN]} {_cell(not_run_line(reason, flows))}" + which)
    lines += _quarantine_section(held, limit)
    lines += impact_lines(record)
    flaky = [f for f in gate if f.status == Status.FLAKY]
    if flaky:
        lines += ["", "**Flaky** (passed on a retry; fix before they turn into failures):"]
        lines += [f"- `{f.flowFileName}`: {len(f.attempts)} attempts, first failure: {_cell(f.attempts[0].errorSummary)}"
                  for f in flaky[:limit]]
        lines += [f"- … {len(flaky) - limit} more"] if limit is not None and len(flaky) > limit else []
    lines += _history_section(record, limit)
    errors = [(name, s.error) for name, s in record.stages.items() if s.error]
    for name, whole in errors:
        error = whole if len(whole) <= MAX_STAGE_ERROR else (
            whole[:MAX_STAGE_ERROR] + f"\n… (cut; the whole error is in {RECORD_NAME})")
        fence = "`" * max(3, 1 + max((len(run) for run in re.findall("`+", error)), default=0))  # never closed early
        lines += ["", f"**{name} stopped:**", fence, error, fence]
    return "\n".join(lines) + "\n"


# --- the history and the quarantine in summary.md ---------------------------------------------------------

def percent(rate: Any) -> str:
    return f"{round(float(rate) * 100)}%" if isinstance(rate, (int, float)) else "—"


def runs_ago(count: int) -> str:
    return "this run" if count == 0 else "1 run ago" if count == 1 else f"{count} runs ago"


def short_commit(commit: str) -> str:
    return commit[:7]


def failing_since_text(history: Mapping[str, Any]) -> str:
    """`abc1234, 3 runs ago` (plain text): where the current failing streak began; "" when not failing."""
    since = history.get("failingSince")
    if not isinstance(since, Mapping):
        return ""
    where = short_commit(str(since.get("commit") or "")) or str(since.get("runId") or "?")
    return f"{where}, {runs_ago(int(since.get('runsAgo') or 0))}"


def _state(flow: FlowResult) -> str:
    """`🆕 new · ` or `still failing since abc1234, 3 runs ago · ` (from the history), before a failure's error:
    the status cell stays the status."""
    history = flow.history or {}
    state = history.get("state") or ""
    if state == "new":
        return "🆕 new · "
    if state:
        since = failing_since_text(history)
        return f"{_cell(str(state))}{' since ' + _cell(since) if since else ''} · "
    return ""


def _slow(flow: FlowResult) -> str:
    history = flow.history or {}
    if not history.get("slow"):
        return ""
    p95 = history.get("p95")
    return " 🐢 slow" + (f" (p95 {duration_text(p95 / 1000)})" if isinstance(p95, (int, float)) else "")


def strip_icons(statuses: Sequence[str], most: int = SUMMARY_STRIP) -> str:
    """The outcomes as squares, oldest first, this run last; only the `most` newest."""
    shown = "".join(STRIP_ICONS.get(status, "⬜") for status in statuses[-most:])
    return ("…" if len(statuses) > most else "") + shown


def _history_section(record: RunRecord, limit: int | None) -> list[str]:
    flows = [flow for flow in order_flows(gating(record.flows)) + order_flows(quarantined(record.flows))
             if flow.history]
    if not flows:
        return []
    lines = ["", "### History", "",
             "| flow | outcomes (oldest → this run) | pass | flaky | failing since | p50 / p95 |",
             "|---|---|---|---|---|---|"]
    rows = []
    for flow in flows:
        history = flow.history or {}
        strip = [str(status) for status in history.get("strip") or []]
        since = failing_since_text(history)
        if since and history.get("state") == "new":
            since = f"🆕 new: {since}"
        elif since:
            since = f"still failing since {since}"
        p50, p95 = history.get("p50"), history.get("p95")
        times = " / ".join(duration_text(ms / 1000) if isinstance(ms, (int, float)) else "—" for ms in (p50, p95))
        rows.append(f"| `{_cell(flow.flowFileName)}`{' 🔕' if flow.quarantined else ''} | {strip_icons(strip)} "
                    f"| {percent(history.get('passRate'))} | {percent(history.get('flakyRate'))} | {_cell(since)} "
                    f"| {times}{_slow(flow)} |")
    lines += _rows(rows, limit)
    legend = " · ".join(f"{STRIP_ICONS[s]} {STATUS_LABEL[s]}" for s in STATUS_ORDER if s != Status.NOT_RUN)
    lines += ["", f"{legend}; rates over the outcomes shown, this run included; p50/p95 of the passing runs before "
                  "this one; 🐢 slow: this run took over p95 × `history.slow_factor`"]
    return lines


def _quarantine_section(flows: Sequence[FlowResult], limit: int | None) -> list[str]:
    if not flows:
        return []
    lines = ["", "### Quarantined (they ran, but do not gate the run)", "",
             "| | flow | status | until | owner | reason | error |", "|---|---|---|---|---|---|---|"]
    rows = []
    for flow in order_flows(flows):
        entry = flow.quarantine or {}
        error = "" if flow.status == Status.NOT_RUN else flow.errorSummary
        rows.append(f"| {_ICONS[flow.status]} | `{_cell(flow.flowFileName)}` | {flow.status} "
                    f"| {_cell(str(entry.get('until', '')))} | {_cell(str(entry.get('owner', '')))} "
                    f"| {_cell(str(entry.get('reason', '')))} | {_state(flow)}{_cell(error)} |")
    return lines + _rows(rows, limit)


def impact_lines(record: RunRecord) -> list[str]:
    """summary.md's impact section: each failed flow's impact triage, and which released APK it used."""
    triaged = [f for f in order_flows(record.flows) if f.impact]
    if not triaged:
        return []
    released = record.environment.releasedApk or {}
    which = f" (released app: {_cell(released_text(released))})" if released.get("path") else ""
    lines = ["", f"**Impact**{which}:"]
    for flow in triaged:
        reason = f": {_cell(flow.impactReason)}" if flow.impactReason else ""
        lines.append(f"- `{_cell(flow.flowFileName)}`: **{flow.impact}**, {IMPACT_LABEL.get(flow.impact, '')}{reason}")
    return lines


def released_text(released: Mapping[str, Any]) -> str:
    """`2.0.0 (41), app-release.apk`: the released APK impact triage ran, as people read it."""
    name, code = released.get("versionName"), released.get("versionCode")
    version = f"{name} ({code})" if name and code is not None else str(name or code or "")
    return ", ".join(p for p in (version, str(released.get("path", ""))) if p)


class RecordUnreadable(ConfigError):
    """A results.json that is there but cannot be used: corrupt, of a newer schema, or not a run record."""


def load_record(path: Path) -> RunRecord | None:
    """The record at `path`; None only when there is no such file. A file that is there but corrupt, from a
    newer schema or not a run record raises RecordUnreadable, which says which and where."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise RecordUnreadable(f"the run record '{path}' cannot be read: {exc}",
                               fix="check the file's permissions, or remove it to start a new record") from None
    try:
        data: Any = json.loads(text)
    except ValueError as exc:
        raise RecordUnreadable(f"the run record '{path}' is corrupt (not valid JSON: {exc})",
                               fix="remove it (a new run writes a new one), or restore it from the run's artifacts") from None
    version = data.get("schemaVersion", SCHEMA_VERSION) if isinstance(data, dict) else None
    if isinstance(version, int) and version > SCHEMA_VERSION:
        raise RecordUnreadable(
            f"the run record '{path}' has schema version {version}, newer than this prodval reads ({SCHEMA_VERSION})",
            fix="update prodval (`pip install -e tools` from the newer checkout), or use the prodval that wrote it")
    try:
        if not isinstance(data, dict) or not isinstance(version, int):
            raise TypeError("not a JSON object with a schemaVersion number")
        return RunRecord.from_json(data)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        what = f"missing {exc}" if isinstance(exc, KeyError) else str(exc)
        raise RecordUnreadable(f"the run record '{path}' is not a run record ({what})",
                               fix="pass the results folder written by `invoke validate`, or remove the file") from None


def _key(folder: Path) -> str:
    return os.path.abspath(folder)  # not resolve(): the folder may be a symlink loop


_UNWRITTEN: dict[str, RunRecord] = {}  # results folder -> the finished record its disk did not take


def keep_unwritten(results_dir: Path, record: RunRecord | None) -> None:
    """Keep (or, with None, forget) the record a stopped stage of this chain could not write (full or
    read-only disk), for `notify` later in the chain (`boundary.finish_record` keeps it)."""
    if record is None:
        _UNWRITTEN.pop(_key(results_dir), None)
    else:
        _UNWRITTEN[_key(results_dir)] = record


def unwritten_record(results_dir: Path) -> RunRecord | None:
    """The record of a stage of this chain that stopped and could not write it (full or read-only disk)."""
    return _UNWRITTEN.get(_key(results_dir))


def start_record(writer: RecordWriter, environ: Mapping[str, str], stage: str, run_id: str,
                 deployed_sha: str | None = None, warn: Callable[[str], None] | None = None) -> RunRecord:
    """The record a stage writes into.

    Stages of one chain (`invoke build-apk validate notify`, one process) or of one CI run (the same
    VALIDATION_RUN_ID, or one GitHub workflow run, re-run attempts included) share one record: a stage continues the record in the
    results folder when an earlier stage of the same run left it there and this stage has not run in
    it yet. Otherwise it starts a new record, which keeps the build stage and APK only when they are
    the same run's. Another run's build, failed or not, never decides this one (`warn` says so); nor
    does a results.json that cannot be read (`warn` says what is wrong with it).
    """
    try:
        previous = load_record(writer.path)
    except RecordUnreadable as exc:
        previous = None
        if warn is not None:
            warn(f"{exc.message}; starting a new run record")
    same_run = previous is not None and previous.runId == run_id
    if previous is not None and same_run and previous.stages and stage not in previous.stages:
        record = previous
    else:
        record = RunRecord(runId=run_id, job=job_from_env(environ, deployed_sha))
        record.job.startTime = now_iso()
        build = previous.stages.get(BUILD_STAGE) if previous is not None else None
        if previous is not None and build is not None and same_run:
            record.stages[BUILD_STAGE] = build
            record.apk = previous.apk
            record.environment.apkBuildPath = previous.environment.apkBuildPath
        elif previous is not None and build is not None and warn is not None:
            warn(f"the build recorded in {writer.path} is from another run ({previous.runId}, {build.outcome}): "
                 f"neither its outcome nor its APK is used; pass --apk to test an APK, or run "
                 f"`invoke build-apk {stage}` as one chain")
    record.job.status = RUNNING
    record.environment.alertChannels = alert_channels(environ)
    record.stages[stage] = Stage(RUNNING, now_iso())
    writer.save(record)
    note_run_id(writer.results_dir, record.runId)
    return record


def start_new_record(writer: RecordWriter, environ: Mapping[str, str], stage: str, run_id: str,
                     deployed_sha: str | None = None) -> RunRecord:
    """A new record for a stage that always begins a chain (`build-apk`), never continuing an old one.

    The files derived from the previous record (junit.xml, summary.md) describe another run: removed.
    """
    for stale in (JUNIT_NAME, SUMMARY_NAME):
        (writer.results_dir / stale).unlink(missing_ok=True)
    record = RunRecord(runId=run_id, job=job_from_env(environ, deployed_sha))
    record.job.startTime = now_iso()
    record.job.status = RUNNING
    record.environment.alertChannels = alert_channels(environ)
    record.stages[stage] = Stage(RUNNING, now_iso())
    writer.save(record)
    note_run_id(writer.results_dir, record.runId)
    return record
