"""`invoke notify`: from the run record to people (Slack, email, PagerDuty) and to the deployment gate.

    plan      which channel gets which alert, from the verdict, the previous run and `--on` (pure); for a
              scheduled run also from its turn (alerts/cadence.py: a change of state, or a reminder)
    run       build the alerts, deliver each channel on its own, report every delivery (console,
              `::error::` in Actions, the step summary, the record's `alerts` section), and remember in
              the run history what was sent (a scheduled run's reminders are timed from it)

A delivery failure never changes the verdict and never stops the other channels. The commit status is
posted for every run (it is the gate; a scheduled run posts under `<check name>/scheduled`); PagerDuty
resolves on every pass (idempotent thanks to the deterministic dedup key); Slack and email speak on fail
and error, and on a pass only when it is a recovery (the previous run failed) or with `--on always`.
Scheduled runs speak on a change of state and remind every `notify.remind_every` hours (cadence.py).

The previous run's verdict comes from `--previous`, else the run history (`record.history.previous`),
else, in Actions, the GitHub API.
"""

from __future__ import annotations

import functools
import html
import multiprocessing
import os
import signal
import socket
import sqlite3
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

from . import runlock
from .alerts import Channel, Delivery, RetryPolicy, cadence
from .alerts.cadence import SCHEDULE, Turn
from .alerts.email import DEFAULT_PORT, OPTIONAL_VARS, REQUIRED_VARS, SECURITY, Email
from .alerts.github import CommitStatus, origin_repository, previous_verdict
from .alerts.message import Alert, AlertContext, build_alert, make_test_alert, masked
from .alerts.pagerduty import DEFAULT_EVENTS_URL, PagerDuty, dedup_key
from .alerts.slack import Slack
from .commands import die_with_parent
from .console import Console, relative_display
from .errors import DeliveryFailed, NotifyError
from .history import History, HistoryUnusable
from .outcomes import Kind, Verdict
from .results import (
    BROKEN,
    NOTIFY_STAGE,
    RECORD_NAME,
    REPORT_NAME,
    RecordUnreadable,
    RecordWriter,
    RunRecord,
    alert_channels,
    deployed_commit,
    gating,
    load_record,
    run_url,
    simulated_mark,
    unwritten_record,
)
from .secrets import Redactor
from .settings import IMPACTS, NotifySettings
from .stage import stage

MESSAGE_CHANNELS = ("slack", "email")
PEOPLE_CHANNELS = (*MESSAGE_CHANNELS, "pagerduty")  # what the history remembers (the status tells nobody)
NOW_VAR = "PRODVAL_NOW"  # for tests only: the time notify takes for now (ISO 8601); unset: the real clock
T = TypeVar("T")
FAILED = (Verdict.FAIL, Verdict.ERROR)
CURRENT_USERS, UNKNOWN_IMPACT = IMPACTS[0], IMPACTS[2]


def plan(verdict: str, previous: str | None, on: str, channels: Sequence[str],
         turn: Turn | None = None, *, pages: bool = True) -> list[tuple[str, str]]:
    """(channel, alert kind) for every channel that gets an alert; kinds: fail error recovery pass.

    `turn` is a scheduled run's (alerts/cadence.py: it speaks on a change of state and a reminder only);
    None for a deployment or a manual run. A failure that does not page (`pages`, see `pages_for`) goes to
    Slack, email and the gate, not PagerDuty. `--test` plans nothing: every configured channel gets the test
    alert (`_run_test`).
    """
    if turn is not None:
        return _plan_scheduled(verdict, previous, on, channels, turn, pages)
    planned = []
    for name in channels:
        if verdict in FAILED:
            if name == "pagerduty" and not pages:
                continue
            planned.append((name, verdict))
        elif name not in MESSAGE_CHANNELS:
            planned.append((name, Verdict.PASS))  # the gate turns green; PagerDuty resolves
        elif previous in FAILED:
            planned.append((name, Kind.RECOVERY))
        elif on == "always":
            planned.append((name, Verdict.PASS))
    return planned


