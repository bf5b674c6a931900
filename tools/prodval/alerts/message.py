"""What an alert says, built from the run record; every channel renders the same `Alert`.

The headline tells a regression ("2 of 9 flows failed against production") from a run that could not
validate ("Validation could not run: emulator did not boot") from a recovery. Then the environment, the
app version and the deployed commit, each failed flow with its `errorSummary` and attempt count, flaky
flows apart, the screen recordings (named among the artifacts), the duration, and links to the run, its
artifacts and the HTML report where those exist.

With the run's history (`flow.history`, filled by history.annotate) the headline also tells new failures
from old ones ("2 new failures: ..." vs "2 still failing since abc1234 (3 runs): ..."), each failed flow
says `new` or `still failing since <commit> (N runs)` (N: the failing streak, this run included) and
`slow` when its time was over the window's p95; quarantined flows are listed apart (they do not count
in the verdict, so they never page). Without history an alert reads as it always did.
Building is pure: no I/O, so tests and --dry-run see exactly what would be sent.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime

from ..outcomes import Kind, Status
from ..recording import videos_of
from ..results import (
    BROKEN,
    FlowResult,
    RunRecord,
    duration_text,
    gating,
    headline,
    quarantined,
    released_text,
    short_commit,
    simulated_mark,
    stage_error,
)

KINDS: tuple[str, ...] = tuple(Kind)
TITLE_PREFIX: dict[str, str] = {kind: "RECOVERED" if kind == Kind.RECOVERY else kind.upper() for kind in Kind}


@dataclass(frozen=True)
class Link:
    text: str
    url: str


_WHAT: dict[str, str] = {Status.FAILED: "failed", Status.ERROR: "infrastructure error",
                         Status.TIMED_OUT: "timed out", Status.FLAKY: "flaky"}




@dataclass(frozen=True)
class FlowLine:
    file: str
    status: str
    attempts: int
    summary: str
    state: str = ""  # from the history: "new" | "still failing" | "" (no history, or it did not fail)
    since: str = ""  # still failing: the commit (short) or run where the failing streak began
    streak: int = 0  # still failing: the runs of the streak, this one included
    slow: bool = False  # its time was over the window's p95 x history.slow_factor
    quarantine: str = ""  # quarantined: "until 2026-12-31 (owner: reason)"
    impact: str = ""  # impact triage (impact.py): current-users, new-build-only, unknown
    videos: tuple[str, ...] = ()  # the attempts' kept screen recordings (paths in the results folder)

    def detail(self) -> str:
        """What happened, without the file name: `failed (2 attempts; impact: current-users), new, slow: Element
        not found`."""
        tries = f"{self.attempts} attempt{'s' if self.attempts != 1 else ''}"
        what = _WHAT.get(self.status, self.status)
        notes = [self.history_note()] if self.state else []
        notes += ["slow"] if self.slow else []
        notes += [f"quarantined {self.quarantine}".rstrip()] if self.quarantine else []
        impact = f"; impact: {self.impact}" if self.impact else ""
        return (f"{what} ({tries}{impact})" + "".join(f", {n}" for n in notes)
                + (f": {self.summary}" if self.summary else "") + _video_note(self.videos))

    def history_note(self) -> str:
        if self.state != "still failing":
            return self.state
        runs = f" ({self.streak} run{'s' if self.streak != 1 else ''})" if self.streak else ""
        return f"still failing since {self.since}{runs}" if self.since else "still failing"

    def describe(self) -> str:
        return f"{self.file}: {self.detail()}"


@dataclass(frozen=True)
class Fact:
    """One labelled value of an alert; `url`, when set, is where the value links to."""

    label: str
    value: str
    url: str = ""


@dataclass(frozen=True)
class AlertContext:
    """What the record does not hold: where the run sits, from settings and the CI environment."""

    environment: str = "production"
    check_name: str = "production-validation"
    repository: str = ""
    sha: str = ""
    server_url: str = "https://github.com"
    run_url: str = ""
    artifacts_url: str = ""
    report_url: str = ""


@dataclass(frozen=True)
class Alert:
    kind: str
    headline: str
    environment: str
    check_name: str
    run_id: str = ""
    app_version: str = ""
    commit: str = ""
    commit_url: str = ""
    duration: str = ""
    failed: tuple[FlowLine, ...] = ()
    flaky: tuple[FlowLine, ...] = ()
    not_run: int = 0
    stage_error: str = ""
    links: tuple[Link, ...] = field(default=())
    quarantined: tuple[FlowLine, ...] = ()  # quarantined flows that did not pass: shown apart, never counted
    trigger: str = ""  # deploy | schedule | manual (job.trigger), "" when the record does not say
    reminder: str = ""  # a scheduled run's reminder: why it speaks again (see alerts/cadence.py)
    history: str = ""  # the history's own note (e.g. it was unreadable and started fresh)
    released: str = ""  # the released app impact triage ran (`2.0.0 (41), released.apk`)
    here: bool = False  # it pages (notify.page_on_impact) and a flow hits current users: `<!here>` in Slack

    @property
    def title(self) -> str:
        reminder = " (reminder)" if self.reminder else ""
        return f"[{self.check_name}] {TITLE_PREFIX[self.kind]}{reminder}: {self.headline}"

    @property
    def facts(self) -> list[Fact]:
        """The facts worth showing, in order; empty values left out. The commit links to GitHub."""
        facts = [
            Fact("Environment", self.environment),
            Fact("App version", self.app_version),
            Fact("Released app", self.released),
            Fact("Deployed commit", self.commit[:12], self.commit_url),
            Fact("Duration", self.duration),
            Fact("Run", self.run_id),
            Fact("Trigger", TRIGGER_TEXT.get(self.trigger, self.trigger)),
            Fact("Reminder", self.reminder),
            Fact("History", self.history),
        ]
        return [fact for fact in facts if fact.value]


TRIGGER_TEXT = {"deploy": "deployment", "schedule": "scheduled re-validation", "manual": "manual run"}


def _duration(start: str, end: str) -> str:
    try:
        seconds = (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()
    except ValueError:
        return ""
    return duration_text(seconds) if seconds >= 0 else ""


def app_version(record: RunRecord) -> str:
    """`versionName (versionCode), package` from what build-apk read from the APK, when it ran."""
    apk = record.apk or {}
    name, code = apk.get("versionName"), apk.get("versionCode")
    package = apk.get("packageName") or apk.get("package") or ""
    version = f"{name} ({code})" if name and code else str(name or code or "")
    return ", ".join(str(p) for p in (version, package) if p)


def build_alert(record: RunRecord, kind: str, ctx: AlertContext, reminder: str = "") -> Alert:
    """The alert for this run record; `kind` is fail, error, recovery or pass (see notify.plan); `reminder`
    says why a scheduled run that is still failing speaks again (alerts/cadence.py)."""
    if kind not in KINDS or kind == Kind.TEST:
        raise ValueError(f"unknown alert kind {kind!r}")
    gate = gating(record.flows)  # quarantined flows are listed apart and never page
    broken = [f for f in gate if f.status in BROKEN]
    broken.sort(key=lambda f: (BROKEN.index(f.status), f.flowFileName))
    end = record.job.endTime or max((s.endTime for s in record.stages.values() if s.endTime), default="")
    # a history with no run before this one (new, or the cache evicted) cannot tell new from old
    known = bool((record.history or {}).get("runs"))
    failed = tuple(flow_line(f, f.status, known) for f in broken)
    return Alert(
        kind=kind,
        headline=history_headline(record, kind, ctx.environment, failed),
        environment=ctx.environment,
        check_name=ctx.check_name,
        run_id=record.runId,
        app_version=app_version(record),
        commit=ctx.sha,
        commit_url=_commit_url(ctx),
        duration=_duration(record.job.startTime, end) if record.job.startTime and end else "",
        failed=failed,
        flaky=tuple(flow_line(f, Status.FLAKY) for f in gate if f.status == Status.FLAKY),
        not_run=record.counts()[Status.NOT_RUN],
        stage_error=stage_error(record).strip() if kind == Kind.ERROR else "",
        links=links(ctx),
        quarantined=tuple(flow_line(f, f.status, known) for f in sorted(quarantined(record.flows),
                                                                        key=lambda f: f.flowFileName)
                          if f.status in (*BROKEN, Status.FLAKY)),
        trigger=record.job.trigger,
        reminder=reminder,
        history=str((record.history or {}).get("note") or ""),
        released=released_text(record.environment.releasedApk or {}) if any(f.impact for f in broken) else "",
    )


def flow_line(flow: FlowResult, status: str, known: bool = True) -> FlowLine:
    """One flow as an alert lists it, with what its history says (`flow.history`) and its quarantine;
    `known`: the history held runs before this one (else new and old cannot be told apart)."""
    facts = flow.history or {}
    since = facts.get("failingSince") or {}
    state = str(facts.get("state") or "") if status in BROKEN and known else ""
    begun = short_commit(str(since.get("commit") or "")) or (f"run {since['runId']}" if since.get("runId") else "")
    runs_ago = since.get("runsAgo")
    quarantine = ""
    if flow.quarantined:
        entry = flow.quarantine or {}
        who = ": ".join(str(entry[k]) for k in ("owner", "reason") if entry.get(k))
        quarantine = " ".join(part for part in (f"until {entry['until']}" if entry.get("until") else "",
                                                f"({who})" if who else "") if part)
    return FlowLine(flow.flowFileName, status, len(flow.build_attempts()), _one_line(flow.errorSummary), state=state,
                    since=begun if state == "still failing" else "",
                    streak=runs_ago + 1 if state == "still failing" and isinstance(runs_ago, int) else 0,
                    slow=bool(facts.get("slow")), quarantine=quarantine, impact=flow.impact,
                    videos=_videos(flow))


def history_note(failed: Sequence[FlowLine]) -> str:
    """"2 new failures; 1 still failing since abc1234 (3 runs)": what the history says of the failed flows
    ("" without history). Several streaks: the oldest is named."""
    new = [f for f in failed if f.state == "new"]
    still = [f for f in failed if f.state == "still failing"]
    parts = [f"{len(new)} new failure{'s' if len(new) != 1 else ''}"] if new else []
    if still:
        oldest = max(still, key=lambda f: f.streak)
        since = oldest.history_note().removeprefix("still failing").strip()
        several = len({f.since for f in still}) > 1
        parts.append(f"{len(still)} still failing" + (f", the oldest {since}" if several and since else
                                                       f" {since}" if since else ""))
    return "; ".join(parts)


def history_headline(record: RunRecord, kind: str, environment: str, failed: Sequence[FlowLine]) -> str:
    """The headline (results.headline), led by what the history says of a failure: "2 new failures: 2 of 9
    flows failed against production", "1 still failing since abc1234 (3 runs): 1 of 9 flows failed ..."."""
    text = headline(record, kind, environment)
    # a `fail` headline counts the assertion failures: its note speaks of the same flows
    counted = [f for f in failed if f.status == Status.FAILED] if kind == Kind.FAIL else list(failed)
    note = history_note(counted) if kind in (Kind.FAIL, Kind.ERROR) else ""
    if not note:
        return text
    mark = simulated_mark(record)
    if kind == Kind.FAIL:
        return f"{mark}{note}: {text.removeprefix(mark)}"
    return f"{text} ({note})"


