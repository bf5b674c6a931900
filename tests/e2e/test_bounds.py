"""Everything is bounded: notify against servers that drip-feed their answer, setting limits, flow-file
limits (size, YAML alias bombs) and huge output lines."""

from __future__ import annotations

import json
import os
import select
import socket
import sys
import threading
import tracemalloc
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import World, real_apk
from prodval.errors import ConfigError
from prodval.settings import NOTIFY_DEFAULTS, load, load_notify
from test_notify import ROUTING_KEY, SHA, TOKEN, record

REPO_NAME = "acme/exercise-log"


class DripServer:
    """A TCP server that answers every connection with one byte every `interval` seconds, forever.

    A per-read socket timeout never fires against it; only a wall-clock deadline ends the client.
    `closed` counts the connections whose client went away (the client process closed or died).
    """

    def __init__(self, greeting: bytes, interval: float = 0.2) -> None:
        self.greeting, self.interval = greeting, interval
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self.closed = 0
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.threads: list[threading.Thread] = []

    def __enter__(self) -> DripServer:
        thread = threading.Thread(target=self._accept, daemon=True)
        thread.start()
        self.threads.append(thread)
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.sock.close()
        for thread in self.threads:
            thread.join(5)

    def _accept(self) -> None:
        self.sock.settimeout(0.1)
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except (TimeoutError, OSError):
                continue
            with self.lock:
                self.accepted += 1
            thread = threading.Thread(target=self._drip, args=(conn,), daemon=True)
            thread.start()
            self.threads.append(thread)

    def _drip(self, conn: socket.socket) -> None:
        sent = 0
        with conn:
            while not self.stop.is_set():
                readable, _, _ = select.select([conn], [], [], self.interval)
                try:
                    if readable:
                        if not conn.recv(65536):
                            break
                        continue
                    conn.sendall(self.greeting[sent % len(self.greeting):][:1])
                    sent += 1
                except OSError:
                    break
        with self.lock:
            self.closed += 1


