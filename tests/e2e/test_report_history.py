"""report.html's history in a real browser (headless Chromium, as tests/e2e/test_report.py drives it): each
flow's strip of outcomes is painted in the colours of its legend, which are the timeline's, every square has
its title, this run is outlined, and the duration trend draws every run with this one marked; no script, no
request, no error."""

from __future__ import annotations

import base64
import io
import json

from conftest import World
from PIL import Image
from test_report import DevTools, chromium, failing_run, report  # noqa: F401 (chromium is a fixture)

STRIPS = {
    "add-exercise.yaml": ["passed", "error", "timed_out", "flaky", "failed", "failed"],
    "weird.yaml": ["passed", "passed", "flaky"],
    "login.yaml": ["failed", "passed", "passed", "passed"],
}
DURATIONS = {name: [8000 + 1000 * i * (-1) ** i for i in range(len(strip))] for name, strip in STRIPS.items()}


def with_history(world: World) -> dict[str, dict[str, object]]:
    """The failing run of test_report (failed, flaky, passed flows), each flow given a history."""
    failing_run(world)
    data = world.record()
    for flow in data["flows"]:
        strip = STRIPS[flow["flowFileName"]]
        flow["history"] = {"strip": strip, "runs": len(strip) - 1, "passRate": 0.5, "flakyRate": 0.2, "failRate": 0.3,
                           "failingSince": None, "state": "", "p50": 8000, "p95": 9000, "slow": False,
                           "durations": DURATIONS[flow["flowFileName"]]}
    data["flows"][0]["history"].update(state="still failing", failingSince={
        "runId": "r1", "commit": "abc1234def", "startTime": "t", "runsAgo": 1})
    (world.results / "results.json").write_text(json.dumps(data))
    report(world)
    return {f["flowFileName"]: f for f in data["flows"]}


def test_browser_paints_each_strip_in_its_legends_colours_and_draws_the_trend(
        world: World, chromium: DevTools) -> None:  # noqa: F811 (the fixture imported above)
    with_history(world)
    page_url = (world.results / "report.html").resolve().as_uri()
    session = chromium.open(page_url, width=1200, height=900)
    state = chromium.call("Runtime.evaluate", session, returnByValue=True, expression="""JSON.stringify({
        legend: [...document.querySelectorAll('.strip-legend .chip')].map(c =>
            [c.className.match(/st-(\\w+)/)[1], getComputedStyle(c).backgroundColor]),
        timelineLegend: [...document.querySelectorAll('.timeline .legend .chip')].map(c =>
            [c.className.match(/st-(\\w+)/)[1], getComputedStyle(c).backgroundColor]),
        cards: [...document.querySelectorAll('article.flow')].map(card => ({
            file: card.querySelector('code.file').textContent,
            squares: [...card.querySelectorAll('svg.strip g.sq')].map(g => ({
                status: g.getAttribute('class').match(/st-(\\w+)/)[1],
                fill: getComputedStyle(g.querySelector('rect')).fill,
                stroke: getComputedStyle(g.querySelector('rect')).stroke,
                title: g.querySelector('title').textContent,
                box: (r => [r.x, r.y, r.width, r.height])(g.querySelector('rect').getBoundingClientRect()),
            })),
            points: card.querySelector('svg.trend polyline').points.numberOfItems,
            last: (p => [p.x, p.y])(card.querySelector('svg.trend polyline').points.getItem(
                card.querySelector('svg.trend polyline').points.numberOfItems - 1)),
            marker: (c => [c.cx.baseVal.value, c.cy.baseVal.value, getComputedStyle(c).fill])(
                card.querySelector('svg.trend circle.this-run')),
            line: getComputedStyle(card.querySelector('svg.trend polyline')).stroke,
            trendBox: (r => [r.width, r.height])(card.querySelector('svg.trend').getBoundingClientRect()),
        })),
        scripts: document.scripts.length,
        overflowX: document.documentElement.scrollWidth > document.documentElement.clientWidth,
    })""")
    facts = json.loads(state["result"]["value"])
    failed_card = facts["cards"][0]
    x, y, width, height = failed_card["squares"][4]["box"]  # a failed square: painted red on the screen
    shot = chromium.call("Page.captureScreenshot", session, format="png", captureBeyondViewport=True,
                         clip={"x": x, "y": y, "width": width, "height": height, "scale": 1})
    chromium.call("Browser.close")

    requests = [p["request"]["url"] for p in chromium.of("Network.requestWillBeSent")]
    videos = {(world.results / a["video"]).resolve().as_uri()  # the failed attempts' screen recordings, beside it
              for f in world.record()["flows"] for a in f["attempts"] if a["video"]}
    assert [url for url in requests if not url.startswith("data:") and url not in videos] == [page_url]
    errors = [p["entry"] for p in chromium.of("Log.entryAdded") if p["entry"]["level"] == "error"]
    assert errors == [] and chromium.of("Runtime.exceptionThrown") == []
    assert facts["scripts"] == 0 and not facts["overflowX"]

    legend = dict(facts["legend"])
    assert legend == dict(facts["timelineLegend"])  # the same statuses in the same colours as the timeline's
    assert len(set(legend.values())) == len(legend)
    assert [card["file"] for card in facts["cards"]] == ["add-exercise.yaml", "weird.yaml", "login.yaml"]
    for card in facts["cards"]:
        strip = STRIPS[card["file"]]
        assert [square["status"] for square in card["squares"]] == strip
        for index, square in enumerate(card["squares"]):
            assert square["fill"] == legend[square["status"]], (card["file"], square)
            ago = len(strip) - 1 - index
            assert square["title"].startswith("this run: " if ago == 0 else f"{ago} run")
            assert square["box"][2] > 5 and square["box"][3] > 5  # drawn, not collapsed
        assert card["squares"][-1]["stroke"] != "none"  # this run outlined
        assert all(square["stroke"] == "none" for square in card["squares"][:-1])
        xs = [square["box"][0] for square in card["squares"]]
        assert xs == sorted(xs)  # oldest first, left to right
        assert card["points"] == len(DURATIONS[card["file"]])
        assert card["marker"][:2] == card["last"]  # this run marked at the last point
        assert card["marker"][2] != "none" and card["line"] != "none"
        assert card["trendBox"][0] > 100 and card["trendBox"][1] > 20
    with Image.open(io.BytesIO(base64.b64decode(shot["data"]))) as square_png:
        r, g, b = square_png.convert("RGB").getpixel((square_png.width // 2, square_png.height // 2))
        assert r > 180 and g < 80 and b < 80, (r, g, b)  # the failure red
