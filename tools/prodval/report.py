"""`report.html`: the page a person opens first when a run fails, rendered from the run record.

One self-contained file, so that it opens straight from a downloaded artifact: inline CSS, images as
data URIs, no script and no external request (a Content-Security-Policy says so to the browser too); the
screen recordings, too large to embed, are `<video>` elements pointing at the files beside it.
It shows the verdict and where it ran, a timeline with one lane per device and one bar per attempt,
and a card per flow (failed and flaky first) with the app's crash block of each attempt it crashed in
(`crash.txt`, see crashes.py), its failure screenshots (both Maestro debug
layouts, via `maestro.screenshots`), its own `takeScreenshot` images, the tail of its output and links
to its artifacts. Every text passes through the run's `Redactor`, then is HTML-escaped.

Screenshots are scaled down with Pillow: a phone screenshot is about 1080x2400 and 0.5-1.5 MB, and
base64 adds a third, so a failing night with a dozen flows and retries would otherwise weigh tens of
megabytes; scaled to fit 480x960 as JPEG they weigh tens of kilobytes each.

Planning is pure (`order_flows`, `timeline`, `attempt_images`); `render_report` turns a plan into text
and `write_report` writes it atomically beside the record.
"""

from __future__ import annotations

import base64
import html
import io
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import quote

from PIL import Image, UnidentifiedImageError

from .crashes import CRASH_FILE
from .maestro import screenshots
from .outcomes import Status
from .recording import videos_of
from .results import (
    IMPACT_LABEL,
    RELEASED,
    REPORT_NAME,
    RUNNING,
    STATUS_LABEL,
    STATUS_ORDER,
    Attempt,
    FlowResult,
    RunRecord,
    atomic_write,
    duration_text,
    failing_since_text,
    gating,
    headline,
    not_run_reason,
    order_flows,
    percent,
    quarantined,
    released_text,
    runs_ago,
    simulated_mark,
)

OUTPUT_TAIL_LINES = 40
IMAGE_BOX = (480, 960)  # fits a portrait phone screenshot shown at ~240 CSS px on a 2x screen
INLINE_AS_IS_BYTES = 150_000  # a small image that already fits the box is shipped unchanged
MAX_IMAGES_PER_FLOW = 12  # the rest are linked, not embedded
CRASH_SHOWN_BYTES = 64_000  # of an attempt's crash.txt on its card (the file itself is linked in full)
_SHIPPED_AS_IS = {"PNG": "image/png", "JPEG": "image/jpeg", "GIF": "image/gif", "WEBP": "image/webp"}
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


# --- the plan: pure functions of the record ---------------------------------------------------------


def parse_time(text: str) -> datetime | None:
    try:
        return datetime.fromisoformat(text)
    except (TypeError, ValueError):
        return None


# What a timeline bar can be: an attempt's status, or `flaky` for the attempt that passed after a failed one
# (its flow is flaky). A flow that did not run has no attempt, so no bar. The legend lists these.
BAR_STATUSES: tuple[str, ...] = tuple(status for status in STATUS_ORDER if status != Status.NOT_RUN)


def bar_status(flow: FlowResult, attempt: Attempt) -> str:
    """The status a bar shows: the attempt's, except that the passing attempt of a flaky flow is `flaky`."""
    return Status.FLAKY if flow.status == Status.FLAKY and attempt.status == Status.PASSED else attempt.status


@dataclass(frozen=True)
class Bar:
    flow: str
    attempt: int
    status: str
    start: float  # seconds after the timeline's origin
    duration: float  # seconds
    apk: str = ""  # "released": the released app's rerun (impact triage)


@dataclass(frozen=True)
class Lane:
    device: str
    bars: tuple[Bar, ...]


@dataclass(frozen=True)
class Timeline:
    origin: datetime | None
    span: float  # seconds from the origin to the end of the last attempt
    lanes: tuple[Lane, ...]


def timeline(record: RunRecord) -> Timeline:
    """One lane per device (those the record names first, in its order), one bar per attempt."""
    timed: list[tuple[FlowResult, Attempt, datetime]] = []
    for flow in record.flows:
        for attempt in flow.attempts:
            start = parse_time(attempt.startTime)
            if start is not None:
                timed.append((flow, attempt, start))
    devices = list(dict.fromkeys([*record.devices, *(a.device for _, a, _ in timed if a.device)]))
    if not timed:
        return Timeline(None, 0.0, tuple(Lane(device, ()) for device in devices))
    origin = min(start for _, _, start in timed)
    bars: dict[str, list[Bar]] = {device: [] for device in devices}
    span = 0.0
    for flow, attempt, start in sorted(timed, key=lambda item: item[2]):
        offset = (start - origin).total_seconds()
        seconds = max(attempt.duration, 0) / 1000
        span = max(span, offset + seconds)
        bars.setdefault(attempt.device or "(unknown device)", []).append(
            Bar(flow.flowFileName, attempt.number, bar_status(flow, attempt), offset, seconds, attempt.apk))
    return Timeline(origin, span, tuple(Lane(device, tuple(lane)) for device, lane in bars.items()))


