"""Secrets come only from the environment; this keeps their values out of every output.

One `Redactor` is built per run from the environment (and the flow variables the user passes) and is
applied to echoed commands, console output, the run record and every report or alert.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path

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

# Any other variable (environment or flow `-e`) whose name looks like a credential.
_SECRET_NAME = re.compile(r"(PASSWORD|PASSWD|SECRET|TOKEN|API_?KEY|PRIVATE|CREDENTIAL|WEBHOOK)", re.I)
MASK = "***"
_MIN_SECRET_LENGTH = 4  # shorter values would mask ordinary words


def is_secret_name(name: str) -> bool:
    return name in SECRET_ENV_VARS or bool(_SECRET_NAME.search(name))


class Redactor:
    """Replaces every known secret value by `***`."""

    def __init__(self, values: Iterable[str] = ()) -> None:
        self._values = sorted({v for v in values if len(v) >= _MIN_SECRET_LENGTH}, key=len, reverse=True)
        self._pattern = re.compile("|".join(re.escape(v) for v in self._values)) if self._values else None

    @classmethod
    def from_env(cls, environ: Mapping[str, str], extra: Mapping[str, str] | None = None) -> Redactor:
        pairs = list(environ.items()) + list((extra or {}).items())
        return cls(value for name, value in pairs if is_secret_name(name) and value)

    def __call__(self, text: str) -> str:
        if self._pattern is None or not text:
            return text
        return self._pattern.sub(MASK, text)

    @property
    def values(self) -> tuple[str, ...]:
        return tuple(self._values)

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


_BINARY_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".webp", ".mp4", ".apk", ".aab", ".zip"})
