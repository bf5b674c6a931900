"""When a scheduled run speaks: on a change of state, and a reminder while it is still failing.

A deployment (and a manual run) alerts on every fail and error: someone just shipped, and the gate needs
a verdict. A scheduled run re-validates the deployed commit between deployments, every few hours; paging
people every six hours about the one thing they already know would teach them to ignore the pages. So a
scheduled run speaks only when the state changes against the run before it (whatever triggered that one):

    previous          this run      turn            Slack, email          PagerDuty          commit status
    pass or unknown   fail/error    change          the alert             trigger            its own context
    fail/error        fail/error    change          the alert             trigger            its own context
                                    (this run pages and PagerDuty was not triggered in this streak)
    fail/error        fail/error    reminder        the alert, marked     nothing            its own context
                                    (last failure alert `remind_every` ago, or none in this streak)
    fail/error        fail/error    still failing   nothing               nothing            its own context
    fail/error        pass          recovery        the recovery          resolve            its own context
    pass              pass          still passing   nothing               nothing            its own context
    unknown           pass          still passing   nothing               resolve            its own context

An unknown previous run (no history, the cache evicted, the API not answering) counts as a change: an alert
too many beats a failure nobody hears of; a pass then resolves PagerDuty (a resolve of no open incident
does nothing), so a lost history never leaves an incident open. A reminder does not touch PagerDuty: the
incident the change opened is still open under the same dedup key (its own escalation re-notifies), and a
trigger after someone resolved it by hand would open a second incident. But a failure that worsens is a
change: a streak that began without paging (a new-build-only failure, notify.page_on_impact) and now pages
(the released app fails too: current users are hit) triggers PagerDuty, and Slack says it with `@here`, once:
the history then holds the streak's PagerDuty trigger (`streak_paged`). Without PagerDuty configured there is
no such change. `--on always` still sends Slack
and email every run. The commit status goes under `<check name>/scheduled`, never the gate's context
(see notify.configure_channels).

Pure: the time is passed in (`now`), so the tests own the clock.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from ..outcomes import Kind, Verdict

SCHEDULE = "schedule"  # job.trigger of a scheduled run (deploy | schedule | manual)
SCHEDULED_CONTEXT = "/scheduled"  # a scheduled run's commit status context: `<check name>/scheduled`
FAILING = (Verdict.FAIL, Verdict.ERROR)
REMINDER = "reminder"  # the kind a reminder is recorded under in the history's alerts
FAILURE_ALERTS = (Kind.FAIL.value, Kind.ERROR.value, REMINDER)
# Every kind a run records in the history: the newest one says whether this failing streak has alerted.
RECORDED_KINDS = (*FAILURE_ALERTS, Kind.RECOVERY.value, Kind.PASS.value)


class Turn(StrEnum):
    """What a scheduled run is, against the run before it."""

    CHANGE = "change"  # pass or unknown -> fail/error
    REMINDER = "reminder"  # still failing, and the last failure alert is `remind_every` old (or missing)
    STILL_FAILING = "still failing"  # quiet
    RECOVERY = "recovery"  # fail/error -> pass
    STILL_PASSING = "still passing"  # quiet


def turn(verdict: str, previous: str | None, last_alert: datetime | None, now: datetime,
         remind_every: timedelta, *, unpaged: bool = False) -> Turn:
    """The turn of a scheduled run whose verdict is `verdict` after a run whose verdict was `previous` (None:
    unknown); `last_alert` is when the current failing streak last alerted (None: never, or not known);
    `unpaged`: this run pages and the current failing streak has not triggered PagerDuty (a change)."""
    if verdict in FAILING:
        if previous not in FAILING or unpaged:
            return Turn.CHANGE
        if last_alert is None or now - last_alert >= remind_every:
            return Turn.REMINDER
        return Turn.STILL_FAILING
    if previous in FAILING:
        return Turn.RECOVERY
    return Turn.STILL_PASSING


def explain(which: Turn, previous: str | None, last_alert: datetime | None, remind_every: timedelta) -> str:
    """One line for the console: why a scheduled run speaks, or why it keeps quiet."""
    hours = f"{remind_every.total_seconds() / 3600:g}h"
    if which is Turn.CHANGE and previous in FAILING:
        return ("scheduled run: still failing, and now it pages (notify.page_on_impact) while PagerDuty was not "
                "triggered in this failing streak: a change, alerting")
    if which is Turn.CHANGE:
        return ("scheduled run: the previous run is unknown (no history), so this failure counts as a change"
                if previous is None else f"scheduled run: {previous} -> failing, a change: alerting")
    if which is Turn.REMINDER:
        since = f"the last failure alert was at {iso(last_alert)}" if last_alert else "no failure alert yet"
        return f"scheduled run: still failing and {since}: a reminder (every {hours}, notify.remind_every)"
    if which is Turn.STILL_FAILING:
        due = iso(last_alert + remind_every) if last_alert else "now"
        return (f"scheduled run: still failing, already alerted at {iso(last_alert)}; quiet until the reminder "
                f"at {due} (notify.remind_every {hours})")
    if which is Turn.RECOVERY:
        return "scheduled run: failing -> pass, a recovery"
    return ("scheduled run: passing, the previous run is unknown: only PagerDuty resolves" if previous is None
            else "scheduled run: still passing: nothing to say")


def streak_alert(last: Mapping[str, Any] | None) -> datetime | None:
    """When the current failing streak last alerted, from `History.last_alert(RECORDED_KINDS)`: None when the
    newest recorded alert is a recovery or a pass (this streak has not alerted) or there is none."""
    if not last or str(last.get("kind")) not in FAILURE_ALERTS:
        return None
    return parse_time(str(last.get("at", "")))


def streak_paged(last: Mapping[str, Any] | None) -> bool:
    """Whether the current failing streak has triggered PagerDuty, from
    `History.last_alert(RECORDED_KINDS, channel="pagerduty")`: its newest alert there is a failure's."""
    return bool(last) and str((last or {}).get("kind")) in FAILURE_ALERTS


def parse_time(text: str) -> datetime | None:
    """An ISO 8601 time (a `Z` suffix, or none, means UTC); None when it is not one."""
    try:
        when = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def iso(when: datetime | None) -> str:
    return when.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z") if when else ""