def inside(results_dir: Path, relative: str) -> Path | None:
    """`results_dir/relative` when it stays inside the results folder (records can come from elsewhere)."""
    pure = PurePosixPath(relative)
    if not relative or pure.is_absolute() or ".." in pure.parts:
        return None
    return results_dir.joinpath(*pure.parts)


def attempt_debug_dir(results_dir: Path, attempt: Attempt) -> Path | None:
    """`.../attempt-<n>/debug`, found from the attempt's artifact paths (relative to the results folder)."""
    marker = attempt.folder
    for relative in attempt.artifactPaths:
        parts = PurePosixPath(relative).parts
        for index in range(len(parts) - 1):
            if parts[index] == marker and parts[index + 1] == "debug":
                return inside(results_dir, "/".join(parts[: index + 2]))
    return None


@dataclass(frozen=True)
class Shot:
    path: Path
    caption: str


def attempt_images(results_dir: Path, flow: FlowResult) -> tuple[list[Shot], list[Shot]]:
    """(failure screenshots of every attempt that did not pass, the build's final attempt's own screenshots)."""
    failures: list[Shot] = []
    own: list[Shot] = []
    built = flow.build_attempts()
    for attempt in flow.attempts:
        debug = attempt_debug_dir(results_dir, attempt)
        if debug is None:
            continue
        failed_shots, own_shots = screenshots(debug)
        if attempt.status != Status.PASSED:
            failures += [Shot(p, f"{_attempt_label(attempt)}: {_shot_name(p)}") for p in failed_shots]
        if built and attempt is built[-1]:  # the build's last attempt, not the released app's rerun
            own += [Shot(p, _shot_name(p)) for p in own_shots]
    return failures, own


_FLAT_SHOT = re.compile(r"^screenshot-(?P<mark>.+?)-(?P<millis>\d+)-\((?P<flow>.*)\)$")


def _shot_name(path: Path) -> str:
    """A caption: the 2.7+ names say the step; the flat names carry ❌/✅ and epoch milliseconds."""
    flat = _FLAT_SHOT.match(path.stem)
    if flat is None:
        return path.stem
    when = datetime.fromtimestamp(int(flat["millis"]) / 1000, UTC).strftime("%H:%M:%S UTC")
    kind = "failed step" if "❌" in flat["mark"] else "warning" if "⚠" in flat["mark"] else "screenshot"
    return f"{kind} at {when}"


def attempt_crashes(results_dir: Path, flow: FlowResult) -> list[tuple[Attempt, str, str]]:
    """(attempt, crash.txt's path relative to the results folder, its text) for each attempt the app
    crashed in (`Attempt.crash`); the text cut at CRASH_SHOWN_BYTES, '' when the file cannot be read."""
    found = []
    for attempt in flow.attempts:
        if not attempt.crash:
            continue
        relative = next((p for p in attempt.artifactPaths if PurePosixPath(p).name == CRASH_FILE), "")
        path = inside(results_dir, relative) if relative else None
        try:
            with open(path or "", "rb") as fh:
                data = fh.read(CRASH_SHOWN_BYTES + 1)
        except OSError:
            data = b""
        text = data[:CRASH_SHOWN_BYTES].decode("utf-8", errors="replace")
        found.append((attempt, relative, text + ("\n…" if len(data) > CRASH_SHOWN_BYTES else "")))
    return found


def output_tail(text: str, lines: int = OUTPUT_TAIL_LINES) -> str:
    kept = text.rstrip("\n").splitlines()[-lines:]
    return _CONTROL.sub("", "\n".join(kept))


# --- images -----------------------------------------------------------------------------------------


def image_data_uri(path: Path) -> str | None:
    """The image as a data URI, scaled to fit IMAGE_BOX; None when it cannot be read as an image."""
    try:
        data = path.read_bytes()
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            fits = image.width <= IMAGE_BOX[0] and image.height <= IMAGE_BOX[1]
            mime = _SHIPPED_AS_IS.get(image.format or "")
            if fits and mime and len(data) <= INLINE_AS_IS_BYTES:
                return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"
            image.thumbnail(IMAGE_BOX)
            buffer = io.BytesIO()
            image.convert("RGB").save(buffer, "JPEG", quality=80, optimize=True)
    except (OSError, UnidentifiedImageError, Image.DecompressionBombError, ValueError):
        return None
    return f"data:image/jpeg;base64,{base64.b64encode(buffer.getvalue()).decode('ascii')}"


# --- rendering --------------------------------------------------------------------------------------


class _Html:
    """Text through the redactor, then escaped: the only way text reaches the page."""

    def __init__(self, redact: Callable[[str], str]) -> None:
        self.redact = redact

    def __call__(self, text: object) -> str:
        return html.escape(_CONTROL.sub("", self.redact(str(text))), quote=True)

    def href(self, relative: str) -> str:
        return html.escape(quote(self.redact(relative), safe="/"), quote=True)


def _run_seconds(record: RunRecord) -> float | None:
    start, end = parse_time(record.job.startTime), parse_time(record.job.endTime)
    if start is None or end is None:
        return None
    return max((end - start).total_seconds(), 0.0)