def make_test_alert(ctx: AlertContext, record: RunRecord | None = None) -> Alert:
    """A clearly marked test alert (`invoke notify --test`): proves a channel works, pages nobody for real."""
    return Alert(
        kind=Kind.TEST,
        headline=f"Test alert from production validation ({ctx.environment}): this channel works; nothing failed",
        environment=ctx.environment,
        check_name=ctx.check_name,
        run_id=record.runId if record else "",
        app_version=app_version(record) if record else "",
        commit=ctx.sha,
        commit_url=_commit_url(ctx),
        links=links(ctx),
    )


def masked(alert: Alert, redact: Callable[[str], str]) -> Alert:
    """The alert with every known secret masked: the record is masked already, this is the safety net."""
    return replace(
        alert,
        headline=redact(alert.headline),
        app_version=redact(alert.app_version),
        released=redact(alert.released),
        stage_error=redact(alert.stage_error),
        failed=tuple(replace(f, file=redact(f.file), summary=redact(f.summary)) for f in alert.failed),
        flaky=tuple(replace(f, file=redact(f.file), summary=redact(f.summary)) for f in alert.flaky),
        quarantined=tuple(replace(f, file=redact(f.file), summary=redact(f.summary), quarantine=redact(f.quarantine))
                          for f in alert.quarantined),
        history=redact(alert.history),
        links=tuple(replace(link, url=redact(link.url)) for link in alert.links),
    )


