"""Email over SMTP: a text body with an HTML alternative; refused recipients are reported.

`SMTP_SECURITY` is `starttls` (default, port 587), `ssl` (implicit TLS, port 465) or `none` (port 25).
TLS always uses `ssl.create_default_context()` (which honours `SSL_CERT_FILE`), and every connection has
a timeout. Credentials are never sent over a connection without TLS, except to a loopback address.
Connection problems and transient (4xx) SMTP answers are retried; a refused login or address is not.
"""

from __future__ import annotations

import smtplib
import socket
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

from ..errors import DeliveryFailed
from ..results import CHANNEL_VARS
from . import Delivery, RetryPolicy, Transient, is_loopback, with_retries
from .message import Alert, html_body, text_body

SECURITY = ("starttls", "ssl", "none")
REQUIRED_VARS = CHANNEL_VARS["email"]  # email needs every one of them (the one rule: results.CHANNEL_VARS)
OPTIONAL_VARS = ("SMTP_PORT", "SMTP_SECURITY", "SMTP_USERNAME", "SMTP_PASSWORD")
DEFAULT_PORT = {"starttls": 587, "ssl": 465, "none": 25}


def _answer(code: int, text: bytes | str) -> str:
    message = text.decode(errors="replace") if isinstance(text, bytes) else text
    return f"{code} {' '.join(message.split())}"[:300]


@dataclass(frozen=True)
class Email:
    host: str
    port: int
    security: str
    sender: str
    recipients: tuple[str, ...]
    username: str = ""
    password: str = ""
    name: str = "email"

    def target(self) -> str:
        return f"email to {', '.join(self.recipients)} via {self.host}:{self.port} ({self.security})"

    def message(self, alert: Alert) -> EmailMessage:
        msg = EmailMessage()
        msg["Subject"] = alert.title
        msg["From"] = self.sender
        msg["To"] = ", ".join(self.recipients)
        msg["Date"] = formatdate(localtime=False)
        msg["Message-ID"] = make_msgid(domain=self.sender.rpartition("@")[2] or None)
        msg["X-Production-Validation"] = alert.kind
        msg.set_content(text_body(alert))
        msg.add_alternative(html_body(alert), subtype="html")
        return msg

    def preview(self, alert: Alert) -> str:
        return f"Subject: {alert.title}\nFrom: {self.sender}\nTo: {', '.join(self.recipients)}\n\n{text_body(alert)}"

    def check(self) -> None:
        if self.security == "none" and self.username and not is_loopback(self.host):
            raise DeliveryFailed(f"refusing to send SMTP credentials to {self.host} without TLS (SMTP_SECURITY=none)",
                                 fix="use SMTP_SECURITY=starttls or ssl")

    def send(self, alert: Alert, policy: RetryPolicy) -> Delivery:
        self.check()
        msg = self.message(alert)
        refused, attempts = with_retries(lambda: self._send_once(msg, policy), policy, what="email",
                                         fix=f"check SMTP_HOST and SMTP_PORT ({self.host}:{self.port}) and the network")
        if refused:
            delivered = len(self.recipients) - len(refused)
            raise DeliveryFailed(f"email delivered to {delivered} of {len(self.recipients)} recipients; "
                                 f"refused: {listed(refused)}",
                                 fix="check the refused addresses in ALERT_EMAIL_TO", attempts=attempts)
        return Delivery(self.name, alert.kind, True, f"delivered to {len(self.recipients)} recipient(s)",
                        self.target(), attempts)

    def _send_once(self, msg: EmailMessage, policy: RetryPolicy) -> dict[str, tuple[int, bytes]]:
        """One connection: the recipients refused (some, not all); raises Transient for what may pass on a retry."""
        context = ssl.create_default_context()
        try:
            client: smtplib.SMTP
            if self.security == "ssl":
                client = smtplib.SMTP_SSL(self.host, self.port, timeout=policy.timeout, context=context)
            else:
                client = smtplib.SMTP(self.host, self.port, timeout=policy.timeout)
            with client:
                if self.security == "starttls":
                    client.starttls(context=context)
                if self.username or self.password:
                    client.login(self.username, self.password)
                return client.send_message(msg)
        except smtplib.SMTPNotSupportedError as exc:
            what = "STARTTLS" if "STARTTLS" in str(exc) else "AUTH" if "AUTH" in str(exc) else "a required extension"
            raise DeliveryFailed(f"the SMTP server {self.host}:{self.port} does not support {what}",
                                 fix="for STARTTLS use the submission port 587, or SMTP_SECURITY=ssl with port 465"
                                 if what == "STARTTLS" else "check SMTP_HOST/SMTP_PORT: this server does not take logins"
                                 ) from None
        except ssl.SSLError as exc:
            reason = "its certificate is not trusted" if isinstance(exc, ssl.SSLCertVerificationError) else exc.reason
            raise DeliveryFailed(f"TLS with the SMTP server {self.host}:{self.port} failed: {reason}",
                                 fix="check SMTP_HOST (the certificate's name) and SMTP_SECURITY; SSL_CERT_FILE "
                                     "names extra trusted certificates") from None
        except smtplib.SMTPRecipientsRefused as exc:
            raise DeliveryFailed(f"the SMTP server refused every recipient: {listed(exc.recipients)}",
                                 fix="check the addresses in ALERT_EMAIL_TO") from None
        except (smtplib.SMTPServerDisconnected, smtplib.SMTPConnectError, ConnectionError, TimeoutError,
                socket.gaierror) as exc:
            raise Transient(self._network_reason(exc, policy)) from None
        except smtplib.SMTPResponseException as exc:
            if not 400 <= exc.smtp_code < 500:
                raise self._refusal(exc) from None
            raise Transient(f"temporary SMTP failure ({_answer(exc.smtp_code, exc.smtp_error)})") from None

    def _network_reason(self, exc: BaseException, policy: RetryPolicy) -> str:
        if isinstance(exc, ConnectionRefusedError):
            return f"could not reach {self.host}:{self.port}: connection refused"
        if isinstance(exc, TimeoutError):
            return f"could not reach {self.host}:{self.port}: no answer within {policy.timeout:g}s"
        if isinstance(exc, socket.gaierror):
            return f"could not reach {self.host}: host name not found"
        return f"the SMTP server {self.host}:{self.port} closed the connection"

    def _refusal(self, exc: smtplib.SMTPResponseException) -> DeliveryFailed:
        answer = _answer(exc.smtp_code, exc.smtp_error)
        if isinstance(exc, smtplib.SMTPAuthenticationError):
            return DeliveryFailed(f"the SMTP server refused the login ({answer})",
                                  fix="check SMTP_USERNAME and SMTP_PASSWORD (many providers need an app password)")
        if isinstance(exc, smtplib.SMTPSenderRefused):
            return DeliveryFailed(f"the SMTP server refused the sender {self.sender} ({answer})",
                                  fix="set ALERT_EMAIL_FROM to an address this account may send as")
        return DeliveryFailed(f"the SMTP server refused the message ({answer})",
                              fix="check the SMTP settings and ALERT_EMAIL_TO")


def listed(refused: Mapping[str, tuple[int, bytes]]) -> str:
    """Refused recipients with the server's answer to each."""
    return "; ".join(f"{rcpt} ({_answer(code, text)})" for rcpt, (code, text) in sorted(refused.items()))