def render_report(record: RunRecord, results_dir: Path, redact: Callable[[str], str] = str, *,
                  commit: str = "") -> str:
    """The whole page. `commit` overrides the deployed commit the record carries (`job.commit`)."""
    esc = _Html(redact)
    commit = commit or record.job.commit
    verdict = record.verdict or RUNNING
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        # Belt and braces: even a text that escaped escaping could neither run nor fetch anything.
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; img-src data:; '
        "style-src 'unsafe-inline'; media-src 'self' file:\">",  # media: the screen recordings beside it
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        '<link rel="icon" href="data:,">',
        f"<title>{esc(simulated_mark(record))}{esc(record.job.workflow)}: {esc(verdict)} · {esc(record.runId)}</title>",
        f"<style>{_CSS}</style>",
        "</head>",
        f'<body class="verdict-{esc(verdict)}">',
        _header(record, esc, commit),
        _timeline_section(record, esc),
        _flows_section(record, results_dir, esc),
        "</body>",
        "</html>",
    ]
    return "\n".join(parts) + "\n"


def write_report(record: RunRecord, results_dir: Path, redact: Callable[[str], str] = str, *,
                 commit: str = "") -> Path:
    """Render the report and write it atomically to `<results_dir>/report.html`."""
    path = results_dir / REPORT_NAME
    atomic_write(path, render_report(record, results_dir, redact, commit=commit))
    return path


def _header(record: RunRecord, esc: _Html, commit: str) -> str:
    verdict = record.verdict or RUNNING
    counts = {status: sum(f.status == status for f in gating(record.flows)) for status in STATUS_ORDER}
    chips = "".join(
        f'<li class="chip st-{status}">{count} {esc(STATUS_LABEL[status])}</li>'
        for status in STATUS_ORDER if (count := counts.get(status, 0))
    )
    if held := quarantined(record.flows):  # said apart: they do not gate
        chips += f'<li class="chip quarantined"><a href="#quarantined">{len(held)} quarantined</a></li>'
    facts: list[tuple[str, str]] = []
    env = record.environment
    facts.append(("Environment", esc(f"production · SKIP_DATA_CLEANUP={'true' if env.SKIP_DATA_CLEANUP else 'false'}")))
    apk = record.apk or {}
    code = apk.get("versionCode")
    app = " ".join(str(x) for x in (apk.get("packageName"), apk.get("versionName"), f"({code})" if code else "") if x)
    facts.append(("App", esc(app) if app else '<span class="muted">not recorded</span>'))
    if env.apkBuildPath:
        facts.append(("APK", f"<code>{esc(env.apkBuildPath)}</code>"))
    if env.releasedApk:  # impact triage: the app users have, or why there was none
        released = released_text(env.releasedApk) if env.releasedApk.get("path") else env.releasedApk.get("note", "")
        facts.append(("Released app", esc(released)))
    facts.append(("Deployed commit", f"<code>{esc(commit)}</code>" if commit else '<span class="muted">not recorded</span>'))
    # One id: the run's (the summary's and the alerts'), linked to its workflow run when there is one.
    run_id = f"<code>{esc(record.runId)}</code>"
    facts.append(("Run", f'<a href="{esc(record.job.url)}">{run_id}</a>' if record.job.url else run_id))
    facts.append(("Started", esc(record.job.startTime or "—")))
    facts.append(("Finished", esc(record.job.endTime or "—")))
    seconds = _run_seconds(record)
    facts.append(("Duration", esc(duration_text(seconds)) if seconds is not None else "—"))
    facts.append(("Devices", esc(", ".join(record.devices)) if record.devices else '<span class="muted">none</span>'))
    if record.retiredDevices:
        facts.append(("Left the rotation", esc("; ".join(f"{d['serial']}: {d['reason']}" for d in record.retiredDevices))))
    if env.alertChannels:
        facts.append(("Alert channels", esc(", ".join(env.alertChannels))))
    rows = "".join(f"<dt>{name}</dt><dd>{value}</dd>" for name, value in facts)
    stopped = "".join(
        f'<div class="stopped"><strong>{esc(name)} stopped:</strong><pre>{esc(stage.error)}</pre></div>'
        for name, stage in record.stages.items() if stage.error
    )
    return (
        f'<header class="run verdict-{esc(verdict)}">'
        f'<h1><span class="verdict">{esc(verdict.upper())}</span> {esc(record.job.workflow)}</h1>'
        f'<p class="headline">{esc(headline(record))}</p>'
        f'<ul class="chips">{chips}</ul>'
        f'<dl class="facts">{rows}</dl>{stopped}</header>'
    )


# Timeline geometry (SVG user units; the SVG scales to the page width).
_WIDTH, _LABEL, _RIGHT, _LANE, _BAR, _AXIS = 1000, 150, 10, 30, 20, 24
_NICE_STEPS = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200)


def _tick_step(span: float, most: int = 8) -> int:
    return next((step for step in _NICE_STEPS if span / step <= most), _NICE_STEPS[-1])


def _clock(seconds: float) -> str:
    minutes, rest = divmod(int(seconds), 60)
    return f"{minutes}:{rest:02d}" if minutes else f"{rest}s"


