"""Alert channels: the shape they share, the one retry loop and the one way they deliver over HTTP.

Every channel (Slack, email, PagerDuty, the GitHub commit status) renders an `Alert` (see `message.py`)
into its own payload and delivers it. Delivery is the same everywhere: a timeout on every request and
`with_retries`, which retries with exponential backoff what each channel calls transient. Over HTTP that
is 429 (honouring `Retry-After`, capped), 5xx and network errors; any other 4xx is not retried and is
reported as a misconfigured channel together with the server's answer. Email says the same of SMTP.
Webhook and API URLs must be https, except loopback addresses (so tests can run real local servers).

A failed delivery raises `DeliveryFailed`; `notify.py` catches it per channel, so one broken channel
never stops the others and never changes the verdict.
"""

from __future__ import annotations

import ipaddress
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime  # not `import email`: alerts/email.py would shadow it
from typing import Any, Protocol, TypeVar
from urllib.parse import urlsplit

import requests

from ..errors import DeliveryFailed
from .message import Alert

USER_AGENT = "prodval-notify/1"
T = TypeVar("T")


class Channel(Protocol):
    """An alert channel."""

    @property
    def name(self) -> str:
        """What the run record and the console call it: slack, email, pagerduty, github-status."""
        ...

    def target(self) -> str:
        """Where the alert goes, safe to print (no secret)."""
        ...

    def preview(self, alert: Alert) -> str:
        """What `send` would send, as text (for --dry-run); callers mask secrets once more."""
        ...

    def check(self) -> None:
        """Raise DeliveryFailed for what `send` refuses before it sends anything (a plain-http URL, credentials
        over an unencrypted connection, a half-set channel), with the words `send` uses (`request` checks every
        URL with the same `check_url`): --dry-run calls it, so a dry run accepts only what a real send would."""
        ...

    def send(self, alert: Alert, policy: RetryPolicy) -> Delivery:
        """Deliver, or raise DeliveryFailed saying why and how to fix it."""
        ...


@dataclass(frozen=True)
class RetryPolicy:
    timeout: float = 10.0  # seconds per request
    retries: int = 3  # retries after the first try
    backoff: float = 1.0  # seconds before the first retry, doubled after each
    max_wait: float = 30.0  # cap on any single wait, Retry-After included


@dataclass(frozen=True)
class Delivery:
    """What happened on one channel; `to_json` is the entry in the run record's `alerts`."""

    channel: str
    kind: str  # fail | error | recovery | pass | test
    ok: bool
    detail: str
    target: str = ""
    attempts: int = 1
    status: int | None = None
    fix: str = ""

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "channel": self.channel, "kind": self.kind, "delivered": self.ok, "detail": self.detail,
            "target": self.target, "attempts": self.attempts, "httpStatus": self.status,
            "time": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        }
        if self.fix:
            data["fix"] = self.fix
        return data


@dataclass(frozen=True)
class Answer:
    status: int
    body: str
    attempts: int

    def json(self) -> Any:
        try:
            return json.loads(self.body)
        except ValueError:
            return None


def is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_url(url: str, what: str) -> None:
    """https, or http to a loopback address; `what` names the setting (the URL itself may be a secret)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if not host or parts.scheme not in ("https", "http"):
        raise DeliveryFailed(f"{what} is not a URL", fix=f"set {what} to the https URL the service gave you")
    if parts.scheme == "http" and not is_loopback(host):
        raise DeliveryFailed(f"{what} must be an https URL (plain http is only allowed to 127.0.0.1 or localhost)",
                             fix=f"use the https URL for {what}")


def retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header: delta-seconds or an HTTP date."""
    if not value:
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def _reason(exc: requests.RequestException, timeout: float) -> str:
    """A short cause for a network failure. Never the exception's text: it can hold the URL's secret path."""
    if isinstance(exc, requests.Timeout):
        return f"no answer within {timeout:g}s"
    text = repr(exc)
    for needle, reason in (
        ("Connection refused", "connection refused"),
        ("CERTIFICATE_VERIFY_FAILED", "its TLS certificate is not trusted"),
        ("SSLError", "TLS handshake failed"),
        ("Name or service not known", "host name not found"),
        ("nodename nor servname", "host name not found"),
        ("Temporary failure in name resolution", "host name not found"),
        ("Connection reset", "connection reset"),
        ("RemoteDisconnected", "connection closed without an answer"),
        ("timed out", "timed out"),
    ):
        if needle in text:
            return reason
    return type(exc).__name__


