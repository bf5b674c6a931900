"""The app's own crash during a flow is that flow's failure, with its stack trace: `invoke validate` against
the fakes, whose maestro logs a scripted crash block on the device while the flow runs (scenario "logcat")
and whose adb streams it to the run's logcat capture as it is logged."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Any

import pytest
from conftest import World, alive
from prodval.console import Console
from prodval.crashes import MARK_TAG, Marks
from prodval.devices import Adb
from test_killed_run import processes_of, wait_for
from test_report import DevTools, card, chromium, parse, report  # noqa: F401 (chromium: a fixture)

APP = "com.example.exerciselog"
CRASH = "java.lang.IllegalStateException: Cart is empty"
CAUSE = "java.util.NoSuchElementException: List is empty."
CART = '- launchApp\n- tapOn: "Add exercise"\n- assertVisible: "Exercises"\n'
SECRET = "s3cr3t-cookie-4711"


@pytest.fixture
def shop(world: World) -> World:
    world.device()
    world.flow("cart.yaml", commands=CART)
    world.flow("login.yaml")
    return world


def attempt_dir(world: World, flow: str, number: int) -> Path:
    return world.results / "flows" / flow / f"attempt-{number}"


def logcat(world: World) -> str:
    return (world.results / "devices" / "emulator-5554" / "logcat.txt").read_text()


def crash_files(world: World) -> list[str]:
    return sorted(p.relative_to(world.results).as_posix() for p in world.results.rglob("crash.txt"))


def test_a_crash_during_a_flow_fails_it_with_the_exception_line(shop: World) -> None:
    run = shop.scenario(logcat={"cart.yaml": {"crash": CRASH, "caused_by": CAUSE}}).invoke("validate")
    assert run.returncode == 1, run.stdout[-3000:] + run.stderr
    cart = shop.flow_result("cart.yaml")
    assert cart["status"] == "failed" and cart["errorSummary"] == CRASH
    assert [(a["status"], a["crash"], a["errorSummary"]) for a in cart["attempts"]] == [("failed", True, CRASH)] * 2
    for number in (1, 2):
        assert f"flows/cart.yaml/attempt-{number}/crash.txt" in cart["attempts"][number - 1]["artifactPaths"]
        assert f"flows/cart.yaml/attempt-{number}/crash.txt" in cart["artifactPaths"]
        block = (attempt_dir(shop, "cart.yaml", number) / "crash.txt").read_text().splitlines()
        assert block[0].endswith(" E AndroidRuntime: FATAL EXCEPTION: main")
        assert block[1].endswith(f" E AndroidRuntime: Process: {APP}, PID: " + block[0].split()[2])
        assert block[2].endswith(f" E AndroidRuntime: {CRASH}")
        assert any(line.endswith(f"Caused by: {CAUSE}") for line in block)
        assert sum("\tat " in line for line in block) > 5
        assert not any("Sending signal" in line or "prodval" in line for line in block)
    # Maestro itself only saw an element missing (its CLI does not detect crashes on Android)
    assert "Element not found: Text matching regex: Exercises" in cart["stdout"]
    # the other flow, on the same device right after, is not blamed for the crash before it
    login = shop.flow_result("login.yaml")
    assert login["status"] == "passed" and not login["attempts"][0]["crash"]
    assert crash_files(shop) == ["flows/cart.yaml/attempt-1/crash.txt", "flows/cart.yaml/attempt-2/crash.txt"]
    assert logcat(shop).count("FATAL EXCEPTION: main") == 2  # the whole log stays as it was captured
    assert f"cart.yaml failed: {CRASH}" in run.stderr
    assert CRASH in (shop.results / "summary.md").read_text()


def test_a_crash_is_a_failure_even_when_maestro_looks_like_infrastructure(shop: World) -> None:
    run = shop.scenario({"cart.yaml": "infra:grpc"}, logcat={"cart.yaml": {"crash": CRASH}}).invoke("validate")
    assert run.returncode == 1, run.stdout[-3000:] + run.stderr  # fail, not error
    cart = shop.flow_result("cart.yaml")
    assert "UNAVAILABLE: io exception" in cart["stderr"]
    assert cart["status"] == "failed" and cart["errorSummary"] == CRASH
    assert all(a["status"] == "failed" and a["crash"] for a in cart["attempts"])
    assert shop.record()["verdict"] == "fail"
    # without the crash the same output is an infrastructure error
    shop.scenario({"cart.yaml": "infra:grpc"})
    assert shop.invoke("validate").returncode == 2
    assert shop.flow_result("cart.yaml")["status"] == "error"
    assert crash_files(shop) == []


def test_a_crash_maestro_does_not_notice_still_fails_the_flow(world: World) -> None:
    """No later step needs the app's screen: Maestro passes the flow; the app died all the same."""
    world.device()
    world.flow("sign-out.yaml", commands="- launchApp\n- tapOn: \"Sign out\"\n- stopApp\n")
    run = world.scenario(logcat={"sign-out.yaml": {"crash": CRASH}}).invoke("validate", "--retries", "0")
    assert run.returncode == 1, run.stdout[-3000:] + run.stderr
    flow = world.flow_result("sign-out.yaml")
    assert "[Passed] sign-out" in flow["stdout"]
    assert flow["status"] == "failed" and flow["errorSummary"] == CRASH
    assert flow["attempts"][0]["exitCode"] == 0 and flow["attempts"][0]["crash"]