def _timeline_section(record: RunRecord, esc: _Html) -> str:
    plan = timeline(record)
    if not plan.lanes:
        return '<section class="timeline"><h2>Timeline</h2><p class="muted">No device was used.</p></section>'
    plot = _WIDTH - _LABEL - _RIGHT
    span = max(plan.span, 1.0)
    height = _AXIS + _LANE * len(plan.lanes) + 4
    svg = [f'<svg class="timeline" viewBox="0 0 {_WIDTH} {height}" role="img" '
           f'aria-label="Attempts per device over time" xmlns="http://www.w3.org/2000/svg">']
    anchors = {flow.flowFileName: number for number, flow in enumerate(report_order(record.flows), 1)}
    step = _tick_step(span)
    tick = 0
    while tick <= span + 1e-9:
        x = _LABEL + tick / span * plot
        svg.append(f'<line class="tick" x1="{x:.1f}" y1="{_AXIS - 6}" x2="{x:.1f}" y2="{height}"/>'
                   f'<text class="axis" x="{x:.1f}" y="{_AXIS - 10}">{esc(_clock(tick))}</text>')
        tick += step
    for index, lane in enumerate(plan.lanes):
        top = _AXIS + index * _LANE
        svg.append(f'<rect class="lane" x="{_LABEL}" y="{top + 2}" width="{plot}" height="{_LANE - 4}"/>')
        svg.append(f'<text class="device" x="{_LABEL - 8}" y="{top + _LANE / 2 + 4}">{esc(lane.device)}</text>')
        if not lane.bars:
            svg.append(f'<text class="idle" x="{_LABEL + 8}" y="{top + _LANE / 2 + 4}">no attempts</text>')
        for bar in lane.bars:
            x = _LABEL + bar.start / span * plot
            width = max(bar.duration / span * plot, 2.0)
            which = "released app" if bar.apk == RELEASED else f"attempt {bar.attempt}"
            label = f"{bar.flow} · {which} · {STATUS_LABEL.get(bar.status, bar.status)} · " \
                    f"{duration_text(bar.duration)}"
            card = anchors.get(bar.flow)
            svg.append(f'<a href="#flow-{card}">' if card else "<a>")
            svg.append(f'<g class="bar st-{esc(bar.status)}"><title>{esc(label)}</title>'
                       f'<rect x="{x:.1f}" y="{top + (_LANE - _BAR) / 2}" width="{width:.1f}" height="{_BAR}" rx="3"/>')
            fits = int((width - 8) / 6.6)  # about 6.6 units per character at the bar font size
            if fits >= 4:
                text = bar.flow if len(bar.flow) <= fits else bar.flow[: fits - 1] + "…"
                svg.append(f'<text class="bar-label" x="{x + 4:.1f}" y="{top + _LANE / 2 + 4}">{esc(text)}</text>')
            svg.append("</g></a>")
    svg.append("</svg>")
    legend = "".join(f'<li class="chip st-{status}">{esc(STATUS_LABEL[status])}</li>' for status in BAR_STATUSES)
    return (f'<section class="timeline"><h2>Timeline</h2>{"".join(svg)}'
            f'<ul class="chips legend">{legend}</ul></section>')


def report_order(flows: Iterable[FlowResult]) -> list[FlowResult]:
    """The cards' order (and numbers): the flows that gate (failed first), then the quarantined ones."""
    flows = list(flows)
    return order_flows(gating(flows)) + order_flows(quarantined(flows))


def _index(flows: list[tuple[int, FlowResult]], esc: _Html) -> str:
    start = f' start="{flows[0][0]}"' if flows and flows[0][0] != 1 else ""  # the quarantined go on numbering
    return f'<ol class="index"{start}>' + "".join(
        f'<li><a href="#flow-{number}"><span class="chip st-{esc(flow.status)}">{esc(STATUS_LABEL.get(flow.status, flow.status))}'
        f"</span> {esc(flow.name or flow.flowFileName)}</a></li>"
        for number, flow in flows
    ) + "</ol>"


def _flows_section(record: RunRecord, results_dir: Path, esc: _Html) -> str:
    flows = list(enumerate(report_order(record.flows), 1))
    if not flows:
        return '<section class="flows"><h2>Flows</h2><p class="muted">No flow was selected.</p></section>'
    gate = [(number, flow) for number, flow in flows if not flow.quarantined]
    held = [(number, flow) for number, flow in flows if flow.quarantined]
    parts = ['<section class="flows"><h2>Flows</h2>', _history_legend(record, esc)]
    if gate:
        parts.append(_index(gate, esc) + "".join(_card(flow, number, results_dir, esc) for number, flow in gate))
    else:
        parts.append('<p class="muted">No flow gates this run: every flow is quarantined.</p>')
    if held:
        parts.append('<h2 id="quarantined">Quarantined flows</h2><p class="muted">They ran, but do not gate the run: '
                     "their failures neither fail it nor alert as failures, until the day their entry in "
                     "<code>validation.quarantine</code> (invoke.yaml) ends.</p>")
        parts.append(_index(held, esc) + "".join(_card(flow, number, results_dir, esc) for number, flow in held))
    parts.append("</section>")
    return "".join(parts)


