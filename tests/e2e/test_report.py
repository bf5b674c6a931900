"""report.html: rendered from real run records (`invoke validate` against the fake toolchain).

Structure tests parse the page with html.parser; the browser test renders it with Debian's headless
Chromium, driven over the DevTools protocol on `--remote-debugging-pipe` (file descriptors 3 and 4,
NUL-separated JSON: no port, no websocket library), and fails on any request that is not the page
itself or a data: URI, on any failed request and on any console error.
"""

from __future__ import annotations

import base64
import binascii
import fcntl
import io
import json
import os
import select
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest
from conftest import World
from PIL import Image
from prodval.report import BAR_STATUSES, IMAGE_BOX, render_report, timeline
from prodval.results import load_record

FAILURE = "fail:Element not found: Text matching regex: Save"
SCRIPT_NAME = '<script>alert("x")</script>'
# Looked up before the guard fixture narrows PATH to directories without Android tools.
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
IN_CI = bool(os.environ.get("CI"))  # the guard fixture removes CI from the environment of each test


# --- a small DOM from html.parser --------------------------------------------------------------------

VOID = {"meta", "link", "img", "br", "hr", "input", "source", "wbr"}


@dataclass
class Node:
    tag: str
    attrs: dict[str, str]
    content: list[Node | str] = field(default_factory=list)  # child elements and text, in document order

    @property
    def children(self) -> list[Node]:
        return [c for c in self.content if isinstance(c, Node)]

    @property
    def classes(self) -> set[str]:
        return set(self.attrs.get("class", "").split())

    def text(self) -> str:
        return "".join(c if isinstance(c, str) else c.text() for c in self.content)

    def walk(self) -> Iterator[Node]:
        yield self
        for child in self.children:
            yield from child.walk()

    def find_all(self, tag: str, cls: str = "") -> list[Node]:
        return [n for n in self.walk() if n.tag == tag and (not cls or cls in n.classes)]

    def find(self, tag: str, cls: str = "") -> Node:
        found = self.find_all(tag, cls)
        assert found, f"no <{tag} class={cls!r}>"
        return found[0]