def _plan_scheduled(verdict: str, previous: str | None, on: str, channels: Sequence[str],
                    turn: Turn, pages: bool = True) -> list[tuple[str, str]]:
    """The table of alerts/cadence.py: the commit status every run (under its own context), PagerDuty on a
    change that pages (`pages`) and a recovery (and a pass after an unknown run), Slack and email on a change, a reminder and a
    recovery, or every run with `--on always`."""
    kind = verdict if verdict in FAILED else Verdict.PASS
    planned = []
    for name in channels:
        if name not in MESSAGE_CHANNELS and name != "pagerduty":
            planned.append((name, kind))
        elif name == "pagerduty":
            if turn is Turn.CHANGE and (pages or kind == Verdict.PASS):
                planned.append((name, kind))
            elif turn is Turn.RECOVERY or (kind == Verdict.PASS and previous is None):
                planned.append((name, Verdict.PASS))
        elif turn in (Turn.CHANGE, Turn.REMINDER):
            planned.append((name, kind))
        elif turn is Turn.RECOVERY:
            planned.append((name, Kind.RECOVERY))
        elif on == "always":
            planned.append((name, kind))
    return planned


def pages_for(record: RunRecord, page_on_impact: Sequence[str]) -> bool:
    """Whether this run's alert pages people: an error always does; a failure when a broken flow's impact
    (impact triage; none counts as `unknown`) is one of `page_on_impact` (notify.page_on_impact). Quarantined
    flows never decide it (they do not gate)."""
    if record.verdict != Verdict.FAIL:
        return (record.verdict or Verdict.ERROR) in FAILED  # a record without a verdict is notify's `error`
    return any((flow.impact or UNKNOWN_IMPACT) in page_on_impact
               for flow in gating(record.flows) if flow.status in BROKEN)


def hits_here(record: RunRecord, paging: bool, turn: Turn | None) -> bool:
    """Whether the failure alert carries `<!here>` in Slack: only when this run pages people (`paging`, and a
    deployment or manual run, or a scheduled run's change; never a reminder) and a gating broken flow hits
    current users (quarantined flows never do)."""
    return paging and turn in (None, Turn.CHANGE) and any(
        flow.impact == CURRENT_USERS for flow in gating(record.flows) if flow.status in BROKEN)


@dataclass(frozen=True)
class Misconfigured:
    """A channel that is half set up: it is reported as a failed delivery rather than silently skipped."""

    name: str
    problem: str
    fix: str

    def target(self) -> str:
        return f"{self.name} (not usable)"

    def preview(self, alert: Alert) -> str:
        return f"not sent: {self.problem}"

    def check(self) -> None:
        raise DeliveryFailed(self.problem, fix=self.fix, attempts=0)

    def send(self, alert: Alert, policy: RetryPolicy) -> Delivery:
        self.check()
        raise AssertionError("unreachable: check() raised")


def repository(environ: Mapping[str, str]) -> str:
    """GITHUB_REPOSITORY, else the `owner/name` of the checkout's origin remote, else the folder's name.

    The folder's name comes last: PagerDuty's dedup key is built from this, and two checkouts of one
    project under different folder names must trigger and resolve the same incident.
    """
    folder = Path.cwd()
    return environ.get("GITHUB_REPOSITORY", "") or origin_repository(folder, environ) or folder.name


def clock(environ: Mapping[str, str]) -> datetime:
    """Now: the one place PRODVAL_NOW is read. It exists for tests (a reminder is due `remind_every` after
    the last alert); unset, the real clock."""
    text = environ.get(NOW_VAR, "").strip()
    if not text:
        return datetime.now(UTC)
    when = cadence.parse_time(text)
    if when is None:
        raise NotifyError(f"{NOW_VAR}={text!r} is not an ISO 8601 time",
                          fix=f"unset {NOW_VAR} (it is for tests), or set it like 2026-05-01T12:00:00Z")
    return when