def links(ctx: AlertContext) -> tuple[Link, ...]:
    found = [Link("Workflow run", ctx.run_url), Link("Artifacts", ctx.artifacts_url), Link("HTML report", ctx.report_url)]
    return tuple(link for link in found if link.url)


def _commit_url(ctx: AlertContext) -> str:
    if ctx.repository and ctx.sha:
        return f"{ctx.server_url.rstrip('/')}/{ctx.repository}/commit/{ctx.sha}"
    return ""


def _video_note(videos: Sequence[str], most: int = 3) -> str:
    """` [videos: a.mp4, b.mp4 and 2 more]` (the recordings, named among the run's artifacts)."""
    if not videos:
        return ""
    more = f" and {len(videos) - most} more" if len(videos) > most else ""
    return f" [video{'s' if len(videos) > 1 else ''}: {', '.join(videos[:most])}{more}]"


def _videos(flow: FlowResult) -> tuple[str, ...]:
    return tuple(path for attempt in flow.attempts for path in videos_of(attempt.artifactPaths))


def _one_line(text: str) -> str:
    return " ".join(text.split())


def clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: max(0, limit - 3)] + "..."


def take(items: Sequence[FlowLine], limit: int) -> tuple[list[FlowLine], int]:
    """The first `limit` items and how many were left out (for an explicit "...and N more")."""
    return list(items[:limit]), max(0, len(items) - limit)