def test_an_anr_of_the_app_fails_the_flow_with_its_reason(shop: World) -> None:
    reason = "Input dispatching timed out (Waited 5001ms for MotionEvent)"
    run = shop.scenario(logcat={"cart.yaml": {"anr": reason}}).invoke("validate", "--retries", "0")
    assert run.returncode == 1, run.stdout[-3000:] + run.stderr
    cart = shop.flow_result("cart.yaml")
    assert cart["status"] == "failed" and cart["errorSummary"] == f"ANR in {APP}: {reason}"
    block = (attempt_dir(shop, "cart.yaml", 1) / "crash.txt").read_text().splitlines()
    assert block[0].endswith(f" E ActivityManager: ANR in {APP} ({APP}/.MainActivity)")
    assert any(line.endswith(f"Reason: {reason}") for line in block)


def test_another_process_crash_changes_nothing(shop: World) -> None:
    other = {"crash": "java.lang.NullPointerException: systemui", "process": "com.android.systemui"}
    anr = {"anr": "Broadcast of Intent { act=android.intent.action.TIME_TICK }", "process": "com.android.phone"}
    run = shop.scenario(logcat={"cart.yaml": [[other, anr]]}).invoke("validate")
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr
    cart = shop.flow_result("cart.yaml")
    assert cart["status"] == "passed" and not cart["attempts"][0]["crash"]
    assert crash_files(shop) == []
    text = logcat(shop)  # it stays in the log
    assert "Process: com.android.systemui, PID: " in text and "ANR in com.android.phone" in text


def test_a_crash_then_a_pass_is_flaky_and_says_so(shop: World) -> None:
    run = shop.scenario(logcat={"cart.yaml": [{"crash": CRASH}, None]}).invoke("validate")
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr
    cart = shop.flow_result("cart.yaml")
    assert cart["status"] == "flaky" and cart["errorSummary"] == CRASH
    assert [(a["status"], a["crash"]) for a in cart["attempts"]] == [("failed", True), ("passed", False)]
    assert crash_files(shop) == ["flows/cart.yaml/attempt-1/crash.txt"]


def test_a_secret_in_the_crash_is_masked_everywhere(shop: World) -> None:
    shop.scenario(logcat={"cart.yaml": {"crash": f"java.lang.IllegalStateException: cookie {SECRET} rejected"}})
    run = shop.invoke("validate", "--retries", "0", "--env", f"SESSION_COOKIE={SECRET}")
    assert run.returncode == 1, run.stdout[-3000:] + run.stderr
    assert shop.flow_result("cart.yaml")["errorSummary"] == "java.lang.IllegalStateException: cookie *** rejected"
    assert "cookie *** rejected" in (attempt_dir(shop, "cart.yaml", 1) / "crash.txt").read_text()
    page = report(shop)
    assert "cookie *** rejected" in card(page, "cart.yaml").find("pre", "crash").text()
    for path in shop.results.rglob("*"):
        if path.is_file() and path.suffix != ".png":
            assert SECRET not in path.read_text(errors="replace"), path