def configure_channels(settings: NotifySettings, environ: Mapping[str, str],
                       trigger: str = "") -> tuple[list[Channel], list[str]]:
    """The channels the environment configures, and warnings about half-configured ones. A scheduled run
    (`trigger`) posts its commit status under `<check name>/scheduled`: it never moves the gate."""
    channels: list[Channel] = []
    warnings: list[str] = []
    configured = alert_channels(environ)  # the one rule of which channels are set up
    if "slack" in configured:
        channels.append(Slack(environ["SLACK_WEBHOOK_URL"].strip()))
    email = _email(environ, warnings, "email" in configured)
    if email is not None:
        channels.append(email)
    if "pagerduty" in configured:
        repo = repository(environ)
        channels.append(PagerDuty(
            routing_key=environ["PAGERDUTY_ROUTING_KEY"].strip(),
            dedup=dedup_key(repo, settings.environment, settings.check_name),
            source=environ.get("GITHUB_REPOSITORY") or socket.gethostname(),
            events_url=environ.get("PAGERDUTY_EVENTS_URL", "").strip() or DEFAULT_EVENTS_URL,
        ))
    if "github-status" in configured:
        sha = deployed_commit(settings.deployed_sha, environ)
        if sha:
            channels.append(CommitStatus(
                api_url=environ.get("GITHUB_API_URL", "").strip() or "https://api.github.com",
                repository=environ["GITHUB_REPOSITORY"].strip(), sha=sha, token=environ["GITHUB_TOKEN"].strip(),
                context=settings.check_name + (cadence.SCHEDULED_CONTEXT if trigger == SCHEDULE else ""),
            ))
        else:
            channels.append(Misconfigured("github-status", "no deployed commit to put the status on",
                                          "set notify.deployed_sha (INVOKE_NOTIFY_DEPLOYED_SHA) or GITHUB_SHA"))
    elif environ.get("GITHUB_TOKEN") and environ.get("GITHUB_ACTIONS") == "true":
        warnings.append("GITHUB_TOKEN is set but GITHUB_REPOSITORY is not: no commit status")
    return channels, warnings


def _email(environ: Mapping[str, str], warnings: list[str], configured: bool) -> Channel | None:
    host, to = environ.get("SMTP_HOST", "").strip(), environ.get("ALERT_EMAIL_TO", "").strip()
    if not configured:
        given = [name for name in REQUIRED_VARS if environ.get(name, "").strip()]
        if given:
            missing = [name for name in REQUIRED_VARS if name not in given]
            warnings.append(f"email is half configured: {_and(given)} {'is' if len(given) == 1 else 'are'} set but "
                            f"{_and(missing)} {'is' if len(missing) == 1 else 'are'} not, so no email is sent "
                            f"(email needs {_and(REQUIRED_VARS)}; {_and(OPTIONAL_VARS)} are optional)")
        return None
    security = environ.get("SMTP_SECURITY", "").strip().lower() or "starttls"
    if security not in SECURITY:
        return Misconfigured("email", f"SMTP_SECURITY must be one of {', '.join(SECURITY)}, got {security!r}",
                             "set SMTP_SECURITY=starttls (port 587), ssl (port 465) or none")
    port_text = environ.get("SMTP_PORT", "").strip()
    if port_text and not (port_text.isdigit() and 0 < int(port_text) < 65536):
        return Misconfigured("email", f"SMTP_PORT must be a port number, got {port_text!r}",
                             "set SMTP_PORT to e.g. 587 (starttls) or 465 (ssl)")
    sender = environ.get("ALERT_EMAIL_FROM", "").strip()  # set: `configured` needs every REQUIRED_VARS
    recipients = tuple(r.strip() for r in to.split(",") if r.strip())
    return Email(host=host, port=int(port_text) if port_text else DEFAULT_PORT[security], security=security,
                 sender=sender, recipients=recipients, username=environ.get("SMTP_USERNAME", ""),
                 password=environ.get("SMTP_PASSWORD", ""))


def _and(names: Sequence[str]) -> str:
    return ", ".join(names[:-1]) + f" and {names[-1]}" if len(names) > 1 else "".join(names)


EMAIL_NEEDS = " + ".join(REQUIRED_VARS)
NO_CHANNEL_FIX = (f"set SLACK_WEBHOOK_URL, {EMAIL_NEEDS}, PAGERDUTY_ROUTING_KEY, or GITHUB_TOKEN + GITHUB_REPOSITORY "
                  "(for the commit status)")


