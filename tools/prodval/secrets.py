"""Secrets come only from the environment; this keeps their values out of every output.

One `Redactor` is built per run from the environment (and the flow variables the user passes) and is
applied to echoed commands, console output, the run record and every report or alert.
"""

from __future__ import annotations

import base64
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

# Environment variables that always hold secrets, whatever their value looks like.
SECRET_ENV_VARS = (
    "SLACK_WEBHOOK_URL",
    "SMTP_PASSWORD",
    "SMTP_USERNAME",
    "PAGERDUTY_ROUTING_KEY",
    "GITHUB_TOKEN",
    "GH_TOKEN",
    "ANDROID_KEYSTORE_BASE64",
    "ANDROID_KEYSTORE_PASSWORD",
    "ANDROID_KEY_PASSWORD",
    "ANDROID_KEY_ALIAS",
)

# Any other variable (environment or flow `-e`) whose name looks like a credential: these anywhere in
# the name, ...
_SECRET_NAME = re.compile(
    r"(PASSWORD|PASSWD|PASSPHRASE|SECRET|TOKEN|API_?KEY|PRIVATE|CREDENTIAL|WEBHOOK|COOKIE|SESSION)", re.I)
# ... these as a whole word of it (AUTH_HEADER, USER_PIN, but not AUTHOR or SHIPPING), and any name ending
# in KEY (SIGNING_KEY, encryptionKey).
_SECRET_WORDS = frozenset({"AUTH", "AUTHORIZATION", "OTP", "TOTP", "PIN", "PASSCODE", "BEARER", "JWT"})
_WORD = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|\d+")
# What the system, a desktop session or a CI image sets under names that look like credentials but hold
# none (a socket path, a bus address, `user`, CPython images' public GPG key id): masking them would hide
# ordinary words everywhere ("user"). Only for the environment; a flow variable is the user's own.
_NOT_SECRETS = re.compile(
    r"(XDG_SESSION_\w+|DESKTOP_SESSION|SESSION_MANAGER|DBUS_SESSION_BUS_ADDRESS|SSH_AUTH_SOCK|GPG_AGENT_INFO"
    r"|GPG_KEY|KRB5CCNAME)")
MASK = "***"
# Values of a credential-like name that are a switch, not a secret (AUTH_ENABLED=true): never masked.
_SWITCHES = frozenset({"true", "false", "yes", "no", "on", "off", "none", "null", "enabled", "disabled"})
_MIN_SECRET_LENGTH = 4  # shorter values would mask ordinary words
_MIN_ENCODED_LENGTH = 6  # a shorter encoded fragment (a base64 slice of a 4-byte secret) is ordinary text


def is_secret_name(name: str, more: Iterable[str] = ()) -> bool:
    """Whether a variable named `name` holds a secret; `more` are names the project adds (validation.secret_env)."""
    if name in SECRET_ENV_VARS or name in more or _SECRET_NAME.search(name):
        return True
    words = [w.upper() for w in _WORD.findall(name)]
    return bool(words) and (words[-1] == "KEY" or any(w in _SECRET_WORDS for w in words))


def encoded_forms(value: str) -> list[str]:
    """The value and the ways a tool may print it: base64 at each of its three alignments (standard and
    URL-safe alphabets), URL-encoding and hex. Used to mask output and for `::add-mask::`."""
    raw = value.encode()
    forms = {value}
    for shift, skip in ((0, 0), (1, 2), (2, 3)):  # chars that also encode the bytes before the value
        encoded = base64.b64encode(b"\0" * shift + raw).decode()
        whole = (8 * (shift + len(raw))) // 6  # chars that encode no byte after the value
        part = encoded[skip:whole]
        forms.update({part, part.replace("+", "-").replace("/", "_")})
    urls = {quote(value, safe=""), quote_plus(value), quote(value)}
    forms.update(urls | {re.sub("%[0-9A-F]{2}", lambda m: m[0].lower(), u) for u in urls})
    forms.update({raw.hex(), raw.hex().upper()})
    return [f for f in forms if f == value or len(f) >= _MIN_ENCODED_LENGTH]