class _Builder(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Node("#document", {})
        self.stack = [self.root]

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        node = Node(tag, {k: v or "" for k, v in attrs})
        self.stack[-1].content.append(node)
        if tag not in VOID:
            self.stack.append(node)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.stack[-1].content.append(Node(tag, {k: v or "" for k, v in attrs}))

    def handle_endtag(self, tag: str) -> None:
        if tag in VOID:
            return
        assert self.stack[-1].tag == tag, f"</{tag}> closes <{self.stack[-1].tag}>"
        self.stack.pop()

    def handle_data(self, data: str) -> None:
        self.stack[-1].content.append(data)


def parse(text: str) -> Node:
    builder = _Builder()
    builder.feed(text)
    builder.close()
    assert builder.stack == [builder.root], "unclosed elements"
    return builder.root


# --- runs ---------------------------------------------------------------------------------------------


def failing_run(world: World, **env: str) -> subprocess.CompletedProcess[str]:
    """One failing flow (two attempts), one flaky flow named like a script, one passing flow."""
    world.device()
    world.flow("login.yaml", tags=("smoke",), commands="- launchApp\n- takeScreenshot: home\n")
    world.flow("add-exercise.yaml", commands="""\
        - launchApp
        - tapOn: "Add exercise"
        - takeScreenshot: form
        - assertVisible: "Save"
        """)
    world.flow("weird.yaml", header=f"name: '{SCRIPT_NAME}'")
    world.scenario({"add-exercise.yaml": [FAILURE], "weird.yaml": [FAILURE, "pass"]})
    run = world.invoke("validate", **env)
    assert run.returncode == 1, run.stderr
    return run


def report(world: World, *args: str, **env: str) -> Node:
    run = world.invoke("report", *args, **env)
    assert run.returncode == 0, run.stderr
    assert "report: " in run.stdout
    return parse((world.results / "report.html").read_text(encoding="utf-8"))


def cards(page: Node) -> list[Node]:
    return page.find_all("article", "flow")


def card(page: Node, file_name: str) -> Node:
    return next(c for c in cards(page) if c.find("code", "file").text() == file_name)


def gallery_after(article: Node, heading: str) -> Node:
    """The gallery that follows the <h4> with this heading."""
    children = article.children
    index = next(i for i, n in enumerate(children) if n.tag == "h4" and n.text() == heading)
    return children[index + 1]


def decoded(src: str) -> Image.Image:
    head, _, data = src.partition(",")
    assert head.startswith("data:image/") and head.endswith(";base64")
    return Image.open(io.BytesIO(base64.b64decode(data, validate=True)))


# --- structure -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("layout", ["bundle", "flat"])
def test_report_of_a_failing_run(world: World, layout: str) -> None:
    world.extra_env["FAKE_MAESTRO_LAYOUT"] = layout
    failing_run(world)
    page = report(world)
    record = world.record()

    # self-contained and inert: no script, no stylesheet or image from anywhere else
    assert page.find_all("script") == []
    assert page.find("style").text().strip()
    for node in page.walk():
        if "src" in node.attrs and node.tag != "video":  # a screen recording is a file beside the page
            assert node.attrs["src"].startswith("data:image/"), node.attrs["src"][:80]
    csp = next(m for m in page.find_all("meta") if m.attrs.get("http-equiv") == "Content-Security-Policy")
    assert "default-src 'none'" in csp.attrs["content"]
    assert [link.attrs["href"] for link in page.find_all("link")] == ["data:,"]

    # header
    header = page.find("header", "run")
    assert header.find("span", "verdict").text() == "FAIL"
    assert header.find("p", "headline").text() == "1 of 3 flows failed against production"
    facts = dict(zip((dt.text() for dt in header.find_all("dt")), (dd.text() for dd in header.find_all("dd")),
                     strict=True))
    assert facts["Run"] == record["runId"] and "Run id" not in facts  # one id, the run's
    assert facts["Started"] == record["job"]["startTime"] and facts["Finished"] == record["job"]["endTime"]
    assert facts["Devices"] == "emulator-5554"
    assert facts["Environment"] == "production · SKIP_DATA_CLEANUP=true"

    # failed first, then flaky, then passed; the index links to the cards
    order = [c.find("code", "file").text() for c in cards(page)]
    assert order == ["add-exercise.yaml", "weird.yaml", "login.yaml"]
    assert [a.attrs["href"] for a in page.find("ol", "index").find_all("a")] == [f"#flow-{n}" for n in (1, 2, 3)]
    assert [c.attrs["id"] for c in cards(page)] == ["flow-1", "flow-2", "flow-3"]

    failed = card(page, "add-exercise.yaml")
    assert "st-failed" in failed.classes
    assert failed.find("p", "error-summary").text() == "Element not found: Text matching regex: Save"
    failed_facts = dict(zip((dt.text() for dt in failed.find_all("dt")), (dd.text() for dd in failed.find_all("dd")),
                            strict=True))
    assert failed_facts["Attempts"] == "2 (1: failed, 2: failed)"
    assert failed_facts["Device"] == "emulator-5554"
    assert failed_facts["Exit code"] == "1"
    assert len(failed.find("table", "attempts").find("tbody").find_all("tr")) == 2
    # one failure screenshot per failed attempt, as real images: the fake's red 32x64 PNG
    shots = gallery_after(failed, "Failure screenshots").find_all("img")
    assert [img.attrs["alt"].split(":")[0] for img in shots] == ["attempt 1", "attempt 2"]
    for img in shots:
        image = decoded(img.attrs["src"])
        assert image.size == (32, 64)
        assert image.convert("RGB").getpixel((16, 32))[0] > 200  # red
    # the flow's own takeScreenshot, from the final attempt: green
    own = gallery_after(failed, "Screenshots taken by the flow").find_all("img")
    assert len(own) == 1
    assert decoded(own[0].attrs["src"]).convert("RGB").getpixel((16, 32))[1] > 150
    # each image links to its file in the results folder
    for img_link in gallery_after(failed, "Failure screenshots").find_all("a"):
        target = world.results / unquote(img_link.attrs["href"])
        assert target.is_file() and target.suffix == ".png"
    output = failed.find("details", "output")
    assert "open" in output.attrs
    assert "[Failed] add-exercise" in output.find("pre", "output").text()
    artifacts = [unquote(a.attrs["href"]) for a in failed.find("details", "artifacts").find_all("a")]
    assert artifacts == world.flow_result("add-exercise.yaml")["artifactPaths"]
    assert all((world.results / path).is_file() for path in artifacts)

    # a flow named like markup is shown as text; its failure screenshot from attempt 1 is kept
    flaky = card(page, "weird.yaml")
    assert "st-flaky" in flaky.classes
    assert flaky.find("h3").text().startswith(f"flaky {SCRIPT_NAME}")
    assert len(gallery_after(flaky, "Failure screenshots").find_all("img")) == 1
    passed = card(page, "login.yaml")
    assert "open" not in passed.find("details", "output").attrs
    assert len(gallery_after(passed, "Screenshots taken by the flow").find_all("img")) == 1
    assert [h.text() for h in passed.find_all("h4")] == ["Screenshots taken by the flow"]

    # timeline: one lane for the device, one bar per attempt, linked to its card
    svg = page.find("svg", "timeline")
    assert len(svg.find_all("rect", "lane")) == 1
    assert svg.find("text", "device").text() == "emulator-5554"
    bars = svg.find_all("g", "bar")
    assert len(bars) == sum(len(f["attempts"]) for f in record["flows"]) == 5
    titles = [bar.find("title").text() for bar in bars]
    assert sum("add-exercise.yaml · attempt" in t for t in titles) == 2
    assert {a.attrs["href"] for a in svg.find_all("a")} == {"#flow-1", "#flow-2", "#flow-3"}


def test_markup_in_names_and_output_is_escaped(world: World) -> None:
    failing_run(world)
    report(world)
    text = (world.results / "report.html").read_text()
    assert SCRIPT_NAME in world.record()["flows"][2]["name"] + world.record()["flows"][2]["stdout"]
    assert SCRIPT_NAME not in text
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in text
    assert "<script" not in text.lower()


def test_secrets_known_at_report_time_are_masked(world: World) -> None:
    token = "ghp_reportSECRET1234567890"
    world.device()
    world.flow("login.yaml")
    world.scenario({"login.yaml": [f"fail:Element not found: {token}"]})
    assert world.invoke("validate", "--retries", "0").returncode == 1
    assert token in (world.results / "results.json").read_text()  # nobody knew it was a secret then
    run = world.invoke("report", GITHUB_TOKEN=token)
    assert run.returncode == 0, run.stderr
    text = (world.results / "report.html").read_text()
    assert token not in text
    assert "Element not found: ***" in text


def test_large_and_broken_screenshots(world: World) -> None:
    """A phone-sized screenshot is scaled down; a file that is not an image is linked, not embedded."""
    world.device()
    world.flow("login.yaml")
    world.flow("other.yaml")
    world.scenario({"login.yaml": [FAILURE], "other.yaml": [FAILURE]})
    assert world.invoke("validate", "--retries", "0").returncode == 1
    big, broken = sorted(world.results.glob("flows/*/attempt-1/debug/*/screenshots/*.png"))
    pixels = os.urandom(1080 * 2400 * 3)  # noise: the worst case for compression
    Image.frombytes("RGB", (1080, 2400), pixels).save(big)
    broken.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    page = report(world)
    size = (world.results / "report.html").stat().st_size
    assert size < big.stat().st_size / 4
    scaled = [decoded(img.attrs["src"]) for img in page.find_all("img")]
    assert len(scaled) == 1
    assert scaled[0].format == "JPEG"
    assert scaled[0].width <= IMAGE_BOX[0] and scaled[0].height <= IMAGE_BOX[1]
    assert scaled[0].size == (432, 960)  # aspect ratio kept
    missing = page.find("figure", "missing")
    assert "could not be read as an image" in missing.text()
    assert unquote(missing.find("a").attrs["href"]) == broken.relative_to(world.results).as_posix()


def test_timeline_lanes_show_idle_devices(world: World) -> None:
    failing_run(world)
    record = load_record(world.results / "results.json")
    assert record is not None
    record.devices.append("emulator-5556")  # a device that took no flow
    plan = timeline(record)
    assert [lane.device for lane in plan.lanes] == ["emulator-5554", "emulator-5556"]
    busy, idle = plan.lanes
    assert idle.bars == ()
    assert len(busy.bars) == 5
    starts = [bar.start for bar in busy.bars]
    assert starts == sorted(starts) and starts[0] == 0
    for before, after in zip(busy.bars, busy.bars[1:], strict=False):  # one device runs one flow at a time
        assert before.start + before.duration <= after.start + 0.01
    assert plan.span == pytest.approx(max(b.start + b.duration for b in busy.bars))


def test_header_names_the_app_that_build_apk_recorded(world: World) -> None:
    failing_run(world)
    record = load_record(world.results / "results.json")
    assert record is not None
    # the keys build-apk writes (prodval.apkfile.ApkInfo.to_record)
    record.apk = {"packageName": "com.example.exerciselog", "versionName": "1.4.2", "versionCode": 42}
    page = parse(render_report(record, world.results, commit="abc1234"))
    header = page.find("header", "run")
    facts = dict(zip((dt.text() for dt in header.find_all("dt")), (dd.text() for dd in header.find_all("dd")),
                     strict=True))
    assert facts["App"] == "com.example.exerciselog 1.4.2 (42)"
    assert facts["Deployed commit"] == "abc1234"


def test_report_of_a_run_that_could_not_validate(world: World) -> None:
    world.flow("login.yaml")
    run = world.invoke("validate")  # no device
    assert run.returncode == 2
    page = parse((world.results / "report.html").read_text())
    assert page.find("span", "verdict").text() == "ERROR"
    assert "0 of 1 booted device(s) connected, and no emulator can be booted here" in page.find("div", "stopped").text()
    assert page.find("section", "timeline").find("p").text() == "No device was used."
    (only,) = cards(page)
    assert "st-not_run" in only.classes
    assert only.find("p", "error-summary").text().startswith(  # the chip says "not run"
        "0 of 1 booted device(s) connected, and no emulator can be booted here (missing: ANDROID_HOME")


def test_report_without_a_record(world: World) -> None:
    run = world.invoke("report", "--results-dir", "nowhere")
    assert run.returncode == 2
    assert "no run record at nowhere/results.json" in run.stderr
    assert "fix: run `invoke validate` first" in run.stderr


def test_validate_writes_the_report_and_summary_links_it(world: World) -> None:
    failing_run(world, GITHUB_RUN_ID="987", GITHUB_JOB="validate", GITHUB_REPOSITORY="acme/app",
                GITHUB_SERVER_URL="https://github.com", GITHUB_SHA="0123456789abcdef0123456789abcdef01234567")
    page = parse((world.results / "report.html").read_text())
    header = page.find("header", "run")
    facts = dict(zip((dt.text() for dt in header.find_all("dt")), header.find_all("dd"), strict=True))
    assert facts["Deployed commit"].text() == "0123456789abcdef0123456789abcdef01234567"
    assert facts["Run"].find("a").attrs["href"] == "https://github.com/acme/app/actions/runs/987"
    assert "report.html" in world.record()["job"]["artifactPaths"]
    summary = (world.results / "summary.md").read_text()
    assert "[HTML report](report.html)" in summary
    assert "(https://github.com/acme/app/actions/runs/987#artifacts)" in summary


# --- the browser ---------------------------------------------------------------------------------------


class DevTools:
    """Chromium's DevTools protocol over --remote-debugging-pipe: we write fd 3, Chromium writes fd 4."""

    def __init__(self, proc: subprocess.Popen[bytes], to_browser: int, from_browser: int) -> None:
        self.proc, self.to_browser, self.from_browser = proc, to_browser, from_browser
        self.buffer = b""
        self.events: list[dict[str, Any]] = []
        self.next_id = 0

    def _read(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self.buffer:
            left = deadline - time.monotonic()
            assert left > 0, "Chromium did not answer in time"
            ready, _, _ = select.select([self.from_browser], [], [], left)
            if ready:
                chunk = os.read(self.from_browser, 1 << 20)
                assert chunk, f"Chromium closed the pipe (exit {self.proc.poll()})"
                self.buffer += chunk
        message, _, self.buffer = self.buffer.partition(b"\0")
        data: dict[str, Any] = json.loads(message)
        return data

    def call(self, method: str, session: str = "", timeout: float = 60, **params: Any) -> dict[str, Any]:
        self.next_id += 1
        message: dict[str, Any] = {"id": self.next_id, "method": method, "params": params}
        if session:
            message["sessionId"] = session
        os.write(self.to_browser, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            data = self._read(deadline)
            if data.get("id") == self.next_id:
                assert "error" not in data, f"{method}: {data['error']}"
                result: dict[str, Any] = data.get("result", {})
                return result
            self.events.append(data)

    def wait_for(self, method: str, timeout: float = 60) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        for event in self.events:
            if event.get("method") == method:
                return event
        while True:
            data = self._read(deadline)
            self.events.append(data)
            if data.get("method") == method:
                return data

    def of(self, method: str) -> list[dict[str, Any]]:
        return [e["params"] for e in self.events if e.get("method") == method]

    def open(self, url: str, *, width: int = 0, height: int = 0) -> str:
        """A new tab with Page, Runtime, Log and Network events on (a `width` x `height` viewport when given),
        `url` loaded in it; its session id."""
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        session: str = self.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.call(f"{domain}.enable", session)
        if width and height:
            self.call("Emulation.setDeviceMetricsOverride", session, width=width, height=height, deviceScaleFactor=1,
                      mobile=False)
        self.call("Page.navigate", session, url=url)
        self.wait_for("Page.loadEventFired")
        return session


# Chromium's pipe is fixed at fds 3 and 4; a tiny exec wrapper puts our pipe ends there (no preexec_fn).
_ON_FDS_3_AND_4 = """import os, sys
os.dup2(int(sys.argv[1]), 3); os.dup2(int(sys.argv[2]), 4)
os.close(int(sys.argv[1])); os.close(int(sys.argv[2]))
os.execv(sys.argv[3], sys.argv[3:])"""


def _high_fd(fd: int) -> int:
    high = fcntl.fcntl(fd, fcntl.F_DUPFD, 10)
    os.close(fd)
    return high


@pytest.fixture
def chromium(tmp_path: Path) -> Iterator[DevTools]:
    if CHROMIUM is None:
        if IN_CI:
            pytest.fail("chromium is not installed, and CI must run the browser test (.ci/run installs it)")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    browser_reads, we_write = (_high_fd(fd) for fd in os.pipe())
    we_read, browser_writes = (_high_fd(fd) for fd in os.pipe())

    wrapper = [sys.executable, "-c", _ON_FDS_3_AND_4, str(browser_reads), str(browser_writes)]
    argv = [*wrapper, CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run", "--no-default-browser-check",
            "--remote-debugging-pipe", f"--user-data-dir={tmp_path / 'chromium-profile'}", "about:blank"]
    env = {**os.environ, "PATH": "/usr/local/bin:/usr/bin:/bin"}
    with open(tmp_path / "chromium.log", "wb") as log:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env,
                                pass_fds=(browser_reads, browser_writes), start_new_session=True)
    os.close(browser_reads)
    os.close(browser_writes)
    try:
        yield DevTools(proc, we_write, we_read)
    finally:
        os.close(we_write)
        os.close(we_read)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait(timeout=10)


def test_browser_renders_a_failing_run_without_requests_or_errors(world: World, chromium: DevTools,
                                                                  tmp_path: Path) -> None:
    world.extra_env["FAKE_MAESTRO_LAYOUT"] = "flat"
    failing_run(world)
    report(world)
    # a large screenshot too, so that a scaled JPEG is decoded by the browser as well
    first = sorted(world.results.glob("flows/add-exercise.yaml/attempt-1/debug/screenshot-❌-*.png"))[0]
    Image.new("RGB", (1080, 2400), (200, 30, 30)).save(first)
    report(world)
    page_url = (world.results / "report.html").resolve().as_uri()

    session = chromium.open(page_url, width=1200, height=900)
    state = chromium.call("Runtime.evaluate", session, returnByValue=True, expression="""JSON.stringify({
        title: document.title,
        images: [...document.images].map(i => [i.complete, i.naturalWidth, i.naturalHeight]),
        cards: document.querySelectorAll('article.flow').length,
        firstCard: document.querySelector('article.flow h3').textContent,
        bars: document.querySelectorAll('svg.timeline g.bar').length,
        svgWidth: document.querySelector('svg.timeline').getBoundingClientRect().width,
        scripts: document.scripts.length,
        overflowX: document.documentElement.scrollWidth > document.documentElement.clientWidth,
    })""")
    facts = json.loads(state["result"]["value"])
    height = chromium.call("Page.getLayoutMetrics", session)["cssContentSize"]["height"]
    shot = chromium.call("Page.captureScreenshot", session, format="png", captureBeyondViewport=True,
                         clip={"x": 0, "y": 0, "width": 1200, "height": min(height, 6000), "scale": 1})
    png = tmp_path / "report.png"
    try:
        png.write_bytes(base64.b64decode(shot["data"]))
    except binascii.Error as exc:  # pragma: no cover - a broken answer is a failure, said plainly
        raise AssertionError(f"screenshot is not base64: {exc}") from None
    chromium.call("Browser.close")
    if os.environ.get("REPORT_PNG"):  # to look at it: REPORT_PNG=/tmp/report.png pytest -k browser
        shutil.copy(png, os.environ["REPORT_PNG"])

    requests = [p["request"]["url"] for p in chromium.of("Network.requestWillBeSent")]
    videos = {(world.results / a["video"]).resolve().as_uri()  # the failed attempts' screen recordings
              for f in world.record()["flows"] for a in f["attempts"] if a["video"]}
    assert videos  # (tests/e2e/test_video.py checks that they play)
    assert [url for url in requests if not url.startswith("data:") and url not in videos] == [page_url]
    assert chromium.of("Network.loadingFailed") == []
    errors = [p["entry"] for p in chromium.of("Log.entryAdded") if p["entry"]["level"] == "error"]
    errors += [p for p in chromium.of("Runtime.consoleAPICalled") if p["type"] in ("error", "assert")]
    assert errors == [], errors
    assert chromium.of("Runtime.exceptionThrown") == []

    assert facts["title"].startswith("Production Validation: fail")
    assert facts["scripts"] == 0
    assert facts["cards"] == 3 and facts["bars"] == 5
    assert facts["firstCard"].startswith("failed add-exercise")
    assert facts["images"] and all(complete and width > 0 for complete, width, _ in facts["images"])
    assert [w for _, w, h in facts["images"] if (w, h) == (432, 960)], "the large screenshot was not scaled"
    assert facts["svgWidth"] > 800
    assert not facts["overflowX"]
    with Image.open(png) as rendered:
        assert rendered.width == 1200 and rendered.height > 900
        # the verdict badge is drawn in the failure red near the top left
        rgb = rendered.convert("RGB").crop((0, 0, 400, 120)).tobytes()
        reds = [i for i in range(0, len(rgb), 3) if rgb[i] > 180 and rgb[i + 1] < 80 and rgb[i + 2] < 80]
        assert len(reds) > 200


def test_browser_colours_every_bar_as_its_legend_says(world: World, chromium: DevTools) -> None:
    """Every status a timeline bar can have is in the legend, in the same colour as its bars (issue 15: the
    legend lacked `flaky`, whose bars were grey)."""
    failing_run(world)  # a failed, a flaky and a passed flow
    data = world.record()
    for status, flow in zip(("error", "timed_out"), data["flows"][:2], strict=True):
        flow["attempts"].append({**flow["attempts"][-1], "number": len(flow["attempts"]) + 1, "status": status})
    (world.results / "results.json").write_text(json.dumps(data))
    report(world)
    session = chromium.open((world.results / "report.html").resolve().as_uri())
    state = chromium.call("Runtime.evaluate", session, returnByValue=True, expression="""JSON.stringify({
        legend: [...document.querySelectorAll('.legend .chip')].map(c =>
            [c.className.match(/st-(\\w+)/)[1], getComputedStyle(c).backgroundColor]),
        bars: [...document.querySelectorAll('svg.timeline g.bar')].map(g =>
            [g.getAttribute('class').match(/st-(\\w+)/)[1], getComputedStyle(g.querySelector('rect')).fill]),
    })""")
    chromium.call("Browser.close")
    facts = json.loads(state["result"]["value"])
    legend = dict(facts["legend"])
    assert [status for status, _ in facts["legend"]] == list(BAR_STATUSES)
    assert {status for status, _ in facts["bars"]} == set(BAR_STATUSES)  # this run draws every kind of bar
    for status, fill in facts["bars"]:
        assert fill == legend[status], (status, fill, legend)
    assert len(set(legend.values())) == len(legend)  # each status its own colour