# Email and --dry-run render these two; Slack and PagerDuty have their own shapes.
EMAIL_MAX_FLOWS = 100
QUARANTINED_TITLE = "Quarantined flows (not counted, never page)"


def sections(alert: Alert) -> tuple[tuple[str, tuple[FlowLine, ...]], ...]:
    """The lists of flows an alert shows, titled, in order: failed, flaky, quarantined (apart)."""
    return (("Failed flows", alert.failed), ("Flaky flows (passed on a retry)", alert.flaky),
            (QUARANTINED_TITLE, alert.quarantined))


def text_body(alert: Alert) -> str:
    lines = [alert.title, ""]
    lines += [f"{fact.label}: {fact.value}" + (f" ({fact.url})" if fact.url else "") for fact in alert.facts]
    if alert.stage_error:
        lines += ["", "Why it could not run:", *[f"  {ln}" for ln in alert.stage_error.splitlines()[:20]]]
    for title, flows in sections(alert):
        if flows:
            shown, hidden = take(flows, EMAIL_MAX_FLOWS)
            lines += ["", f"{title}:"] + [f"  - {clip(f.describe(), 500)}" for f in shown]
            if hidden:
                lines.append(f"  ...and {hidden} more")
    if alert.not_run:
        lines += ["", f"{alert.not_run} flow(s) did not run."]
    if alert.links:
        lines += [""] + [f"{link.text}: {link.url}" for link in alert.links]
    return "\n".join(lines) + "\n"


def html_body(alert: Alert) -> str:
    esc = html.escape
    colour: dict[str, str] = {Kind.FAIL: "#b42318", Kind.ERROR: "#b54708", Kind.RECOVERY: "#067647",
                              Kind.PASS: "#067647", Kind.TEST: "#175cd3"}
    parts = [
        "<!doctype html><html><body style=\"font-family:sans-serif\">",
        f"<h2 style=\"color:{colour[alert.kind]}\">{esc(TITLE_PREFIX[alert.kind])}: {esc(alert.headline)}</h2>",
        "<table>",
    ]
    for fact in alert.facts:
        value = f"<a href=\"{esc(fact.url)}\">{esc(fact.value)}</a>" if fact.url else esc(fact.value)
        parts.append(f"<tr><th align=\"left\">{esc(fact.label)}</th><td>{value}</td></tr>")
    parts.append("</table>")
    if alert.stage_error:
        parts.append(f"<h3>Why it could not run</h3><pre>{esc(alert.stage_error)}</pre>")
    for title, flows in sections(alert):
        if flows:
            shown, hidden = take(flows, EMAIL_MAX_FLOWS)
            parts.append(f"<h3>{esc(title)}</h3><ul>")
            parts += [f"<li><code>{esc(f.file)}</code>: {esc(clip(f.detail(), 500))}</li>"
                      for f in shown]
            if hidden:
                parts.append(f"<li>...and {hidden} more</li>")
            parts.append("</ul>")
    if alert.not_run:
        parts.append(f"<p>{alert.not_run} flow(s) did not run.</p>")
    if alert.links:
        parts.append("<p>" + " · ".join(f"<a href=\"{esc(link.url)}\">{esc(link.text)}</a>" for link in alert.links)
                     + "</p>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"