def redactor(environ: Mapping[str, str], names: Sequence[str] = ()) -> Redactor:
    """Every secret of the environment (and of variables `names`, validation.secret_env), plus the webhook
    URL's path: an error message may quote it alone."""
    base = Redactor.from_env(environ, names=names)
    extra = []
    webhook = environ.get("SLACK_WEBHOOK_URL", "")
    if webhook:
        parts = urlsplit(webhook)
        extra.append(parts.path + (f"?{parts.query}" if parts.query else ""))
    return Redactor([*base.values, *extra])


def context(settings: NotifySettings, environ: Mapping[str, str], record: RunRecord | None) -> AlertContext:
    url = (record.job.url if record else "") or run_url(environ)
    sha = deployed_commit(settings.deployed_sha, environ)
    run_id = record.runId if record else ""

    def fill(template: str) -> str:
        return template.replace("{run_id}", run_id).replace("{sha}", sha)

    artifacts = fill(settings.artifacts_url) or (f"{url}#artifacts" if url else "")
    report = ""
    if (settings.results_dir / REPORT_NAME).is_file():
        report = fill(settings.report_url) or (f"{fill(settings.artifacts_url).rstrip('/')}/{REPORT_NAME}"
                                               if settings.artifacts_url else "")
    return AlertContext(environment=settings.environment, check_name=settings.check_name,
                        repository=environ.get("GITHUB_REPOSITORY", ""), sha=sha,
                        server_url=environ.get("GITHUB_SERVER_URL", "https://github.com"),
                        run_url=url, artifacts_url=artifacts, report_url=report)


def find_previous(settings: NotifySettings, environ: Mapping[str, str], policy: RetryPolicy,
                  console: Console, record: RunRecord | None = None) -> str | None:
    """The previous run's verdict: from --previous, else from the run history (`record.history.previous`),
    else (in Actions) from the GitHub API; None if unknown."""
    remembered = ((record.history if record else None) or {}).get("previous") or {}
    if settings.previous is None and str(remembered.get("verdict") or "") in (*FAILED, Verdict.PASS):
        console.info(f"previous run (from the history): {remembered['verdict']} "
                     f"(run {remembered.get('runId') or '?'}, {remembered.get('trigger') or 'trigger unknown'})")
        return str(remembered["verdict"])
    if settings.previous is not None:
        try:
            previous = load_record(settings.previous)
        except RecordUnreadable as exc:
            console.warning(f"--previous: {exc.message}; no recovery message")
            return None
        if previous is None:
            console.warning(f"--previous {settings.previous}: no run record there; no recovery message")
            return None
        return previous.verdict
    token, repo, run_id = environ.get("GITHUB_TOKEN"), environ.get("GITHUB_REPOSITORY"), environ.get("GITHUB_RUN_ID")
    if not (environ.get("GITHUB_ACTIONS") == "true" and token and repo and run_id):
        return None
    attempt = environ.get("GITHUB_RUN_ATTEMPT", "1")

    def ask() -> tuple[str | None, str]:
        """(verdict, warning): in the child, which must not print (see `_start`); the parent warns."""
        try:
            return previous_verdict(environ.get("GITHUB_API_URL") or "https://api.github.com", repo, run_id,
                                    int(attempt) if attempt.isdigit() else 1, token, policy), ""
        except DeliveryFailed as exc:
            return None, f"could not read the previous run from the GitHub API: {exc}; no recovery message"

    try:
        done, answer = bounded(ask, settings.channel_deadline)
    except RuntimeError as exc:  # a bug or an answer it cannot read: the alerts still go, without recovery
        console.warning(f"could not read the previous run from the GitHub API: {exc}; no recovery message")
        return None
    if not done or answer is None:
        console.warning(f"the GitHub API did not answer within notify.channel_deadline ({settings.channel_deadline:g}s)"
                        "; no recovery message")
        return None
    verdict, warning = answer
    if warning:
        console.warning(warning)
    return verdict