def processes_with(marker: str) -> list[int]:
    """Pids of live processes whose environment holds `marker` (what a run started, and its children)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                environ = (entry / "environ").read_bytes()
                status = (entry / "status").read_text()
            except OSError:
                continue
            if marker.encode() in environ and "State:\tZ" not in status:
                found.append(int(entry.name))
    return found


@pytest.fixture
def drip() -> Iterator[tuple[DripServer, DripServer]]:
    with DripServer(b"HTTP/1.1 200 OK\r\nX-Slow: " + b"a" * 1000) as http, \
            DripServer(b"220 slow.example ESMTP " + b"x" * 1000) as smtp:
        yield http, smtp


def test_notify_with_every_channel_hanging_ends_and_names_each_channel(world: World, drip: tuple[DripServer, DripServer]) -> None:
    http, smtp = drip
    record(world.results)
    base = f"http://127.0.0.1:{http.port}"
    marker = f"PRODVAL_TEST_MARK={uuid.uuid4().hex}"
    run = world.invoke(
        "notify", timeout=60,
        SLACK_WEBHOOK_URL=f"{base}/services/T0/B0/secret", PAGERDUTY_ROUTING_KEY=ROUTING_KEY,
        PAGERDUTY_EVENTS_URL=f"{base}/v2/enqueue", GITHUB_TOKEN=TOKEN, GITHUB_API_URL=base,
        GITHUB_REPOSITORY=REPO_NAME, GITHUB_SHA=SHA, SMTP_HOST="127.0.0.1", SMTP_PORT=str(smtp.port),
        SMTP_SECURITY="none", ALERT_EMAIL_FROM="v@acme.example", ALERT_EMAIL_TO="oncall@acme.example",
        INVOKE_NOTIFY_TIMEOUT="2", INVOKE_NOTIFY_CHANNEL_DEADLINE="1.5", INVOKE_NOTIFY_DEADLINE="30",
        PRODVAL_TEST_MARK=marker.partition("=")[2],
    )
    assert run.returncode == 0, run.stderr  # a delivery failure never changes the outcome
    alerts = {a["channel"]: a for a in world.record()["alerts"]}
    assert set(alerts) == {"slack", "email", "pagerduty", "github-status"}
    for name, alert in alerts.items():
        assert alert["delivered"] is False, name
        assert "timed out: no delivery within 1.5s (notify.channel_deadline)" in alert["detail"], alert
        assert "raise notify.channel_deadline" in alert["fix"]
    assert world.record()["stages"]["notify"]["outcome"] == "error"
    assert "Alerts: 0 of 4 delivered" in run.stdout
    assert http.accepted >= 3 and smtp.accepted >= 1  # they really were connected and hanging
    assert processes_with(marker.partition("=")[2]) == []  # no delivery process outlived notify


def test_the_run_deadline_bounds_every_channel(world: World, drip: tuple[DripServer, DripServer]) -> None:
    http, _ = drip
    record(world.results)
    run = world.invoke("notify", timeout=60, SLACK_WEBHOOK_URL=f"http://127.0.0.1:{http.port}/hook",
                       INVOKE_NOTIFY_CHANNEL_DEADLINE="600", INVOKE_NOTIFY_DEADLINE="1")
    assert run.returncode == 0, run.stderr
    [alert] = world.record()["alerts"]
    assert "timed out: no delivery within 1s (notify.deadline)" in alert["detail"]


def test_default_deadlines_end_a_broken_run_within_two_minutes() -> None:
    settings = load_notify({}, {}, {})
    assert settings.deadline == NOTIFY_DEFAULTS["deadline"] <= 110  # ten seconds left to write the record
    assert settings.channel_deadline <= settings.deadline
    with pytest.raises(ConfigError, match=r"notify.deadline must be at most 3600"):
        load_notify({"deadline": "1e9"}, {}, {})
    with pytest.raises(ConfigError, match=r"notify.channel_deadline must be finite|at most"):
        load_notify({"channel_deadline": "inf"}, {}, {})


# --- settings limits ---------------------------------------------------------------------------------

@pytest.mark.parametrize(("flag", "value", "message"), [
    ("--flow-timeout", "inf", "validation.flow_timeout must be at most 86400, got 'inf'"),
    ("--flow-timeout", "86401", "validation.flow_timeout must be at most 86400, got '86401'"),
    ("--retries", "11", "validation.retries must be at most 10, got '11'"),
])
def test_unbounded_settings_are_refused_with_exit_2(world: World, flag: str, value: str, message: str) -> None:
    world.device().scenario()
    world.flow("a.yaml")
    run = world.invoke("validate", flag, value)
    assert run.returncode == 2, run.stderr
    assert message in run.stderr and "Traceback" not in run.stderr
    assert not world.maestro_calls()


def test_setting_limits_and_the_install_timeout() -> None:
    assert load({}, {"flow_timeout": "86400", "retries": "10"}).retries == 10
    assert load({"install_timeout": "45"}, {}).install_timeout == 45
    assert load({}, {}).install_timeout == 300
    with pytest.raises(ConfigError, match=r"validation\.install_timeout must be a positive number"):
        load({"install_timeout": "0"}, {})
    with pytest.raises(ConfigError, match=r"validation\.flow_timeout must be at most 86400"):
        load({"flow_timeout": "1e400"}, {})


def test_adb_install_uses_its_own_timeout(world: World) -> None:
    apk = real_apk(world.root / "app.apk")
    world.device("emulator-5554", install_hangs=True).scenario()
    world.flow("a.yaml")
    run = world.invoke("validate", "--apk", str(apk), timeout=60, INVOKE_VALIDATION_INSTALL_TIMEOUT="1")
    assert run.returncode == 2, run.stderr
    assert "timed out after 1s" in run.stderr, run.stderr
    assert json.loads((world.results / "results.json").read_text())["verdict"] == "error"


# --- output ------------------------------------------------------------------------------------------

def test_a_huge_line_is_read_in_pieces_the_log_keeps_every_byte_and_no_secret(tmp_path: Path) -> None:
    from prodval.commands import LINE_PIECE, stream
    from prodval.secrets import Redactor

    secret = "line-S3cret-value"
    size = 40 * 1024 * 1024
    # The secret straddles a piece boundary; the line is one 40 MB line without a newline until the end.
    script = (f"import sys; w = sys.stdout.buffer.write; w(b'x' * ({LINE_PIECE} - 5)); w(b'{secret}');"
              f"w(b'y' * {size}); w(b'\\n'); w(b'tail {secret}\\n')")
    pieces: list[int] = []
    tracemalloc.start()
    try:
        done = stream([sys.executable, "-c", script], env=dict(os.environ), timeout=120,
                      stdout_path=tmp_path / "out.log", stderr_path=tmp_path / "err.log",
                      on_line=lambda line: pieces.append(len(line)), redact=Redactor([secret]))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert done.returncode == 0
    assert peak < 8 * 1024 * 1024, peak  # the line is 40 MB: it was never held whole
    assert max(pieces) <= LINE_PIECE + len(secret)
    data = (tmp_path / "out.log").read_bytes()
    assert len(data) == (LINE_PIECE - 5) + 3 + size + 1 + len("tail ***\n")  # every other byte kept
    assert secret.encode() not in data and data.count(b"***") == 2


# --- flow files --------------------------------------------------------------------------------------

def _laughs(levels: int, indent: str = "") -> str:
    lines = [f'{indent}l0: &l0 ["ha", "ha", "ha", "ha", "ha", "ha", "ha", "ha", "ha"]']
    for level in range(1, levels):
        lines.append(f"{indent}l{level}: &l{level} [{', '.join([f'*l{level - 1}'] * 9)}]")
    return "\n".join(lines)


BOMBS = {
    "name-chain": f"appId: com.example.exerciselog\n{_laughs(9)}\nname: *l8\n---\n- launchApp\n",
    "through-runFlow": (
        "appId: com.example.exerciselog\n---\n- launchApp\n"
        "- runFlow: &r0\n    commands:\n      - tapOn: Save\n      - tapOn: Add\n"
        + "".join(f"- runFlow: &r{i}\n    commands: [{{runFlow: *r{i - 1}}}, {{runFlow: *r{i - 1}}}, "
                  f"{{runFlow: *r{i - 1}}}, {{runFlow: *r{i - 1}}}, {{runFlow: *r{i - 1}}}]\n" for i in range(1, 12))
    ),
    "endless": "appId: com.example.exerciselog\n---\n- runFlow: &a\n    commands:\n      - runFlow: *a\n",
}


@pytest.mark.parametrize("kind", sorted(BOMBS))
@pytest.mark.parametrize("task", ["validate", "lint-flows"])
def test_yaml_alias_bombs_are_refused(world: World, kind: str, task: str) -> None:
    world.device().scenario()
    (world.flows / "bomb.yaml").write_text(BOMBS[kind])
    run = world.invoke(task, timeout=60)
    assert run.returncode == 2, run.stderr
    assert ".maestro/bomb.yaml:" in run.stderr and "Traceback" not in run.stderr
    assert ("alias bomb" in run.stderr) if kind != "endless" else ("endless structure" in run.stderr)
    assert not world.maestro_calls()


def test_aliases_that_expand_modestly_are_fine(world: World) -> None:
    world.device().scenario()
    world.flow("ok.yaml", commands="- tapOn: &save {text: Save}\n- tapOn: *save\n- tapOn: *save\n")
    assert world.invoke("lint-flows").returncode == 0


def test_a_flow_over_one_mib_is_refused(world: World) -> None:
    world.device().scenario()
    world.flow("big.yaml", commands="- launchApp\n" + "# padding\n" * 110_000)
    run = world.invoke("validate", timeout=60)
    assert run.returncode == 2, run.stderr
    assert ".maestro/big.yaml:1: the file is larger than 1 MiB" in run.stderr
    assert "split it into sub-flows" in run.stderr and not world.maestro_calls()


def test_junit_and_summary_survive_whatever_a_tool_prints(tmp_path: Path) -> None:
    from xml.etree import ElementTree as ET

    from prodval.results import RecordWriter, junit_xml, summary_markdown
    from prodval.secrets import Redactor
    from test_notify import record

    run = record(tmp_path, failed=1, flaky=0)
    hostile = "\x1b[31mboom\x1b[0m \x00\x07\x0b <img src=x onerror=alert(1)> | ```\n</details>"
    failed = next(f for f in run.flows if f.status == "failed")
    failed.errorSummary = failed.stdout = hostile
    run.stages["validate"].error = "stopped: ```` fence <b>bold</b>"
    RecordWriter(tmp_path, Redactor()).finish(run)
    root = ET.fromstring((tmp_path / "junit.xml").read_bytes())  # well-formed
    assert "[31m" not in junit_xml(run) and "boom" in root.find(".//failure").get("message", "")  # type: ignore[union-attr]
    summary = summary_markdown(run)
    assert "<img" not in summary and "&lt;img src=x onerror=alert(1)&gt;" in summary
    assert "\n`````\nstopped: ```` fence <b>bold</b>\n`````" in summary  # the fence cannot be closed early


def test_channels_are_delivered_at_the_same_time(world: World) -> None:
    """Each HTTP channel's server answers only once all three requests are in flight at once."""
    from alert_servers import Reply, github_status, pagerduty, serve_http, slack
    from test_notify import REPO, WEBHOOK_PATH

    record(world.results)
    together = threading.Barrier(3, timeout=30)

    def after_all(answer: Any) -> Any:
        def respond(request: Any) -> Reply:
            together.wait()
            reply: Reply = answer(request)
            return reply
        return respond

    for http in serve_http():
        http.script(WEBHOOK_PATH, after_all(slack))
        http.script("/v2/enqueue", after_all(pagerduty))
        http.script(f"/repos/{REPO}/statuses/", after_all(github_status(TOKEN, commits=(SHA,))))
        run = world.invoke("notify", timeout=90, SLACK_WEBHOOK_URL=http.url(WEBHOOK_PATH),
                           PAGERDUTY_ROUTING_KEY=ROUTING_KEY, PAGERDUTY_EVENTS_URL=http.url("/v2/enqueue"),
                           GITHUB_TOKEN=TOKEN, GITHUB_API_URL=http.base, GITHUB_REPOSITORY=REPO, GITHUB_SHA=SHA,
                           INVOKE_NOTIFY_RETRIES="0")
        assert run.returncode == 0, run.stderr
        assert [a["delivered"] for a in world.record()["alerts"]] == [True, True, True], world.record()["alerts"]


