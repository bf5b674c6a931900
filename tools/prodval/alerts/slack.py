"""Slack incoming webhook: a Block Kit message within Slack's limits, with a text fallback.

Limits (https://api.slack.com/reference/block-kit/blocks): at most 50 blocks, a section's text at most 3000
characters, at most 10 fields of 2000, and the whole message well under ~12k characters. Long lists are
cut with an explicit "...and N more" rather than be rejected. Errors come back as plain-text bodies
(`invalid_payload`, `no_service`, `channel_is_archived`, ...), classified by body as well as status
(https://api.slack.com/changelog/2016-05-17-changes-to-errors-for-incoming-webhooks).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from ..errors import DeliveryFailed
from ..outcomes import Kind
from . import Delivery, RetryPolicy, check_url, request
from .message import QUARANTINED_TITLE, Alert, Fact, FlowLine, clip, take

MAX_BLOCKS = 50
MAX_SECTION_TEXT = 3000
MAX_FIELDS = 10
MAX_FIELD_TEXT = 2000
MAX_HEADER_TEXT = 150
# Budgets (failed lines, flaky lines, characters per line, error text): the first that keeps the whole
# message under MAX_TOTAL wins, so a run with huge error texts or names still fits.
BUDGETS = ((20, 10, 250, 1500), (10, 5, 160, 800), (5, 3, 100, 400))
MAX_TOTAL = 10000
MAX_FILE_NAME = 80
HERE = "<!here> "  # users are hurt now (a flow hits current users) and the run pages: the channel is told


def escape(text: str) -> str:
    """Slack mrkdwn treats &, < and > as control characters."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": clip(text, MAX_SECTION_TEXT)}}


def _field(fact: Fact) -> dict[str, Any]:
    value = f"<{fact.url}|{escape(fact.value)}>" if fact.url else escape(fact.value)
    return {"type": "mrkdwn", "text": clip(f"*{fact.label}*\n{value}", MAX_FIELD_TEXT)}


def _flow_sections(title: str, flows: tuple[FlowLine, ...], limit: int, line_length: int) -> list[dict[str, Any]]:
    shown, hidden = take(flows, limit)
    lines = [f"• `{escape(clip(f.file, MAX_FILE_NAME))}` {escape(clip(f.detail(), line_length))}" for f in shown]
    if hidden:
        lines.append(f"...and {hidden} more")
    blocks: list[dict[str, Any]] = []
    text = f"*{title}*"
    for line in lines:
        if len(text) + 1 + len(line) > MAX_SECTION_TEXT:
            blocks.append(_section(text))
            text = line
        else:
            text += "\n" + line
    blocks.append(_section(text))
    return blocks


def payload(alert: Alert) -> dict[str, Any]:
    """The webhook's JSON: Block Kit blocks within Slack's limits, and `text` as the notification fallback."""
    for budget in BUDGETS:
        body = _payload(alert, *budget)
        if len(json.dumps(body)) <= MAX_TOTAL:
            break
    return body


def _payload(alert: Alert, failed_lines: int, flaky_lines: int, line_length: int, error_text: int) -> dict[str, Any]:
    icons: dict[str, str] = {Kind.FAIL: ":x:", Kind.ERROR: ":rotating_light:", Kind.RECOVERY: ":white_check_mark:",
                             Kind.PASS: ":white_check_mark:", Kind.TEST: ":test_tube:"}
    icon = icons[alert.kind]
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": clip(alert.title, MAX_HEADER_TEXT), "emoji": True}},
        _section(f"{HERE if alert.here else ''}{icon} *{escape(alert.headline)}*"),
    ]
    fields = [_field(fact) for fact in alert.facts]
    if fields:
        blocks.append({"type": "section", "fields": fields[:MAX_FIELDS]})
    if alert.stage_error:
        blocks.append(_section("*Why it could not run*\n```" + escape(clip(alert.stage_error, error_text)) + "```"))
    if alert.failed:
        blocks += _flow_sections("Failed flows", alert.failed, failed_lines, line_length)
    if alert.flaky:
        blocks += _flow_sections("Flaky flows (passed on a retry)", alert.flaky, flaky_lines, line_length)
    if alert.quarantined:
        blocks += _flow_sections(QUARANTINED_TITLE, alert.quarantined, flaky_lines, line_length)
    if alert.not_run:
        blocks.append(_section(f"{alert.not_run} flow(s) did not run."))
    if alert.links:
        blocks.append({"type": "context", "elements": [
            {"type": "mrkdwn", "text": " · ".join(f"<{link.url}|{escape(link.text)}>" for link in alert.links)}]})
    if len(blocks) > MAX_BLOCKS:  # cannot happen with the budgets above; kept so a change cannot break delivery
        blocks = [*blocks[: MAX_BLOCKS - 1], _section(f"...and {len(blocks) - MAX_BLOCKS + 1} more blocks")]
    fallback = (HERE if alert.here else "") + alert.title + (
        f" ({alert.environment})" if alert.environment not in alert.title else "")
    return {"text": clip(fallback, 3000), "blocks": blocks}


_FIXES = {
    "invalid_payload": "Slack rejected the message's format; this is a bug in prodval, please report it",
    "invalid_token": "the webhook URL is wrong or was revoked: create a new incoming webhook, update SLACK_WEBHOOK_URL",
    "no_service": "the webhook was removed or disabled: create a new incoming webhook and update SLACK_WEBHOOK_URL",
    "no_team": "the workspace is gone: create a new incoming webhook and update SLACK_WEBHOOK_URL",
    "team_disabled": "the workspace is disabled: create a new incoming webhook and update SLACK_WEBHOOK_URL",
    "channel_not_found": "the webhook's channel was deleted: create a new webhook for an existing channel",
    "channel_is_archived": "the webhook's channel is archived: unarchive it or create a webhook for another channel",
    "action_prohibited": "a workspace admin restricted posting to this channel: ask them, or use another channel",
    "user_not_found": "the webhook posts to a user that no longer exists: create a new webhook",
    "posting_to_general_channel_denied": "only admins may post to this channel: use another channel",
}


def explain(status: int, body: str) -> str:
    key = body.strip().split()[0] if body.strip() else ""
    return _FIXES.get(key, f"check SLACK_WEBHOOK_URL (Slack answered HTTP {status})")


@dataclass(frozen=True)
class Slack:
    webhook_url: str
    name: str = "slack"

    def target(self) -> str:
        return "Slack incoming webhook (SLACK_WEBHOOK_URL)"

    def preview(self, alert: Alert) -> str:
        return json.dumps(payload(alert), indent=2, ensure_ascii=False)

    def check(self) -> None:
        check_url(self.webhook_url, "SLACK_WEBHOOK_URL")

    def send(self, alert: Alert, policy: RetryPolicy) -> Delivery:
        answer = request("POST", self.webhook_url, what="Slack webhook", policy=policy, payload=payload(alert),
                         explain=explain, setting="SLACK_WEBHOOK_URL", ok_statuses=(200,))
        if answer.body.strip() != "ok":  # Slack answers `ok`; a 200 with anything else is not Slack
            raise DeliveryFailed(
                f"Slack webhook answered HTTP 200 without `ok`: {answer.body.strip()[:200]!r}",
                fix="check that SLACK_WEBHOOK_URL is a Slack incoming webhook (a proxy or login page may answer)",
                attempts=answer.attempts, status=answer.status)
        return Delivery(self.name, alert.kind, True, f"delivered (HTTP {answer.status})", self.target(),
                               answer.attempts, answer.status)