@dataclass(frozen=True)
class Notified:
    """What `invoke notify` did (its outcome; `cli.notify` turns it into the exit code): the deliveries
    (none for a dry run), and whether they were --test alerts, whose failure is notify's own."""

    deliveries: tuple[Delivery, ...] = ()
    test: bool = False

    @property
    def delivered(self) -> bool:
        return all(d.ok for d in self.deliveries)


def run_notify(settings: NotifySettings, environ: Mapping[str, str], console: Console,
               history: Path | None = None) -> Notified:
    """Send the alerts for the run in `settings.results_dir`. A delivery failure is reported, never raised;
    ValidationError when notify itself cannot run (no record, a corrupt one, --test without channels).
    `history` is the run history's file (history.path), when the record has one (`record.history`)."""
    console.redact = redactor(environ, settings.secret_env)
    run_end = time.monotonic() + settings.deadline
    policy = RetryPolicy(timeout=settings.timeout, retries=settings.retries, backoff=settings.retry_backoff,
                         max_wait=settings.max_retry_after)
    record_path = settings.results_dir / RECORD_NAME
    # a full disk still alerts (the record kept in memory); corrupt or of a newer schema: said so (exit 2)
    record = unwritten_record(settings.results_dir) or load_record(record_path)
    trigger = record.job.trigger if record else ""
    channels, warnings = configure_channels(settings, environ, trigger)
    for warning in warnings:
        console.warning(warning, title="notify")
    if settings.test:
        return _run_test(settings, environ, console, channels, record, policy)
    if record is None:
        raise NotifyError(f"no run record at {relative_display(record_path)}",
                          fix=f"run `invoke validate` first, or pass --results-dir where it wrote {RECORD_NAME}")

    verdict = record.verdict or Verdict.ERROR
    now = clock(environ)  # before anything is sent: a bad PRODVAL_NOW stops notify here, not half-way
    ctx = context(settings, environ, record)
    console.step(f"Notifying: {simulated_mark(record)}verdict {verdict.upper()} (run {record.runId})")
    if not channels:
        console.warning(f"no alert channel is configured ({NO_CHANNEL_FIX})", title="notify")
    scheduled = trigger == SCHEDULE
    needs_previous = (verdict == Verdict.PASS and any(c.name in MESSAGE_CHANNELS for c in channels)) or (
        scheduled and any(c.name in PEOPLE_CHANNELS for c in channels))
    previous = find_previous(settings, environ, policy, console, record) if needs_previous else None
    turn, reminder = None, ""
    paging = pages_for(record, settings.page_on_impact)
    if scheduled:
        every = timedelta(hours=settings.remind_every)
        last, paged = _streak_alert(_history_path(record, history), console)
        # a streak that began without paging (new-build-only) and now pages: PagerDuty has not heard of it yet
        page_due = paging and not paged and any(c.name == "pagerduty" for c in channels)
        turn = cadence.turn(verdict, previous, last, now, every, unpaged=page_due)
        console.info(cadence.explain(turn, previous, last, every))
        if turn is Turn.REMINDER:
            reminder = (f"still failing; said again every {settings.remind_every:g}h while scheduled runs fail "
                        "(notify.remind_every)")
    planned = plan(verdict, previous, settings.on, [c.name for c in channels], turn, pages=paging)
    by_name = {c.name: c for c in channels}
    here = hits_here(record, paging, turn)
    alerts = {kind: masked(replace(build_alert(record, kind, ctx, reminder if kind in FAILED else ""),
                                   here=here and kind in FAILED), console.redact)
              for kind in {kind for _, kind in planned}}
    unpaged = {"pagerduty"} & set(by_name) if verdict in FAILED and not paging else set()
    if unpaged:
        console.info("PagerDuty not paged: no failed flow's impact is one of notify.page_on_impact "
                     f"({', '.join(settings.page_on_impact) or 'none'}); Slack, email and the deploy gate say it")
    quiet = sorted(set(by_name) - {name for name, _ in planned} - unpaged)
    if quiet and turn is not None:
        console.info(f"nothing to say on {', '.join(quiet)}: {turn} (a scheduled run speaks on a change of state)")
    elif quiet:
        console.info(f"nothing to say on {', '.join(quiet)}: the run passed and the previous one did not fail "
                     "(--on always sends every run)")
    if settings.dry_run:
        return Notified(_dry_run(console, [(by_name[name], alerts[kind]) for name, kind in planned]))

    writer = RecordWriter(settings.results_dir, console.redact)
    with stage(writer, NOTIFY_STAGE, console, environ, record=record, decide=lambda *_: None) as record:
        deliveries = deliver([(by_name[name], alerts[kind]) for name, kind in planned], policy, console,
                             Deadlines(settings.channel_deadline, settings.deadline, run_end))
        record.alerts.extend(d.to_json() for d in deliveries)
        record.environment.alertChannels = [c.name for c in channels]
        record.stages[NOTIFY_STAGE].outcome = Verdict.PASS if all(d.ok for d in deliveries) else Verdict.ERROR
    _remember_alerts(record, _history_path(record, history), deliveries, bool(reminder), now, console)
    _summarise(console, deliveries, verdict)
    return Notified(tuple(deliveries))