class Redactor:
    """Replaces every known secret value, and its encoded forms (see `encoded_forms`), by `***`."""

    def __init__(self, values: Iterable[str] = ()) -> None:
        self._values = sorted({v for v in values if len(v) >= _MIN_SECRET_LENGTH}, key=len, reverse=True)
        self._forms = sorted({f for v in self._values for f in encoded_forms(v)}, key=len, reverse=True)
        self._pattern = re.compile("|".join(re.escape(v) for v in self._forms)) if self._forms else None
        self.longest = len(self._forms[0]) if self._forms else 0

    @classmethod
    def from_env(cls, environ: Mapping[str, str], extra: Mapping[str, str] | None = None,
                 names: Iterable[str] = ()) -> Redactor:
        """The secrets of `environ` and `extra` (flow variables): every variable named like a credential,
        or named in `names` (validation.secret_env)."""
        more = frozenset(names)
        pairs = [(n, v) for n, v in environ.items() if n in more or not _NOT_SECRETS.fullmatch(n)]
        pairs += list((extra or {}).items())
        return cls(value for name, value in pairs
                   if is_secret_name(name, more) and value and value.strip().lower() not in _SWITCHES)

    def __call__(self, text: str) -> str:
        if self._pattern is None or not text:
            return text
        return self._pattern.sub(MASK, text)

    @property
    def values(self) -> tuple[str, ...]:
        return tuple(self._values)

    @property
    def forms(self) -> tuple[str, ...]:
        """Every secret and each of its encoded forms, longest first."""
        return tuple(self._forms)

    def split_safe(self, text: str) -> tuple[str, str]:
        """(masked, rest) for a piece of a longer stream: `masked` is the start of `text` with secrets
        masked, `rest` its end that could be the start of a secret continuing in the next piece."""
        if self._pattern is None:
            return text, ""
        cut = max(0, len(text) - (self.longest - 1))
        for match in self._pattern.finditer(text):
            if match.start() < cut < match.end():
                cut = match.end()
        return self(text[:cut]), text[cut:]

    def mask_tree(self, value: Any, key: str = "") -> Any:
        """A JSON-like value with secrets masked in its free text (what tools and servers said): never in
        keys, in the values of our own structural fields (statuses, kinds) or in paths we chose."""
        if isinstance(value, dict):
            return {k: self.mask_tree(v, str(k)) for k, v in value.items()}
        if isinstance(value, list):
            return [self.mask_tree(v, key) for v in value]
        if isinstance(value, str) and not _is_structural(key):
            return self(value)
        return value

    def scrub_files(self, folder: Path, skip: Iterable[Path] = ()) -> None:
        """Mask secrets inside the text files a tool wrote (reports, logs, command dumps), in place."""
        if self._pattern is None:
            return
        skipped = {p.resolve() for p in skip}
        for path in folder.rglob("*"):
            if path.is_file() and path.suffix not in _BINARY_SUFFIXES and path.resolve() not in skipped:
                self.scrub_file(path)

    def scrub_file(self, path: Path) -> None:
        """Mask secrets inside one text file, in place (line by line: it may be large)."""
        if self._pattern is None:
            return
        changed = False
        tmp = path.with_name(f".{path.name}.scrub")
        with open(path, "rb") as src, open(tmp, "wb") as dst:
            for raw in src:
                text = raw.decode("utf-8", errors="surrogateescape")
                masked = self._pattern.sub(MASK, text)
                changed = changed or masked != text
                dst.write(masked.encode("utf-8", errors="surrogateescape"))
        if changed:
            os.replace(tmp, path)
        else:
            tmp.unlink()


# Fields whose values are ours (enums, identifiers, times, paths in the repository or results folder).
_STRUCTURAL_KEYS = frozenset({
    "status", "verdict", "outcome", "kind", "channel", "type", "runId", "jobId", "workflow", "startTime",
    "endTime", "time", "device", "devices", "serial", "flowFileName", "schemaVersion", "delivered",
})


def _is_structural(key: str) -> bool:
    return key in _STRUCTURAL_KEYS or key.endswith(("Path", "Paths", "path"))


_BINARY_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".webp", ".mp4", ".apk", ".aab", ".zip"})