def wait_for(condition: Any, what: str, limit: float = 60) -> None:
    """Poll `condition()` until true; the limit only stops a broken run from hanging the suite."""
    import time
    end = time.monotonic() + limit
    while not condition():
        if time.monotonic() >= end:
            pytest.fail(f"never happened: {what}")
        time.sleep(0.05)


def test_notify_killed_while_a_channel_hangs_leaves_no_delivery_process_and_frees_the_folder(
        world: World, drip: tuple[DripServer, DripServer]) -> None:
    """SIGKILL runs no handler: the delivery process dies with notify (it must not deliver afterwards),
    and it never held the results folder's lock on notify's behalf."""
    from prodval.runlock import hold_folder

    http, _ = drip
    record(world.results)
    mark = uuid.uuid4().hex
    run = world.start("notify", SLACK_WEBHOOK_URL=f"http://127.0.0.1:{http.port}/services/T0/B0/secret",
                      INVOKE_NOTIFY_CHANNEL_DEADLINE="600", INVOKE_NOTIFY_DEADLINE="600", PRODVAL_TEST_MARK=mark)
    try:
        wait_for(lambda: http.accepted >= 1 or run.poll() is not None, "the Slack delivery connected")
        assert run.poll() is None, run.communicate()
        assert len(processes_with(mark)) >= 2  # notify and its hanging delivery process
        run.kill()
        run.wait()  # not communicate(): a delivery process that outlived notify would hold its pipes open
        with hold_folder(world.results, "validate"):  # at once: no process keeps notify's lock
            pass
        wait_for(lambda: processes_with(mark) == [], "the delivery process ended with notify")
        wait_for(lambda: http.closed >= 1, "the hanging connection was dropped")
    finally:
        for pid in processes_with(mark):
            os.kill(pid, 9)
        run.kill()
        run.wait()
        for stream in (run.stdout, run.stderr):
            assert stream is not None
            stream.close()