def _history_path(record: RunRecord, configured: Path | None) -> Path | None:
    """The run's history file: none when the run kept no history; else history.path as notify resolves it
    (from its own folder), else the path the run recorded."""
    if record.history is None:
        return None
    path = configured or str(record.history.get("path") or "")
    return Path(path) if path else None


def _streak_alert(path: Path | None, console: Console) -> tuple[datetime | None, bool]:
    """When the current failing streak last alerted (None when it has not), and whether it triggered PagerDuty
    (from the run history). With no history to ask: (None, False), so a failing scheduled run reminds, and
    pages if it pages at all: better once too often than never."""
    if path is None:
        return None, False
    try:
        with History.open(path, console.warning, repair=False) as history:
            return (cadence.streak_alert(history.last_alert(cadence.RECORDED_KINDS)),
                    cadence.streak_paged(history.last_alert(cadence.RECORDED_KINDS, channel="pagerduty")))
    except (HistoryUnusable, sqlite3.Error, OSError) as exc:
        console.warning(f"could not read the last alert from the history {path}: {_why(exc)}; a failing "
                        "scheduled run reminds (and pages, if it pages) now", title="notify")
        return None, False


def _remember_alerts(record: RunRecord, path: Path | None, deliveries: Sequence[Delivery], reminder: bool,
                     now: datetime, console: Console) -> None:
    """Record in the run history the alerts people got (Slack, email, PagerDuty; delivered only): the next
    scheduled run times its reminder from them. Trouble is said, never raised: the alerts went out."""
    sent = [d for d in deliveries if d.ok and d.channel in PEOPLE_CHANNELS]
    if path is None or not sent:
        return
    try:
        with History.open(path, console.warning, repair=False) as history:
            for delivery in sent:
                kind = cadence.REMINDER if reminder and delivery.kind in FAILED else delivery.kind
                history.record_alert(record.runId, kind, delivery.channel, cadence.iso(now))
    except (HistoryUnusable, sqlite3.Error, OSError) as exc:
        console.warning(f"the alerts sent were not remembered in the history {path}: {_why(exc)}; the next "
                        "scheduled run may remind early", title="notify")


def _why(exc: Exception) -> str:
    if isinstance(exc, HistoryUnusable):
        return exc.message
    return str(exc.strerror or exc) if isinstance(exc, OSError) else str(exc)


def _run_test(settings: NotifySettings, environ: Mapping[str, str], console: Console, channels: list[Channel],
              record: RunRecord | None, policy: RetryPolicy) -> Notified:
    if not channels:
        raise NotifyError("--test: no alert channel is configured", fix=NO_CHANNEL_FIX)
    alert = masked(make_test_alert(context(settings, environ, record), record), console.redact)
    console.step(f"Sending a TEST alert to {len(channels)} channel(s)")
    if settings.dry_run:
        return Notified(_dry_run(console, [(channel, alert) for channel in channels]), test=True)
    deliveries = deliver([(channel, alert) for channel in channels], policy, console,
                         Deadlines(settings.channel_deadline, settings.deadline))
    _summarise(console, deliveries, Kind.TEST)
    return Notified(tuple(deliveries), test=True)


