"""Real servers on 127.0.0.1 that stand in for Slack, PagerDuty, the GitHub API and an SMTP relay.

`HttpServer` is `http.server` in a thread: it records every request and answers from a script per
path (a list of `Reply` or callables; the last entry repeats). The `slack`, `pagerduty` and `github`
helpers answer the way those services do (https://api.slack.com/messaging/webhooks,
https://github.com/PagerDuty/developer-docs/blob/main/docs/events-API-v2/02-Trigger-Events.md,
https://docs.github.com/en/rest/commits/statuses), including
their checks: Slack refuses blocks over its limits, PagerDuty refuses a routing key that is not 32
characters and a resolve without its dedup key, GitHub refuses a wrong token and a commit it does not
have. `SmtpServer` is aiosmtpd with STARTTLS (or implicit TLS) and AUTH, its certificate issued by a
throwaway CA from `trustme`; clients trust it through SSL_CERT_FILE; `answer_data` scripts its answers
to DATA (a temporary 4xx, a permanent 5xx).
"""

from __future__ import annotations

import json
import socket
import ssl
import threading
import time
import uuid
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP as SMTPServerProtocol
from aiosmtpd.smtp import AuthResult, Envelope, LoginPassword, Session


@dataclass
class Reply:
    status: int = 200
    body: str | dict[str, Any] = "ok"
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes
    at: float

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def text(self) -> str:
        return self.body.decode()


Responder = Reply | Callable[[Request], Reply]


class HttpServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.requests: list[Request] = []
        self.scripts: dict[str, list[Responder]] = {}
        self._lock = threading.Lock()

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def url(self, path: str) -> str:
        return self.base + path

    def script(self, path: str, *replies: Responder) -> None:
        """Answer requests to `path` with `replies`; a path ending in "/" answers every path below it."""
        self.scripts[path] = list(replies)

    def hits(self, path: str) -> list[Request]:
        return [r for r in self.requests if r.path == path]

    def answer(self, request: Request) -> Reply:
        with self._lock:
            self.requests.append(request)
            script = self.scripts.get(request.path) or next(
                (replies for prefix, replies in self.scripts.items()
                 if prefix.endswith("/") and request.path.startswith(prefix)), None)
            if not script:
                return Reply(404, {"message": "Not Found"})
            responder = script.pop(0) if len(script) > 1 else script[0]
        return responder(request) if callable(responder) else responder