def _card(flow: FlowResult, number: int, results_dir: Path, esc: _Html) -> str:
    status = STATUS_LABEL.get(flow.status, flow.status)
    passing = flow.status == Status.PASSED
    built = flow.build_attempts()
    tries = ", ".join(f"{a.number}: {STATUS_LABEL.get(a.status, a.status)}" for a in built)
    facts = [
        ("Status", esc(status)),
        ("Attempts", esc(f"{len(built)} ({tries})" if built else "0")),
        ("Duration", esc(duration_text(flow.duration / 1000))),
        ("Device", esc(flow.device or "—")),
        ("Exit code", esc("—" if flow.exitCode is None else flow.exitCode)),
    ]
    if flow.tags:
        facts.append(("Tags", esc(", ".join(flow.tags))))
    if flow.quarantined:
        entry = flow.quarantine or {}
        facts.append(("Quarantined", esc(f"until {entry.get('until', '?')} · owner {entry.get('owner', '?')} · "
                                         f"{entry.get('reason', '')}")))
    held = ' <span class="chip quarantined">quarantined</span>' if flow.quarantined else ""
    if flow.impact:
        facts.append(("Impact", f'<span class="impact impact-{esc(flow.impact)}">{esc(flow.impact)}</span> '
                                f"{esc(IMPACT_LABEL.get(flow.impact, ''))}"
                                + (f" ({esc(flow.impactReason)})" if flow.impactReason else "")))
    parts = [
        f'<article class="flow st-{esc(flow.status)}{" quarantined" if flow.quarantined else ""}" id="flow-{number}">',
        f'<h3><span class="chip st-{esc(flow.status)}">{esc(status)}</span>{held} {esc(flow.name or flow.flowFileName)} '
        f'<code class="file">{esc(flow.flowFileName)}</code></h3>',
        '<dl class="facts">' + "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in facts) + "</dl>",
        _history(flow, esc),
    ]
    if flow.errorSummary:
        first = "passed on a retry; attempt 1 failed with: " if flow.status == Status.FLAKY else ""
        said = not_run_reason(flow) if flow.status == Status.NOT_RUN else flow.errorSummary  # the chip says "not run"
        parts.append(f'<p class="error-summary">{esc(first + said)}</p>')
    if len(flow.attempts) > 1 or any(a.errorSummary for a in flow.attempts):
        parts.append(_attempts_table(flow, esc))
    parts += _crash_blocks(flow, results_dir, esc)
    failures, own = attempt_images(results_dir, flow)
    budget = MAX_IMAGES_PER_FLOW
    if failures:
        gallery, budget = _gallery(failures, results_dir, esc, budget)
        parts.append(f'<h4>Failure screenshots</h4>{gallery}')
    if own:
        gallery, budget = _gallery(own, results_dir, esc, budget)
        parts.append(f"<h4>Screenshots taken by the flow</h4>{gallery}")
    parts.append(_videos(flow, esc))
    parts.append(_output(flow, esc, open_=not passing))
    parts.append(_artifacts(flow, esc))
    parts.append("</article>")
    return "".join(parts)


# --- a flow's history: the strip of outcomes and the duration trend (inline SVG, no script) ----------------

_SQUARE, _GAP = 12, 3  # the strip: one square per run
_TREND_WIDTH, _TREND_HEIGHT, _TREND_PAD = 240, 40, 4


def _history_legend(record: RunRecord, esc: _Html) -> str:
    """How to read the strips and trends, with the same status chips as the timeline's legend."""
    strips = [[str(s) for s in (flow.history or {}).get("strip") or []] for flow in record.flows if flow.history]
    if not strips:
        return ""
    seen = {status for strip in strips for status in strip}
    statuses = [*BAR_STATUSES, *([Status.NOT_RUN] if Status.NOT_RUN in seen else [])]
    chips = "".join(f'<li class="chip st-{status}">{esc(STATUS_LABEL[status])}</li>' for status in statuses)
    return ('<div class="history-legend"><p class="muted">History: one square per run of the flow, oldest first, '
            "this run last (outlined); rates over those runs; the trend line is the duration of each, this run "
            f'marked, the dashed line p95 of the passing runs before it.</p><ul class="chips strip-legend">{chips}</ul></div>')


def strip_svg(history: Mapping[str, Any], esc: _Html) -> str:
    """The last outcomes as a row of squares coloured by status, each with its <title>; this run outlined."""
    strip = [str(status) for status in history.get("strip") or []]
    durations = list(history.get("durations") or [])
    if not strip:
        return ""
    width = len(strip) * (_SQUARE + _GAP) - _GAP + 2
    squares = []
    for index, status in enumerate(strip):
        ago = len(strip) - 1 - index
        took = durations[index] if len(durations) == len(strip) else None
        label = f"{runs_ago(ago)}: {STATUS_LABEL.get(status, status)}" + (
            f" · {duration_text(took / 1000)}" if isinstance(took, (int, float)) and status != Status.NOT_RUN else "")
        mark = " this-run" if ago == 0 else ""
        squares.append(f'<g class="sq st-{esc(status)}{mark}"><title>{esc(label)}</title>'
                       f'<rect x="{1 + index * (_SQUARE + _GAP)}" y="1" width="{_SQUARE}" height="{_SQUARE}" rx="2"/></g>')
    return (f'<svg class="strip" viewBox="0 0 {width} {_SQUARE + 2}" width="{width}" height="{_SQUARE + 2}" role="img" '
            f'aria-label="last {len(strip)} outcomes, oldest first" xmlns="http://www.w3.org/2000/svg">'
            + "".join(squares) + "</svg>")