@dataclass(frozen=True)
class Deadlines:
    """Wall-clock bounds of the deliveries: per channel (retries included) and for all of them together."""

    channel: float
    run: float
    run_end: float | None = None  # time.monotonic() when the run's time is up (default: `run` from now)


def bounded(work: Callable[[], T], timeout: float) -> tuple[bool, T | None]:
    """(True, work()) run in a child process, or (False, None) once `timeout` seconds have passed.

    A child, not a thread: a server that drip-feeds its answer defeats every per-read socket timeout, and
    only a process can be stopped for sure. It is killed and reaped before this returns.
    """
    started = _start(work)
    try:
        return _collect(started, time.monotonic() + timeout)
    finally:
        _reap(started)


_Started = tuple[multiprocessing.process.BaseProcess, Connection]


def _start(work: Callable[[], object]) -> _Started:
    """`work()` in a forked child; its answer comes back through the pipe (see `_collect`).

    The child is a copy of notify, so it first undoes what it must not share (`_detach`), and it never
    prints: its stdout and stderr go to /dev/null and a failure is sent back as text, because a line it
    wrote could close the parent's `::stop-commands::` fence in Actions (console.py) behind its back.
    """
    for stream in (sys.stdout, sys.stderr):
        stream.flush()  # or the child would print what the parent has buffered a second time
    context = multiprocessing.get_context("fork")  # `work` may be a closure: no pickling on the way in
    reader, writer = context.Pipe(duplex=False)
    preexec = die_with_parent(os.getpid())

    def child() -> None:
        _detach(preexec)
        try:
            answer: tuple[bool, object] = (True, work())
        except BaseException as exc:  # said by the parent, never printed here
            answer = (False, f"{type(exc).__name__}: {exc}")
        try:
            writer.send(answer)
        except Exception as exc:  # an answer that cannot be pickled
            writer.send((False, f"{type(exc).__name__}: {exc}"))
        finally:
            writer.close()

    process = context.Process(target=child, daemon=True)
    # a Ctrl-C or SIGTERM before the child has reset its handlers waits, and then kills it (`_detach`)
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)
    try:
        process.start()
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
    writer.close()
    return process, reader


_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def _detach(preexec: Callable[[], None] | None) -> None:
    """First thing in a delivery process: die with notify and never speak or hold anything for it.

    - SIGKILL when notify ends (PR_SET_PDEATHSIG), so that no alert goes out after notify was killed;
    - SIGTERM and SIGINT kill it (notify's boundary handlers would turn them into notify's own shutdown);
    - the results folder's lock is not kept alive by it (`flock` locks belong to the open file, which a
      fork shares: notify SIGKILLed must leave the folder free at once);
    - its output goes nowhere.
    """
    if preexec is not None:
        preexec()
    for sig in _STOP_SIGNALS:
        signal.signal(sig, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP_SIGNALS)
    runlock.close_in_child()
    null = os.open(os.devnull, os.O_WRONLY)
    for fd in (1, 2):
        os.dup2(null, fd)
    os.close(null)
    sys.stdout = sys.stderr = open(os.devnull, "w", encoding="utf-8")  # noqa: SIM115 (until the child exits)


def _collect(started: _Started, end: float) -> tuple[bool, Any]:
    process, reader = started
    if not reader.poll(max(0.0, end - time.monotonic())):
        return False, None
    try:
        ok, answer = reader.recv()
    except (EOFError, OSError):
        process.join(1)
        raise RuntimeError(f"the delivery process died (exit {process.exitcode})") from None
    if not ok:
        raise RuntimeError(f"the delivery process failed: {answer}")
    return True, answer


def _reap(started: _Started) -> None:
    process, reader = started
    if process.is_alive():
        process.kill()
    process.join()
    reader.close()
    process.close()


