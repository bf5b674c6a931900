"""The one CI-aware logger: plain text locally, workflow commands in GitHub Actions.

GitHub Actions is detected once (`GITHUB_ACTIONS=true`). There, steps become `::group::` blocks,
problems become `::error`/`::warning` annotations (at most 10 of each are shown per step, so the rest
are aggregated), the Markdown summary goes to `$GITHUB_STEP_SUMMARY` and outputs to `$GITHUB_OUTPUT`.
Everything printed passes through the run's `Redactor`.
"""

from __future__ import annotations

import contextlib
import sys
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TextIO

from .secrets import Redactor

MAX_ANNOTATIONS = 10


def _escape_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(text: str) -> str:
    return _escape_data(text).replace(":", "%3A").replace(",", "%2C")


class Console:
    def __init__(
        self,
        environ: Mapping[str, str],
        redact: Redactor | None = None,
        out: TextIO | None = None,
        err: TextIO | None = None,
    ) -> None:
        self.actions = environ.get("GITHUB_ACTIONS") == "true"
        self.out = out or sys.stdout
        self._masked: set[str] = set()
        self.redact = redact or Redactor()
        self.err = err or sys.stderr
        self._summary_path = environ.get("GITHUB_STEP_SUMMARY", "") if self.actions else ""
        self._output_path = environ.get("GITHUB_OUTPUT", "") if self.actions else ""
        self._colour = (not self.actions) and self.out.isatty() and "NO_COLOR" not in environ
        self._lock = threading.Lock()
        self._annotations = {"error": 0, "warning": 0}

    @property
    def redact(self) -> Redactor:
        return self._redact

    @redact.setter
    def redact(self, redactor: Redactor) -> None:
        """In Actions, the runner is told to mask each secret and each of its encoded forms (`::add-mask::`,
        a line each), so that even output we do not print ourselves cannot show them."""
        self._redact = redactor
        if self.actions:
            for form in redactor.forms:
                for line in form.splitlines():
                    if line.strip() and line not in self._masked:
                        self._masked.add(line)
                        self.out.write(f"::add-mask::{line}\n")
            self.out.flush()

    # plain lines -----------------------------------------------------------------------------------
    def _write(self, stream: TextIO, text: str) -> None:
        with self._lock:
            stream.write(self.redact(text) + "\n")
            stream.flush()

    def info(self, text: str) -> None:
        self._write(self.out, text)

    def step(self, text: str) -> None:
        self._write(self.out, self._paint(f"==> {text}", "1"))

    def command(self, display: str) -> None:
        self._write(self.out, self._paint(f"+ {display}", "2"))

    def line(self, text: str, prefix: str = "  | ") -> None:
        """One line of a child's output, inside a flow's fold."""
        self._write(self.out, ("" if self.actions else prefix) + text)

    def warning(self, text: str, *, title: str = "") -> None:
        self._annotate("warning", text, title=title)

    def error(self, text: str, *, title: str = "", file: str = "", line: int = 0) -> None:
        self._annotate("error", text, title=title, file=file, line=line)

    def _annotate(self, kind: str, text: str, *, title: str = "", file: str = "", line: int = 0) -> None:
        if not self.actions:
            label = self._paint(kind, "31" if kind == "error" else "33")
            where = f"{file}: " if file else ""
            self._write(self.err, f"{label}: {where}{title + ': ' if title else ''}{text}")
            return
        self._annotations[kind] += 1
        if self._annotations[kind] > MAX_ANNOTATIONS:
            # GitHub shows only 10 per step; `validate.announce` stays within them, this is the safety net.
            self._write(self.err, f"{kind}: {title + ': ' if title else ''}{text}")
            return
        props = []
        if file:
            props.append(f"file={_escape_property(file)}")
        if line:
            props.append(f"line={line}")
        if title:
            props.append(f"title={_escape_property(self.redact(title))}")
        head = f"{kind} {','.join(props)}" if props else kind
        self._write(self.out, f"::{head}::{_escape_data(self.redact(text))}")

    # folds -----------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def group(self, title: str) -> Iterator[None]:
        start = time.monotonic()
        if self.actions:
            self._write(self.out, f"::group::{title}")
        else:
            self._write(self.out, self._paint(f"--- {title}", "36"))
        try:
            yield
        finally:
            took = time.monotonic() - start
            if self.actions:
                self._write(self.out, "::endgroup::")
            self._write(self.out, self._paint(f"    ({took:.1f}s)", "2"))

    def block(self, title: str, lines: list[str], took: float) -> None:
        """A whole fold at once, for output gathered while other threads were printing."""
        body = [f"::group::{title}" if self.actions else self._paint(f"--- {title}", "36")]
        body += [line if self.actions else f"  | {line}" for line in lines]
        if self.actions:
            body.append("::endgroup::")
        body.append(self._paint(f"    ({took:.1f}s)", "2"))
        self._write(self.out, "\n".join(body))

    # GitHub files ----------------------------------------------------------------------------------
    def step_summary(self, markdown: str) -> None:
        if self._summary_path:
            with open(self._summary_path, "a", encoding="utf-8") as fh:
                fh.write(self.redact(markdown) + "\n")

    def set_outputs(self, outputs: Mapping[str, str]) -> None:
        if not self._output_path:
            return
        with open(self._output_path, "a", encoding="utf-8") as fh:
            for name, raw in outputs.items():
                value = self.redact(raw)
                if "\n" in value:
                    marker = f"ghadelimiter_{uuid.uuid4().hex}"
                    fh.write(f"{name}<<{marker}\n{value}\n{marker}\n")
                else:
                    fh.write(f"{name}={value}\n")

    def _paint(self, text: str, code: str) -> str:
        return f"\033[{code}m{text}\033[0m" if self._colour else text


def relative_display(path: Path, base: Path | None = None) -> str:
    """A path as a person would type it: relative to `base` (the working directory) when inside it."""
    try:
        return path.resolve().relative_to((base or Path.cwd()).resolve()).as_posix()
    except ValueError:
        return str(path)