def test_the_card_shows_the_crash_block(shop: World) -> None:
    shop.scenario(logcat={"cart.yaml": [{"crash": CRASH, "caused_by": CAUSE}, None]}).invoke("validate")
    page = report(shop)
    article = card(page, "cart.yaml")
    [block] = article.find_all("div", "crash")
    heading = block.find("h4")
    assert heading.text() == f"The app crashed during attempt 1: {CRASH} (flows/cart.yaml/attempt-1/crash.txt)"
    assert heading.find("a").attrs["href"] == "flows/cart.yaml/attempt-1/crash.txt"
    text = block.find("pre", "crash").text()
    assert text == (attempt_dir(shop, "cart.yaml", 1) / "crash.txt").read_text()
    assert card(page, "login.yaml").find_all("div", "crash") == []


def test_the_card_escapes_the_crash_block(shop: World) -> None:
    markup = 'java.lang.IllegalStateException: <img src=x onerror="alert(1)"> & <script>x</script>'
    shop.scenario(logcat={"cart.yaml": {"crash": markup}}).invoke("validate", "--retries", "0")
    html = (shop.results / "report.html").read_text()
    assert "<img src=x" not in html and "<script>x" not in html
    assert markup in card(parse(html), "cart.yaml").find("pre", "crash").text()


def test_a_crash_record_without_its_file_still_renders(shop: World) -> None:
    shop.scenario(logcat={"cart.yaml": {"crash": CRASH}}).invoke("validate", "--retries", "0")
    (attempt_dir(shop, "cart.yaml", 1) / "crash.txt").unlink()
    block = card(report(shop), "cart.yaml").find("div", "crash")
    assert "could not be read" in block.text() and CRASH in block.find("h4").text()


def test_the_browser_shows_the_crash_on_the_card(shop: World, chromium: DevTools) -> None:  # noqa: F811
    shop.scenario(logcat={"cart.yaml": {"crash": CRASH, "caused_by": CAUSE}}).invoke("validate", "--retries", "0")
    report(shop)
    session = chromium.open((shop.results / "report.html").resolve().as_uri())
    state = chromium.call("Runtime.evaluate", session, returnByValue=True, expression="""JSON.stringify({
        cards: [...document.querySelectorAll('article.flow')].map(a => [a.querySelector('code.file').textContent,
            [...a.querySelectorAll('pre.crash')].map(p => p.innerText)]),
        shown: (() => { const p = document.querySelector('pre.crash'); const r = p.getBoundingClientRect();
            return [r.width, r.height, getComputedStyle(p).display, getComputedStyle(p).whiteSpace]; })(),
        errorSummary: document.querySelector('article.flow .error-summary').textContent,
    })""")
    errors = [p["entry"] for p in chromium.of("Log.entryAdded") if p["entry"]["level"] == "error"]
    chromium.call("Browser.close")
    facts: dict[str, Any] = json.loads(state["result"]["value"])
    assert errors == []
    crashes = dict(facts["cards"])
    assert crashes["login.yaml"] == []
    [shown] = crashes["cart.yaml"]
    lines = shown.splitlines()
    assert lines[0].endswith("E AndroidRuntime: FATAL EXCEPTION: main")
    assert lines[2].endswith(f"E AndroidRuntime: {CRASH}")
    assert any(line.endswith(f"Caused by: {CAUSE}") for line in lines)
    width, height, display, white_space = facts["shown"]
    assert width > 300 and height > 100 and display == "block" and white_space == "pre"
    assert facts["errorSummary"] == CRASH