def deliver(work: Sequence[tuple[Channel, Alert]], policy: RetryPolicy, console: Console,
            deadlines: Deadlines = Deadlines(60, 100)) -> list[Delivery]:
    """Every channel at once, each on its own: a failure or a hung server is recorded and reported, and the
    other channels still go. Each channel gets `deadlines.channel` seconds, all together `deadlines.run`."""
    start = time.monotonic()
    run_end = start + deadlines.run if deadlines.run_end is None else deadlines.run_end
    started = [(channel, alert, _start(functools.partial(_send, channel, alert, policy))) for channel, alert in work]
    deliveries = []
    try:
        for channel, alert, handle in started:
            channel_end = start + deadlines.channel
            try:
                done, delivery = _collect(handle, min(channel_end, run_end))
            except RuntimeError as exc:
                done, delivery = True, Delivery(channel.name, alert.kind, False, str(exc), channel.target())
            if not done:
                which = ("notify.channel_deadline", deadlines.channel) if channel_end <= run_end else (
                    "notify.deadline", deadlines.run)
                delivery = Delivery(channel.name, alert.kind, False,
                                    f"timed out: no delivery within {which[1]:g}s ({which[0]}); stopped",
                                    channel.target(), 0, None,
                                    f"the service is hanging or too slow; raise {which[0]} if it is only slow")
            deliveries.append(delivery)
    finally:
        for _, _, handle in started:
            _reap(handle)
    reported = []
    for raw in deliveries:
        delivery = Delivery(raw.channel, raw.kind, raw.ok, console.redact(raw.detail), console.redact(raw.target),
                            raw.attempts, raw.status, raw.fix)
        if delivery.ok:
            console.info(f"{delivery.channel}: {delivery.kind} alert {delivery.detail} -> {delivery.target}")
        else:
            console.error(delivery.detail + (f"\n  fix: {delivery.fix}" if delivery.fix else ""),
                          title=f"{delivery.channel} alert not delivered")
        reported.append(delivery)
    return reported


def _send(channel: Channel, alert: Alert, policy: RetryPolicy) -> Delivery:
    """One channel's delivery (in its child process); every failure becomes a Delivery that says why."""
    try:
        return channel.send(alert, policy)
    except DeliveryFailed as exc:
        return Delivery(channel.name, alert.kind, False, exc.message, channel.target(), exc.attempts,
                        exc.status, exc.fix)
    except Exception as exc:  # a bug in one channel must not silence the others
        return Delivery(channel.name, alert.kind, False, f"unexpected {type(exc).__name__}: {exc}",
                        channel.target())


def _dry_run(console: Console, work: Sequence[tuple[Channel, Alert]]) -> tuple[Delivery, ...]:
    """Show what each channel would get, after the checks a real send makes first (`Channel.check`): a
    channel a real send would refuse is reported as not delivered, as it would be."""
    if not work:
        console.info("dry run: nothing would be sent")
    refused = []
    for channel, alert in work:
        try:
            channel.check()
        except DeliveryFailed as exc:
            refused.append(Delivery(channel.name, alert.kind, False, console.redact(exc.message),
                                    console.redact(channel.target()), 0, None, exc.fix))
            console.error(console.redact(exc.message) + (f"\n  fix: {exc.fix}" if exc.fix else ""),
                          title=f"dry run: {channel.name} alert would not be delivered")
            continue
        console.step(f"dry run: {channel.name} would get the {alert.kind} alert -> {channel.target()}")
        for line in channel.preview(alert).splitlines():
            console.info(f"    {line}")
    console.info("dry run: nothing was sent")
    return tuple(refused)


def _summarise(console: Console, deliveries: list[Delivery], verdict: str) -> None:
    failed = [d for d in deliveries if not d.ok]
    if deliveries:
        console.step(f"Alerts: {len(deliveries) - len(failed)} of {len(deliveries)} delivered"
                     + (f"; not delivered: {', '.join(d.channel for d in failed)} (the verdict stays {verdict})"
                        if failed else ""))
    lines = ["### Alerts", ""]
    if not deliveries:
        lines.append("No alert sent.")
    else:
        lines += ["| channel | alert | delivered | detail |", "|---|---|---|---|"]
        for d in deliveries:
            detail = html.escape(d.detail + (f" (fix: {d.fix})" if d.fix else ""), quote=False)
            detail = detail.replace("|", "\\|").replace("\n", " ")
            lines.append(f"| {d.channel} | {d.kind} | {'yes' if d.ok else '**no**'} | {detail} |")
    console.step_summary("\n".join(lines) + "\n")
