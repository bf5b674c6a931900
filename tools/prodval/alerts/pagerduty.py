"""PagerDuty Events API v2: `trigger` on fail/error, `resolve` on pass, one deterministic `dedup_key`.

The dedup key is built from the repository, the environment and the check name only, so a failing run
triggers (or updates) the same incident every time and the next passing run resolves it, with no state
kept between runs. Deployments and scheduled re-validations share it: one incident, whoever saw the
failure first; a scheduled run's reminder sends nothing here (alerts/cadence.py), so it never opens a
second incident after someone resolved the first by hand. A test alert (`--test`) triggers an `info`
event under its own key and resolves it at once, so it reaches the integration without leaving an
incident open.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ..outcomes import Kind
from . import Delivery, RetryPolicy, check_url, request
from .message import Alert, FlowLine, clip, take

DEFAULT_EVENTS_URL = "https://events.pagerduty.com/v2/enqueue"
MAX_SUMMARY = 1024
MAX_DEDUP_KEY = 255
MAX_LISTED_FLOWS = 50  # with MAX_FLOW_TEXT, ~50 KB at most: far below the Events API's 512 KB per event
MAX_FLOW_TEXT = 500
SEVERITY: dict[str, str] = {Kind.FAIL: "critical", Kind.ERROR: "error", Kind.TEST: "info"}


def dedup_key(repository: str, environment: str, check_name: str) -> str:
    return f"prodval/{repository or 'local'}/{environment}/{check_name}"[:MAX_DEDUP_KEY]


def _listed(flows: tuple[FlowLine, ...]) -> list[str]:
    shown, hidden = take(flows, MAX_LISTED_FLOWS)
    return [clip(f.describe(), MAX_FLOW_TEXT) for f in shown] + ([f"...and {hidden} more"] if hidden else [])


def trigger_event(alert: Alert, routing_key: str, key: str, source: str) -> dict[str, Any]:
    details: dict[str, Any] = {"headline": alert.headline, "environment": alert.environment}
    for fact in alert.facts:
        details[fact.label.lower().replace(" ", "_")] = fact.value
    if alert.commit:
        details["deployed_commit"] = alert.commit  # the whole SHA, not the short one people read
    if alert.stage_error:
        details["error"] = clip(alert.stage_error, 4000)
    if alert.failed:
        details["failed_flows"] = _listed(alert.failed)
    if alert.flaky:
        details["flaky_flows"] = _listed(alert.flaky)
    if alert.quarantined:  # listed apart: they did not count in the verdict that pages
        details["quarantined_flows"] = _listed(alert.quarantined)
    return {
        "routing_key": routing_key,
        "event_action": "trigger",
        "dedup_key": key,
        "payload": {
            "summary": clip(alert.title, MAX_SUMMARY),
            "source": source,
            "severity": SEVERITY.get(alert.kind, "error"),
            "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
            "component": alert.app_version.rpartition(", ")[2] if alert.app_version else "mobile app",
            "group": alert.environment,
            "class": f"{alert.check_name}/{alert.kind}",
            "custom_details": details,
        },
        "links": [{"href": link.url, "text": link.text} for link in alert.links],
    }


def resolve_event(routing_key: str, key: str) -> dict[str, Any]:
    return {"routing_key": routing_key, "event_action": "resolve", "dedup_key": key}


def explain(status: int, body: str) -> str:
    if status == 400:
        return ("PagerDuty rejected the event: check PAGERDUTY_ROUTING_KEY (the 32-character integration key of an "
                "Events API v2 integration)")
    if status in (401, 403):
        return "check PAGERDUTY_ROUTING_KEY: this integration key is not accepted"
    if status == 404:
        return "check PAGERDUTY_EVENTS_URL (default https://events.pagerduty.com/v2/enqueue)"
    return f"check PAGERDUTY_ROUTING_KEY and PAGERDUTY_EVENTS_URL (PagerDuty answered HTTP {status})"


@dataclass(frozen=True)
class PagerDuty:
    routing_key: str
    dedup: str
    source: str
    events_url: str = DEFAULT_EVENTS_URL
    name: str = "pagerduty"

    def target(self) -> str:
        return f"PagerDuty Events v2 (dedup_key {self.dedup})"

    def events(self, alert: Alert) -> list[dict[str, Any]]:
        if alert.kind in (Kind.FAIL, Kind.ERROR):
            return [trigger_event(alert, self.routing_key, self.dedup, self.source)]
        if alert.kind == Kind.TEST:
            key = clip(self.dedup + "/test", MAX_DEDUP_KEY)
            return [trigger_event(alert, self.routing_key, key, self.source), resolve_event(self.routing_key, key)]
        return [resolve_event(self.routing_key, self.dedup)]

    def preview(self, alert: Alert) -> str:
        shown = [{**event, "routing_key": "***"} for event in self.events(alert)]
        return "\n".join(json.dumps(event, indent=2, ensure_ascii=False) for event in shown)

    def check(self) -> None:
        check_url(self.events_url, "PAGERDUTY_EVENTS_URL")

    def send(self, alert: Alert, policy: RetryPolicy) -> Delivery:
        attempts = 0
        actions = []
        status = None
        for event in self.events(alert):
            answer = request("POST", self.events_url, what="PagerDuty Events API", policy=policy, payload=event,
                             explain=explain, setting="PAGERDUTY_EVENTS_URL", ok_statuses=(202,))
            attempts += answer.attempts
            status = answer.status
            actions.append(event["event_action"])
        return Delivery(self.name, alert.kind, True, f"{' + '.join(actions)} accepted (HTTP {status})", self.target(),
                        attempts, status)