def test_each_device_log_is_its_own_attempts(world: World) -> None:
    """Two devices at once: the crash on one device is that device's attempt's, never the flows running at
    the same time on the other."""
    for serial in ("emulator-5554", "emulator-5556"):
        world.device(serial)
    for name in ("a.yaml", "b.yaml", "c.yaml", "d.yaml"):
        world.flow(name, commands=CART)
    world.scenario(default="sleep:0.3", logcat={"b.yaml": {"crash": CRASH}})
    run = world.invoke("validate", "--devices", "2", "--retries", "0")
    assert run.returncode == 1, run.stdout[-3000:] + run.stderr
    flows = {f["flowFileName"]: f for f in world.record()["flows"]}
    assert {name: f["status"] for name, f in flows.items()} == {
        "a.yaml": "passed", "b.yaml": "failed", "c.yaml": "passed", "d.yaml": "passed"}
    assert flows["b.yaml"]["errorSummary"] == CRASH
    assert crash_files(world) == ["flows/b.yaml/attempt-1/crash.txt"]
    logs = {s: (world.results / "devices" / s / "logcat.txt").read_text() for s in ("emulator-5554", "emulator-5556")}
    assert {s for s, text in logs.items() if "FATAL EXCEPTION" in text} == {flows["b.yaml"]["device"]}


def test_a_capture_that_stopped_is_waited_for_once(world: World) -> None:
    """The device's `adb logcat` dies mid-run: the end mark never reaches logcat.txt. One bounded wait, one
    warning, then the rest of the run reads what was captured without waiting again."""
    world.device()
    for name in ("a.yaml", "b.yaml", "c.yaml"):
        world.flow(name)
    world.scenario({"a.yaml": "hang"})
    proc = world.start("validate", "--retries", "0", "--flow-timeout", "3")
    try:
        wait_for((world.state_dir / "hang-a.yaml.pids").is_file)
        [capture] = processes_of(world, "logcat", "threadtime")
        os.kill(capture, signal.SIGKILL)
        out, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == 2, out[-3000:] + err  # a.yaml timed out
    assert {f["flowFileName"]: f["status"] for f in world.record()["flows"]} == {
        "a.yaml": "timed_out", "b.yaml": "passed", "c.yaml": "passed"}
    warned = [line for line in (out + err).splitlines() if "the logcat capture did not deliver" in line]
    assert len(warned) == 1, warned
    assert "emulator-5554" in warned[0] and "without waiting, for the rest of the run" in warned[0]


def test_marks_share_one_shell_per_device_and_open_another_after_it_ended(world: World) -> None:
    world.device()
    adb = Adb(world.bin / "adb", Console(world.env()), world.env())

    def logged() -> list[str]:
        state = json.loads(world.adb_state.read_text())
        return [line for line in state["devices"]["emulator-5554"].get("logcat", []) if f" {MARK_TAG} " in line]

    def set_state(value: str) -> None:
        state = json.loads(world.adb_state.read_text())
        state["devices"]["emulator-5554"]["state"] = value
        world.adb_state.write_text(json.dumps(state))

    with Marks(adb, ["emulator-5554"]) as marks:
        first = marks._shells["emulator-5554"]  # opened when the block starts
        assert marks.mark("emulator-5554", "end-of-attempt a.yaml.1 t1")
        assert marks.mark("emulator-5554", "end-of-attempt b.yaml.1 t2")
        wait_for(lambda: len(logged()) == 2)
        assert logged()[0].endswith(f" I {MARK_TAG} : end-of-attempt a.yaml.1 t1")
        assert marks._shells["emulator-5554"] is first and marks.alive("emulator-5554")
        set_state("offline")  # the transport closes: the session ends at its next command
        marks.mark("emulator-5554", "end-of-attempt c.yaml.1 t3")
        wait_for(lambda: not marks.alive("emulator-5554"))
        set_state("device")
        assert marks.mark("emulator-5554", "end-of-attempt d.yaml.1 t4")  # a new session
        wait_for(lambda: len(logged()) == 3)
        second = marks._shells["emulator-5554"]
        assert second is not first and logged()[-1].endswith("t4")
        assert sum(argv[-1:] == ["shell"] for argv in world.adb_calls()) == 2
    assert not alive(first.pid) and not alive(second.pid)  # closed with the block
