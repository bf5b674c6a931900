"""The one CI-aware logger: plain text locally, workflow commands in GitHub Actions.

GitHub Actions is detected once (`GITHUB_ACTIONS=true`). There, steps become `::group::` blocks,
problems become `::error`/`::warning` annotations (at most 10 of each are shown per step, so the rest
are aggregated), the Markdown summary goes to `$GITHUB_STEP_SUMMARY` and outputs to `$GITHUB_OUTPUT`.
Everything printed passes through the run's `Redactor`.

In Actions every line we print that is not one of our own workflow commands (flow, Gradle, adb and
logcat output, and our lines that quote them) goes inside a `::stop-commands::<token>` fence with a fresh
random token, so `::set-output::`, `::add-mask::` or `##[error]` in a tool's output is shown, never
executed; our own commands first close the fence (`::<token>::`). The fence is one per stream and
process (every `Console` shares it), and in Actions everything goes to stdout: the runner reads stdout
and stderr in no fixed order, so a fence on one stream would not cover the other.
"""

from __future__ import annotations

import atexit
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

_FENCE_LOCK = threading.Lock()
_FENCES: dict[int, str] = {}  # id(stream) -> the token of the open `::stop-commands::` fence


def _emit(stream: TextIO, lines: list[tuple[str, bool]], actions: bool) -> None:
    """Write (text, is_our_workflow_command) lines; in Actions, everything else inside the fence."""
    out = []
    with _FENCE_LOCK:
        for text, command in lines:
            token = _FENCES.get(id(stream))
            if actions and command and token:
                out.append(f"::{_FENCES.pop(id(stream))}::")
            elif actions and not command and not token:
                token = _FENCES[id(stream)] = uuid.uuid4().hex
                out.append(f"::stop-commands::{token}")
            out.append(text)
        stream.write("\n".join(out) + "\n")
        stream.flush()


def close_fences() -> None:
    """Resume workflow commands on every stream that has a fence open (at exit: the next step's log)."""
    with _FENCE_LOCK:
        for stream in (sys.stdout, sys.stderr):
            token = _FENCES.pop(id(stream), None)
            if token:
                with contextlib.suppress(OSError, ValueError):
                    stream.write(f"::{token}::\n")
                    stream.flush()


atexit.register(close_fences)


def _escape_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _one_line(text: str) -> str:
    """A group title is one line: a name with a line break must not start a line of its own."""
    return " ".join(text.splitlines())


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
        self.err = self.out if self.actions else err or sys.stderr  # one stream in Actions: see above
        self.redact = redact or Redactor()
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
        if self.actions:  # our own commands: outside any `::stop-commands::` fence, and never redacted
            lines = [line for form in redactor.forms for line in form.splitlines()]
            new = [line for line in dict.fromkeys(lines) if line.strip() and line not in self._masked]
            self._masked.update(new)
            if new:
                _emit(self.out, [(f"::add-mask::{line}", True) for line in new], self.actions)

    # plain lines -----------------------------------------------------------------------------------
    def _write(self, stream: TextIO, text: str, *, command: bool = False) -> None:
        """One line (or several), redacted; `command` marks our own workflow command (Actions only)."""
        self._emit(stream, [(text, command)])

    def _emit(self, stream: TextIO, lines: list[tuple[str, bool]]) -> None:
        with self._lock:
            _emit(stream, [(self.redact(text), command) for text, command in lines], self.actions)

    def info(self, text: str) -> None:
        self._write(self.out, text)

    def step(self, text: str) -> None:
        self._write(self.out, self._paint(f"==> {text}", "1"))

    def command(self, display: str) -> None:
        self._write(self.out, self._paint(f"+ {display}", "2"))

    def line(self, text: str, prefix: str = "  | ") -> None:
        """One line of a child's output, inside a flow's fold."""
        self._write(self.out, ("" if self.actions else prefix) + text)

    def warning(self, text: str, *, title: str = "", file: str = "", line: int = 0) -> None:
        self._annotate("warning", text, title=title, file=file, line=line)

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
            # GitHub shows only 10 per step; `stage.announce` stays within them, this is the safety net.
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
        self._write(self.out, f"::{head}::{_escape_data(self.redact(text))}", command=True)

    # folds -----------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def group(self, title: str) -> Iterator[None]:
        start = time.monotonic()
        if self.actions:
            self._write(self.out, f"::group::{_one_line(title)}", command=True)
        else:
            self._write(self.out, self._paint(f"--- {title}", "36"))
        try:
            yield
        finally:
            took = time.monotonic() - start
            if self.actions:
                self._write(self.out, "::endgroup::", command=True)
            self._write(self.out, self._paint(f"    ({took:.1f}s)", "2"))

    def block(self, title: str, lines: list[str], took: float) -> None:
        """A whole fold at once, for output gathered while other threads were printing."""
        body = [(f"::group::{_one_line(title)}", True) if self.actions else (self._paint(f"--- {title}", "36"), False)]
        body += [(line if self.actions else f"  | {line}", False) for line in lines]
        if self.actions:
            body.append(("::endgroup::", True))
        body.append((self._paint(f"    ({took:.1f}s)", "2"), False))
        self._emit(self.out, body)

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


def redacting_console(environ: Mapping[str, str]) -> Console:
    """The console every task and the boundary speak through: the environment's secrets masked from the start."""
    return Console(environ, Redactor.from_env(environ))