class Transient(Exception):
    """One attempt failed in a way worth trying again; `reason` says how, `wait` overrides the backoff."""

    def __init__(self, reason: str, *, status: int | None = None, wait: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status
        self.wait = wait


def with_retries(attempt: Callable[[], T], policy: RetryPolicy, *, what: str, fix: str) -> tuple[T, int]:
    """`attempt()`'s result and the number of attempts it took: the one retry loop of every channel.

    `attempt` raises `Transient` for a failure worth repeating, retried after an exponential backoff (capped
    at `policy.max_wait`) until `policy.retries` retries are spent, and `DeliveryFailed` for a final one.
    Either way the DeliveryFailed that leaves here carries the attempt count.
    """
    attempts = 0
    while True:
        attempts += 1
        try:
            return attempt(), attempts
        except DeliveryFailed as exc:
            exc.attempts = attempts
            raise
        except Transient as exc:
            if attempts > policy.retries:
                raise DeliveryFailed(f"{what}: {exc.reason}; gave up after {attempts} attempts", fix=fix,
                                     attempts=attempts, status=exc.status) from None
            wait = exc.wait if exc.wait is not None else policy.backoff * 2 ** (attempts - 1)
            time.sleep(min(policy.max_wait, wait))


Explain = Callable[[int, str], str]


def _no_fix(status: int, body: str) -> str:
    return ""


def request(
    method: str,
    url: str,
    *,
    what: str,
    policy: RetryPolicy,
    ok_statuses: tuple[int, ...],
    payload: Any = None,
    headers: Mapping[str, str] | None = None,
    params: Mapping[str, str] | None = None,
    explain: Explain = _no_fix,
    setting: str = "",
) -> Answer:
    """One HTTP request with the shared retry rules; the answer of the first success.

    `what` names the endpoint in messages (never the URL: a webhook URL is a credential) and `setting`
    the variable that holds the URL; `ok_statuses` are the answers that mean success. `explain` turns a
    refused request (status, body) into a fix.
    """
    check_url(url, setting or what)
    host = urlsplit(url).netloc.rpartition("@")[2]
    sent_headers = {"User-Agent": USER_AGENT, **(headers or {})}

    def attempt() -> tuple[int, str]:
        try:
            response = requests.request(method, url, json=payload, headers=sent_headers, params=params,
                                        timeout=policy.timeout, allow_redirects=False)
        except requests.RequestException as exc:
            raise Transient(f"could not reach {host}: {_reason(exc, policy.timeout)}") from None
        status, body = response.status_code, response.text
        if status in ok_statuses:
            return status, body
        answer = " ".join(body.split())[:300] or response.reason or "(empty answer)"
        if status == 429 or (status == 403 and "Retry-After" in response.headers):
            raise Transient(f"rate limited (HTTP {status}: {answer})", status=status,
                            wait=retry_after(response.headers.get("Retry-After")))
        if status >= 500:
            raise Transient(f"server error (HTTP {status}: {answer})", status=status)
        # Any other answer is final: retrying a refused request only repeats the refusal.
        raise DeliveryFailed(f"{what} refused the alert: channel misconfigured (HTTP {status}: {answer})",
                             fix=explain(status, body), status=status)

    (status, body), attempts = with_retries(
        attempt, policy, what=what, fix="the service or the network is failing; the alert is in results.json")
    return Answer(status, body, attempts)
