"""What an alert says, built from the run record; every channel renders the same `Alert`.

The headline tells a regression ("2 of 9 flows failed against production") from a run that could not
validate ("Validation could not run: emulator did not boot") from a recovery. Then the environment, the
app version and the deployed commit, each failed flow with its `errorSummary`, attempt count and screen
recordings (named among the artifacts), flaky flows apart, the duration, and links to the run, its
artifacts and the HTML report where those exist.
Building is pure: no I/O, so tests and --dry-run see exactly what would be sent.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime

from ..outcomes import Kind, Status
from ..recording import videos_of
from ..results import BROKEN, FlowResult, RunRecord, duration_text, headline, stage_error

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
    videos: tuple[str, ...] = ()  # the attempts' kept screen recordings (paths in the results folder)

    def detail(self) -> str:
        """What happened, without the file name: `failed (2 attempts): Element not found`."""
        tries = f"{self.attempts} attempt{'s' if self.attempts != 1 else ''}"
        what = _WHAT.get(self.status, self.status)
        return f"{what} ({tries})" + (f": {self.summary}" if self.summary else "") + _video_note(self.videos)

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

    @property
    def title(self) -> str:
        return f"[{self.check_name}] {TITLE_PREFIX[self.kind]}: {self.headline}"

    @property
    def facts(self) -> list[Fact]:
        """The facts worth showing, in order; empty values left out. The commit links to GitHub."""
        facts = [
            Fact("Environment", self.environment),
            Fact("App version", self.app_version),
            Fact("Deployed commit", self.commit[:12], self.commit_url),
            Fact("Duration", self.duration),
            Fact("Run", self.run_id),
        ]
        return [fact for fact in facts if fact.value]


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


def build_alert(record: RunRecord, kind: str, ctx: AlertContext) -> Alert:
    """The alert for this run record; `kind` is fail, error, recovery or pass (see notify.plan)."""
    if kind not in KINDS or kind == Kind.TEST:
        raise ValueError(f"unknown alert kind {kind!r}")
    broken = [f for f in record.flows if f.status in BROKEN]
    broken.sort(key=lambda f: (BROKEN.index(f.status), f.flowFileName))
    end = record.job.endTime or max((s.endTime for s in record.stages.values() if s.endTime), default="")
    return Alert(
        kind=kind,
        headline=headline(record, kind, ctx.environment),
        environment=ctx.environment,
        check_name=ctx.check_name,
        run_id=record.runId,
        app_version=app_version(record),
        commit=ctx.sha,
        commit_url=_commit_url(ctx),
        duration=_duration(record.job.startTime, end) if record.job.startTime and end else "",
        failed=tuple(FlowLine(f.flowFileName, f.status, len(f.attempts), _one_line(f.errorSummary), _videos(f))
                     for f in broken),
        flaky=tuple(FlowLine(f.flowFileName, Status.FLAKY, len(f.attempts), _one_line(f.errorSummary), _videos(f))
                    for f in record.flows if f.status == Status.FLAKY),
        not_run=record.counts()[Status.NOT_RUN],
        stage_error=stage_error(record).strip() if kind == Kind.ERROR else "",
        links=links(ctx),
    )


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
        stage_error=redact(alert.stage_error),
        failed=tuple(replace(f, file=redact(f.file), summary=redact(f.summary)) for f in alert.failed),
        flaky=tuple(replace(f, file=redact(f.file), summary=redact(f.summary)) for f in alert.flaky),
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


def text_body(alert: Alert) -> str:
    lines = [alert.title, ""]
    lines += [f"{fact.label}: {fact.value}" + (f" ({fact.url})" if fact.url else "") for fact in alert.facts]
    if alert.stage_error:
        lines += ["", "Why it could not run:", *[f"  {ln}" for ln in alert.stage_error.splitlines()[:20]]]
    for title, flows in (("Failed flows", alert.failed), ("Flaky flows (passed on a retry)", alert.flaky)):
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
    for title, flows in (("Failed flows", alert.failed), ("Flaky flows (passed on a retry)", alert.flaky)):
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