def trend_svg(history: Mapping[str, Any], esc: _Html) -> str:
    """The durations of the runs in the strip as a polyline, this run (the last) marked, p95 dashed."""
    durations = [d for d in history.get("durations") or [] if isinstance(d, (int, float))]
    if len(durations) < 2:
        return ""
    p95 = history.get("p95")
    top = max([*durations, *([p95] if isinstance(p95, (int, float)) else [])]) or 1
    plot_w, plot_h = _TREND_WIDTH - 2 * _TREND_PAD, _TREND_HEIGHT - 2 * _TREND_PAD

    def point(index: int, value: float) -> tuple[float, float]:
        return (_TREND_PAD + index * plot_w / (len(durations) - 1), _TREND_PAD + plot_h - value / top * plot_h)

    points = " ".join(f"{x:.1f},{y:.1f}" for x, y in (point(i, d) for i, d in enumerate(durations)))
    x, y = point(len(durations) - 1, durations[-1])
    parts = [f'<svg class="trend" viewBox="0 0 {_TREND_WIDTH} {_TREND_HEIGHT}" width="{_TREND_WIDTH}" '
             f'height="{_TREND_HEIGHT}" role="img" aria-label="duration of the last {len(durations)} runs" '
             'xmlns="http://www.w3.org/2000/svg">']
    if isinstance(p95, (int, float)):
        py = point(0, p95)[1]
        parts.append(f'<line class="p95" x1="{_TREND_PAD}" y1="{py:.1f}" x2="{_TREND_WIDTH - _TREND_PAD}" y2="{py:.1f}">'
                     f"<title>p95 {esc(duration_text(p95 / 1000))}</title></line>")
    parts.append(f'<polyline class="durations" points="{points}"><title>'
                 f'{esc(" · ".join(duration_text(d / 1000) for d in durations))}</title></polyline>')
    parts.append(f'<circle class="this-run" cx="{x:.1f}" cy="{y:.1f}" r="3.5"><title>this run: '
                 f"{esc(duration_text(durations[-1] / 1000))}</title></circle></svg>")
    return "".join(parts)


def _history(flow: FlowResult, esc: _Html) -> str:
    history = flow.history
    if not history:
        return ""
    facts = [f"pass {percent(history.get('passRate'))}", f"flaky {percent(history.get('flakyRate'))}",
             f"fail {percent(history.get('failRate'))}"]
    runs = history.get("runs")
    said = " · ".join(facts) + ("" if not isinstance(runs, int) else " (this run is the first in the history)"
                                if runs == 0 else f" over {runs} earlier run{'s' if runs != 1 else ''} and this one")
    notes = []
    since = failing_since_text(history)
    if history.get("state") == "new":
        notes.append('<span class="chip state-new">new failure</span>')
    elif since:
        notes.append(f'<span class="chip state-still">still failing</span> since {esc(since)}')
    p50, p95 = history.get("p50"), history.get("p95")
    if isinstance(p50, (int, float)) and isinstance(p95, (int, float)):
        notes.append(esc(f"p50 {duration_text(p50 / 1000)} · p95 {duration_text(p95 / 1000)}"))
    if history.get("slow"):
        notes.append('<span class="chip slow">slow</span>')
    return (f'<div class="history">{strip_svg(history, esc)}{trend_svg(history, esc)}'
            f'<p class="history-facts">{esc(said)}{" · " if notes else ""}{" · ".join(notes)}</p></div>')


def _attempts_table(flow: FlowResult, esc: _Html) -> str:
    rows = "".join(
        f'<tr class="st-{esc(a.status)}"><td>{esc(_attempt_label(a))}</td><td>{esc(STATUS_LABEL.get(a.status, a.status))}</td>'
        f"<td>{esc(a.device)}</td><td>{esc(a.startTime)}</td><td>{esc(duration_text(a.duration / 1000))}</td>"
        f"<td>{esc('—' if a.exitCode is None else a.exitCode)}</td><td>{esc(a.errorSummary)}</td></tr>"
        for a in flow.attempts
    )
    return ('<table class="attempts"><thead><tr><th>#</th><th>status</th><th>device</th><th>started</th>'
            f"<th>duration</th><th>exit</th><th>error</th></tr></thead><tbody>{rows}</tbody></table>")


def _crash_blocks(flow: FlowResult, results_dir: Path, esc: _Html) -> list[str]:
    """The app's crash block of each attempt it crashed in, as logcat printed it."""
    blocks = []
    for attempt, relative, text in attempt_crashes(results_dir, flow):
        link = f' (<a href="{esc.href(relative)}">{esc(relative)}</a>)' if relative else ""
        body = f'<pre class="crash">{esc(text)}</pre>' if text.strip() else \
            '<p class="muted">The crash block could not be read.</p>'
        blocks.append(f'<div class="crash"><h4>The app crashed during {_attempt_label(attempt)}: '
                      f'{esc(attempt.errorSummary)}{link}</h4>{body}</div>')
    return blocks


def _attempt_label(attempt: Attempt) -> str:
    """`attempt 2`, or `released app 1` for the released app's rerun (impact triage)."""
    return f"released app {attempt.number}" if attempt.apk == RELEASED else f"attempt {attempt.number}"