def _lock_files_open_here() -> list[str]:
    found = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.endswith(".prodval.lock"):
            found.append(target)
    return found


def test_a_delivery_process_closes_the_folder_lock_without_releasing_it(tmp_path: Path) -> None:
    import fcntl

    from prodval.notify import bounded
    from prodval.runlock import FOLDER_LOCK, hold_folder

    with hold_folder(tmp_path, "notify", "run-1"):
        assert _lock_files_open_here() == [str(tmp_path / FOLDER_LOCK)]
        assert bounded(_lock_files_open_here, 30) == (True, [])
        with open(tmp_path / FOLDER_LOCK) as other, pytest.raises(BlockingIOError):
            fcntl.flock(other.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)  # still ours
        assert json.loads((tmp_path / FOLDER_LOCK).read_text())["stage"] == "notify"  # and still says so


@pytest.mark.parametrize("sig", ["SIGTERM", "SIGINT"])
def test_a_delivery_process_does_not_keep_notifys_signal_handlers(sig: str) -> None:
    """notify turns SIGTERM and Ctrl-C into its own orderly stop; a delivery process just dies of them."""
    import signal

    from prodval.notify import bounded

    number = getattr(signal, sig)
    previous = signal.signal(number, lambda *_: None)  # a handler that would let the child carry on
    try:
        with pytest.raises(RuntimeError, match="the delivery process died"):
            bounded(lambda: os.kill(os.getpid(), number) or "delivered anyway", 30)
    finally:
        signal.signal(number, previous)


def test_a_delivery_process_never_prints(capfd: pytest.CaptureFixture[str]) -> None:
    """In Actions a child's line could close the parent's `::stop-commands::` fence: all it says goes back
    to the parent, a failure as its message."""
    from prodval.notify import bounded

    def chatty() -> int:
        print("::warning::from the child", flush=True)
        sys.stderr.write("to stderr\n")
        return 7

    def broken() -> None:
        raise ValueError("an answer it cannot read")

    assert bounded(chatty, 30) == (True, 7)
    with pytest.raises(RuntimeError, match="the delivery process failed: ValueError: an answer it cannot read"):
        bounded(broken, 30)
    assert capfd.readouterr() == ("", "")