class _Handler(BaseHTTPRequestHandler):
    server: HttpServer

    def log_message(self, format: str, *args: Any) -> None:  # keep pytest output clean
        pass

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        parts = urlsplit(self.path)
        request = Request(self.command, parts.path, parse_qs(parts.query), dict(self.headers.items()),
                          self.rfile.read(length), time.monotonic())
        reply = self.server.answer(request)
        body = json.dumps(reply.body).encode() if isinstance(reply.body, dict) else reply.body.encode()
        content_type = "application/json" if isinstance(reply.body, dict) else "text/html"
        self.send_response(reply.status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in reply.headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    do_GET = _serve
    do_POST = _serve


def serve_http() -> Iterator[HttpServer]:
    server = HttpServer()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


# --- the services' own answers -------------------------------------------------------------------

def slack(request: Request) -> Reply:
    """Slack's incoming webhook: `ok`, or the plain-text error it gives for a message over its limits."""
    try:
        data = request.json()
    except ValueError:
        return Reply(400, "invalid_payload")
    blocks = data.get("blocks", [])
    if not data.get("text") and not blocks:
        return Reply(400, "no_text")
    if len(blocks) > 50 or len(request.body) > 12000:  # Slack's undocumented aggregate limit, about 12k
        return Reply(400, "invalid_blocks")
    for block in blocks:
        if block["type"] == "header" and len(block["text"]["text"]) > 150:
            return Reply(400, "invalid_blocks")
        if block["type"] == "section":
            if len(block.get("text", {}).get("text", "")) > 3000:
                return Reply(400, "invalid_blocks")
            fields = block.get("fields", [])
            if len(fields) > 10 or any(len(f["text"]) > 2000 for f in fields):
                return Reply(400, "invalid_blocks")
    return Reply(200, "ok")


def _invalid_event(*errors: str) -> Reply:
    return Reply(400, {"status": "invalid event", "message": "Event object is invalid", "errors": list(errors)})


def pagerduty(request: Request) -> Reply:
    """Events API v2: 202 with the dedup key, or 400 'invalid event' with the reasons."""
    try:
        event = request.json()
    except ValueError:
        return _invalid_event("Request body is not valid JSON")
    if not isinstance(event, dict):
        return _invalid_event("Event must be a JSON object")
    errors = []
    if len(event.get("routing_key", "")) != 32:
        errors.append("Length of 'routing_key' is incorrect (should be 32 characters)")
    if event.get("event_action") not in ("trigger", "acknowledge", "resolve"):
        errors.append("'event_action' is invalid")
    if event.get("event_action") == "trigger":
        payload = event.get("payload", {})
        if not payload.get("summary") or len(payload["summary"]) > 1024:
            errors.append("'payload.summary' is missing or too long")
        if payload.get("severity") not in ("critical", "error", "warning", "info"):
            errors.append("'payload.severity' is invalid")
        if not payload.get("source"):
            errors.append("'payload.source' is missing")
    if event.get("event_action") in ("acknowledge", "resolve") and not event.get("dedup_key"):
        errors.append("'dedup_key' is missing: acknowledge and resolve events need the key of the incident")
    if len(event.get("dedup_key", "")) > 255:
        errors.append("'dedup_key' is too long")
    if errors:
        return _invalid_event(*errors)
    key = event.get("dedup_key") or uuid.uuid4().hex  # a trigger without a key gets a new one
    return Reply(202, {"status": "success", "message": "Event processed", "dedup_key": key})


def github_status(token: str, commits: Collection[str]) -> Callable[[Request], Reply]:
    """`POST /repos/{owner}/{repo}/statuses/{sha}`, scripted for the statuses/ prefix: only `commits` exist."""
    def answer(request: Request) -> Reply:
        if request.headers.get("Authorization") != f"Bearer {token}":
            return Reply(401, {"message": "Bad credentials", "documentation_url": "https://docs.github.com/rest"})
        sha = request.path.rpartition("/")[2]
        if sha not in commits:
            return Reply(422, {"message": f"No commit found for SHA: {sha}",
                               "documentation_url": "https://docs.github.com/rest/commits/statuses#create-a-commit-status"})
        try:
            body = request.json()
        except ValueError:
            return Reply(400, {"message": "Problems parsing JSON", "documentation_url": "https://docs.github.com/rest"})
        if body.get("state") not in ("error", "failure", "pending", "success"):
            return Reply(422, {"message": "Validation Failed"})
        if len(body.get("description") or "") > 140:
            return Reply(422, {"message": "Validation Failed",
                               "errors": [{"message": "description is too long (maximum is 140 characters)"}]})
        return Reply(201, {"id": 1, "state": body["state"], "context": body.get("context", "default"),
                           "description": body.get("description"), "target_url": body.get("target_url")})
    return answer


# --- SMTP ------------------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class _Mailbox:
    def __init__(self, refuse: tuple[str, ...]) -> None:
        self.refuse = refuse
        self.messages: list[tuple[Envelope, EmailMessage]] = []
        self.data_replies: list[str] = []
        self.data_commands = 0

    async def handle_RCPT(self, server: SMTPServerProtocol, session: Session, envelope: Envelope, address: str,
                          rcpt_options: list[str]) -> str:
        if address in self.refuse:
            return f"550 5.1.1 <{address}>: Recipient address rejected: User unknown"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTPServerProtocol, session: Session, envelope: Envelope) -> str:
        self.data_commands += 1
        if self.data_replies:
            return self.data_replies.pop(0)
        raw = envelope.original_content or b""
        message = message_from_bytes(raw, policy=policy.default)
        assert isinstance(message, EmailMessage)
        self.messages.append((envelope, message))
        return "250 Message accepted for delivery"


class SmtpServer:
    """aiosmtpd on 127.0.0.1 requiring TLS (STARTTLS or implicit) and AUTH with one user."""

    def __init__(self, folder: Path, *, implicit_tls: bool = False, user: str = "alerts-bot",
                 password: str = "smtp-Pa55word-XYZ", refuse: tuple[str, ...] = ()) -> None:
        ca = trustme.CA()
        cert = ca.issue_cert("127.0.0.1", "localhost")
        self.ca_file = folder / "smtp-ca.pem"
        ca.cert_pem.write_to_path(str(self.ca_file))
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        cert.configure_cert(context)
        self.mailbox = _Mailbox(refuse)
        self.user, self.password = user, password
        self.logins: list[tuple[str, bool]] = []
        self.port = free_port()
        # aiosmtpd only counts STARTTLS as TLS for `auth_require_tls`; with implicit TLS every byte is encrypted.
        tls: dict[str, Any] = ({"ssl_context": context, "auth_require_tls": False} if implicit_tls else
                               {"tls_context": context, "require_starttls": True, "auth_require_tls": True})
        self.controller = Controller(self.mailbox, hostname="127.0.0.1", port=self.port, authenticator=self._auth,
                                     auth_required=True, **tls)

    def _auth(self, server: SMTPServerProtocol, session: Session, envelope: Envelope, mechanism: str,
              auth_data: Any) -> AuthResult:
        ok = isinstance(auth_data, LoginPassword) and (auth_data.login.decode(), auth_data.password.decode()) == (
            self.user, self.password)
        self.logins.append((auth_data.login.decode() if isinstance(auth_data, LoginPassword) else "?", ok))
        return AuthResult(success=ok, handled=False)

    @property
    def messages(self) -> list[tuple[Envelope, EmailMessage]]:
        return self.mailbox.messages

    @property
    def data_commands(self) -> int:
        """How many times a client got as far as sending the message."""
        return self.mailbox.data_commands

    def answer_data(self, *replies: str) -> None:
        """The next DATA commands get these answers (e.g. `451 4.3.0 Try again later`), then mail is accepted."""
        self.mailbox.data_replies = list(replies)

    def __enter__(self) -> SmtpServer:
        self.controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.controller.stop()