def _relative(path: Path, results_dir: Path) -> str:
    try:
        return path.relative_to(results_dir).as_posix()
    except ValueError:
        return ""


def _gallery(shots: Iterable[Shot], results_dir: Path, esc: _Html, budget: int) -> tuple[str, int]:
    figures = []
    for shot in shots:
        relative = _relative(shot.path, results_dir)
        uri = image_data_uri(shot.path) if budget > 0 else None
        link = f'<a href="{esc.href(relative)}">{esc(relative)}</a>' if relative else esc(shot.path.name)
        if uri is None:
            why = "not embedded (image limit reached)" if budget <= 0 else "could not be read as an image"
            figures.append(f'<figure class="missing"><figcaption>{esc(shot.caption)}: {esc(why)}; {link}'
                           "</figcaption></figure>")
            continue
        budget -= 1
        image = f'<img src="{uri}" alt="{esc(shot.caption)}">'
        if relative:
            image = f'<a href="{esc.href(relative)}">{image}</a>'
        figures.append(f"<figure>{image}<figcaption>{esc(shot.caption)}</figcaption></figure>")
    return f'<div class="gallery">{"".join(figures)}</div>', budget


def _videos(flow: FlowResult, esc: _Html) -> str:
    """The screen recordings of the attempts that did not pass (a <video> per kept file), or why there is none."""
    items = []
    for attempt in flow.attempts:
        if attempt.status == Status.PASSED:
            continue
        kept = [p for p in videos_of(attempt.artifactPaths) or [attempt.video] if p and inside(Path("."), p)]
        for path in kept:
            items.append(f'<figure class="video"><video controls preload="metadata" src="{esc.href(path)}"></video>'
                         f'<figcaption>{_attempt_label(attempt)}: <a href="{esc.href(path)}">{esc(path)}</a>'
                         "</figcaption></figure>")
        if attempt.noVideo:
            items.append(f'<p class="muted no-video">{_attempt_label(attempt)}: '
                         f'{esc("no screen recording: " if not kept else "")}{esc(attempt.noVideo)}</p>')
    if not items:
        return ""
    return f'<h4>Screen recordings</h4><div class="gallery videos">{"".join(items)}</div>'


def _output(flow: FlowResult, esc: _Html, *, open_: bool) -> str:
    streams = [(name, output_tail(text)) for name, text in (("stdout", flow.stdout), ("stderr", flow.stderr))]
    shown = [(name, text) for name, text in streams if text.strip()]
    if not shown:
        return '<p class="muted">No output was recorded.</p>'
    body = "".join(f'<p class="stream">{name}</p><pre class="output">{esc(text)}</pre>' for name, text in shown)
    built = flow.build_attempts()
    attempt = f" of attempt {built[-1].number}" if built else ""
    return (f'<details class="output"{" open" if open_ else ""}><summary>Last {OUTPUT_TAIL_LINES} lines of output'
            f"{esc(attempt)}</summary>{body}</details>")


def _artifacts(flow: FlowResult, esc: _Html) -> str:
    links = [
        f'<li><a href="{esc.href(path)}">{esc(path)}</a></li>'
        for path in flow.artifactPaths if inside(Path("."), path) is not None
    ]
    if not links:
        return ""
    return (f'<details class="artifacts"><summary>Artifacts ({len(links)} files)</summary>'
            f'<ul>{"".join(links)}</ul></details>')


_CSS = """
:root{--pass:#1a7f37;--fail:#cf222e;--error:#8250df;--timeout:#bc4c00;--flaky:#9a6700;--skip:#6e7781;
--ink:#1f2328;--muted:#656d76;--line:#d0d7de;--paper:#fff;--soft:#f6f8fa;color-scheme:light}
*{box-sizing:border-box}
body{margin:0 auto;max-width:1200px;padding:16px 24px 48px;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,
"DejaVu Sans",sans-serif;color:var(--ink);background:var(--paper)}
h1{font-size:24px;margin:0 0 4px}h2{font-size:18px;margin:28px 0 8px}h3{font-size:16px;margin:0 0 8px}
h4{font-size:14px;margin:14px 0 6px}
code,pre{font:12px/1.4 ui-monospace,"SFMono-Regular","DejaVu Sans Mono",Menlo,Consolas,monospace}
a{color:#0969da}
.muted{color:var(--muted)}
header.run{border:1px solid var(--line);border-left:8px solid var(--skip);border-radius:8px;padding:16px 20px;
background:var(--soft)}
header.verdict-pass{border-left-color:var(--pass)}header.verdict-fail{border-left-color:var(--fail)}
header.verdict-error{border-left-color:var(--error)}
.verdict{display:inline-block;padding:2px 10px;border-radius:6px;color:#fff;background:var(--skip)}
.verdict-pass .verdict{background:var(--pass)}.verdict-fail .verdict{background:var(--fail)}
.verdict-error .verdict{background:var(--error)}
.headline{font-size:16px;font-weight:600;margin:6px 0 10px}
.facts{display:grid;grid-template-columns:max-content 1fr;gap:2px 16px;margin:8px 0 0}
.facts dt{color:var(--muted)}.facts dd{margin:0;overflow-wrap:anywhere}
.chips{list-style:none;padding:0;margin:0;display:flex;flex-wrap:wrap;gap:6px}
.chip{display:inline-block;padding:1px 8px;border-radius:999px;font-size:12px;font-weight:600;color:#fff;
background:var(--skip)}
.st-passed.chip{background:var(--pass)}.st-failed.chip{background:var(--fail)}.st-error.chip{background:var(--error)}
.st-timed_out.chip{background:var(--timeout)}.st-flaky.chip{background:var(--flaky)}
.stopped{margin-top:12px;border:1px solid var(--error);border-radius:6px;padding:8px 12px;background:#fbefff}
.stopped pre{margin:6px 0 0;white-space:pre-wrap}
svg.timeline{width:100%;height:auto;display:block;font-family:system-ui,"DejaVu Sans",sans-serif}
svg .lane{fill:var(--soft)}svg .tick{stroke:var(--line);stroke-width:1}
svg .axis{font-size:11px;fill:var(--muted);text-anchor:middle}
svg .device{font-size:12px;fill:var(--ink);text-anchor:end}svg .idle{font-size:11px;fill:var(--muted)}
svg .bar rect{fill:var(--skip)}svg .st-passed rect{fill:var(--pass)}svg .st-failed rect{fill:var(--fail)}
svg .st-error rect{fill:var(--error)}svg .st-timed_out rect{fill:var(--timeout)}svg .st-flaky rect{fill:var(--flaky)}
svg .bar-label{font-size:11px;fill:#fff;pointer-events:none}
.legend{margin-top:6px}
ol.index{columns:2 320px;padding-left:20px}ol.index li{margin:2px 0}ol.index a{text-decoration:none;color:var(--ink)}
article.flow{border:1px solid var(--line);border-left:6px solid var(--skip);border-radius:8px;padding:12px 16px;
margin:14px 0;break-inside:avoid}
article.st-passed{border-left-color:var(--pass)}article.st-failed{border-left-color:var(--fail)}
article.st-error{border-left-color:var(--error)}article.st-timed_out{border-left-color:var(--timeout)}
article.st-flaky{border-left-color:var(--flaky)}
code.file{color:var(--muted);font-weight:400}
.error-summary{margin:10px 0;padding:8px 12px;border-radius:6px;background:#ffebe9;color:#82071e;
font-family:ui-monospace,"DejaVu Sans Mono",monospace;font-size:12px;white-space:pre-wrap;overflow-wrap:anywhere}
table.attempts{border-collapse:collapse;margin:10px 0;font-size:12px;width:100%}
.impact{font-weight:600}.impact-current-users{color:var(--fail)}.impact-new-build-only{color:var(--timeout)}
.impact-unknown{color:var(--skip)}
table.attempts th,table.attempts td{border-bottom:1px solid var(--line);padding:3px 8px;text-align:left;
vertical-align:top}
table.attempts td:last-child{overflow-wrap:anywhere}
.gallery{display:flex;flex-wrap:wrap;gap:12px}
figure{margin:0;max-width:240px}figure img{display:block;max-width:240px;max-height:480px;height:auto;
border:1px solid var(--line);border-radius:6px;background:var(--soft)}
figcaption{font-size:11px;color:var(--muted);overflow-wrap:anywhere;margin-top:2px}
figure.missing{max-width:none}
figure.video video{display:block;max-width:240px;max-height:480px;border:1px solid var(--line);border-radius:6px;
background:#000}
.videos p.no-video{flex-basis:100%;margin:0}
details{margin:10px 0}summary{cursor:pointer;font-weight:600}
p.stream{margin:6px 0 2px;color:var(--muted);font-size:12px}
pre.output{margin:0;padding:8px 10px;background:#161b22;color:#e6edf3;border-radius:6px;white-space:pre-wrap;
overflow-wrap:anywhere;max-height:480px;overflow:auto}
div.crash h4{overflow-wrap:anywhere}
pre.crash{margin:0;padding:8px 10px;background:#fff8f7;color:#82071e;border:1px solid #ffcecb;border-radius:6px;
white-space:pre;overflow:auto;max-height:480px;tab-size:4}
details.artifacts ul{margin:4px 0;padding-left:20px;font-size:12px}
details.artifacts li{overflow-wrap:anywhere}
.chip.quarantined{background:#57606a}.chip.quarantined a{color:#fff;text-decoration:none}
article.quarantined{border-style:dashed;border-left-style:solid}
.history{display:flex;flex-wrap:wrap;align-items:center;gap:6px 16px;margin:8px 0}
.history-facts{margin:0;font-size:12px;color:var(--muted)}
.strip rect{fill:var(--skip)}svg.strip .this-run rect{stroke:var(--ink);stroke-width:1.5}
svg.trend .durations{fill:none;stroke:#0969da;stroke-width:1.5}svg.trend .p95{stroke:var(--muted);stroke-dasharray:3 3}
svg.trend .this-run{fill:#0969da;stroke:var(--paper);stroke-width:1}
.chip.state-new{background:var(--fail)}.chip.state-still{background:#82071e}.chip.slow{background:var(--timeout)}
.history-legend .strip-legend{margin:4px 0 8px}
@media print{details{display:block}pre.output,pre.crash{max-height:none}}
""".strip()
