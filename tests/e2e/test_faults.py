"""Hostile input and a broken machine (issue 12): every failure that is not a flow's assertion exits 2
with one message, the record finished with verdict `error` when the disk allows, `verdict=error` in
$GITHUB_OUTPUT, no traceback (unless PRODVAL_DEBUG=1), and the chain still reaching `notify`; and no
tool's output can run a workflow command in GitHub Actions."""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from alert_servers import HttpServer, Reply, Request, serve_http
from conftest import REPO, World
from prodval.console import Console, close_fences
from prodval.results import Attempt, FlowResult, Job, RecordWriter, RunRecord, Stage
from prodval.secrets import Redactor

FAILURE = "fail:Element not found: Text matching regex: Save"


@pytest.fixture
def run_world(world: World) -> World:
    world.device()
    world.flow("login.yaml")
    world.flow("add-exercise.yaml")
    world.scenario()
    return world


def actions(world: World) -> Path:
    """Run as in GitHub Actions; the returned file is $GITHUB_OUTPUT."""
    output = world.root / "github-output.txt"
    world.extra_env.update({"GITHUB_ACTIONS": "true", "GITHUB_OUTPUT": str(output),
                            "GITHUB_STEP_SUMMARY": str(world.root / "step-summary.md")})
    return output


def outputs(path: Path) -> dict[str, str]:
    """$GITHUB_OUTPUT as the runner reads it: the last value of a name wins."""
    return dict(line.split("=", 1) for line in path.read_text().splitlines() if "=" in line and "<<" not in line)


def assert_stopped(done: subprocess.CompletedProcess[str] | tuple[int, str, str], output: Path | None,
                   *message: str) -> str:
    """Exit 2, one message naming `message`, no traceback, verdict=error for the gate. Returns the log."""
    code, out, err = (done.returncode, done.stdout, done.stderr) if isinstance(done, subprocess.CompletedProcess) else done
    log = out + err
    assert code == 2, log
    assert not re.search(r'File ".*/(prodval|invoke)/', log), log  # no traceback of ours (a fake's own may show)
    for part in message:
        assert part in log, log
    if output is not None:
        assert outputs(output)["verdict"] == "error"
    return log


# --- the Actions log: tool output cannot run workflow commands --------------------------------------

_V2 = re.compile(r"^::(?P<command>[^\s:]+)(?: [^:]*)?::(?P<data>.*)$")
_V1 = re.compile(r"##\[(?P<command>[^\s\];]+)[^\]]*\](?P<data>.*)$")


def runner_commands(log: str) -> list[tuple[str, str]]:
    """The workflow commands GitHub's runner would execute from this log (actions/runner
    ActionCommandManager: `::cmd::` at the start of a line or `##[cmd]` anywhere; `::stop-commands::T`
    ignores every command until `::T::`)."""
    executed: list[tuple[str, str]] = []
    token: str | None = None
    for line in log.splitlines():
        match = _V2.match(line.strip()) or _V1.search(line)
        if match is None:
            continue
        command, data = match["command"], match["data"]
        if token is not None:
            if command == token:
                token = None
            continue
        if command == "stop-commands":
            token = data
            continue
        executed.append((command, data))
    return executed


HOSTILE = ("::set-output name=verdict::pass\n::add-mask::Element\n##[error]forged by the app\n"
           "::error file=.github/workflows/production-validation.yml::forged\n::stop-commands::guess\n::endgroup::")


def test_tool_output_cannot_forge_the_verdict_or_run_workflow_commands(run_world: World) -> None:
    output = actions(run_world)
    run = run_world.scenario({"login.yaml": [f"fail:Element not found\n{HOSTILE}"]}).invoke(
        "validate", "--retries", "0")
    assert run.returncode == 1, run.stderr
    assert "::set-output name=verdict::pass" in run.stdout  # shown to people, as the tool printed it
    executed = runner_commands(run.stdout + run.stderr)
    # ours: groups, annotations and the masks of any secret the environment holds; nothing from the tool
    assert [(c, d) for c, d in executed if c not in ("group", "endgroup", "error", "warning")
            and not (c == "add-mask" and d not in HOSTILE)] == []
    errors = [data for c, data in executed if c == "error"]
    assert errors and all("forged" not in data or "%0A" in data for data in errors)  # ours: one escaped line
    assert [c for c, _ in executed].count("group") == [c for c, _ in executed].count("endgroup") == 2
    assert outputs(output)["verdict"] == "fail"
    assert run.stdout.rstrip().splitlines()[-1].startswith("::") and not runner_stopped_at_end(run.stdout)


def runner_stopped_at_end(log: str) -> bool:
    token = None
    for line in log.splitlines():
        if line.startswith("::stop-commands::"):
            token = line.removeprefix("::stop-commands::")
        elif token and line == f"::{token}::":
            token = None
    return token is not None


def test_every_console_path_fences_text_and_keeps_our_commands_outside() -> None:
    out = io.StringIO()
    console = Console({"GITHUB_ACTIONS": "true"}, Redactor(), out=out, err=io.StringIO())
    other = Console({"GITHUB_ACTIONS": "true"}, Redactor(), out=out)  # a later stage's console, same stream
    console.step("Running")
    with console.group("flow\n::set-output name=verdict::pass"):  # a file name with a line break
        console.line("::set-output name=verdict::pass")
        other.error("a real problem", title="ours")
        console.line("##[add-mask]secret")
    console.block("flow b", ["::warning::forged", "ok"], 1.0)
    console.info("x ##[set-output name=verdict;]pass")
    for _ in range(11):  # past GitHub's 10 annotations: plain text, fenced
        console.error("::set-output name=verdict::pass\n::error::forged")
    other.warning("ours too")
    executed = runner_commands(out.getvalue())
    assert [c for c, _ in executed] == ["group", "error", "endgroup", "group", "endgroup"] + ["error"] * 10 + ["warning"]
    tokens = re.findall(r"^::stop-commands::(\w+)$", out.getvalue(), re.MULTILINE)
    assert len(tokens) == len(set(tokens)) >= 5  # a fresh token every time
    local = io.StringIO()
    Console({}, Redactor(), out=local, err=local).line("::set-output name=verdict::pass")
    assert local.getvalue() == "  | ::set-output name=verdict::pass\n"  # outside Actions: no fence, no noise


def test_the_fence_is_closed_when_the_process_ends() -> None:
    script = "from prodval.console import Console; Console({'GITHUB_ACTIONS': 'true'}).info('::x::')"
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True,
                          env={**os.environ, "PYTHONPATH": str(REPO / "tools")})
    lines = done.stdout.splitlines()
    assert lines[0].startswith("::stop-commands::") and lines[-1] == f"::{lines[0].split('::')[2]}::"
    close_fences()


# --- the results folder cannot be written -----------------------------------------------------------


@contextlib.contextmanager
def mounted_tmpfs(path: Path, *options: str) -> Iterator[Path]:
    """A real tmpfs at `path`: as root, or through `sudo -n` (GitHub's runners allow it), else skipped."""
    path.mkdir(parents=True, exist_ok=True)
    sudo = [] if os.geteuid() == 0 else ["sudo", "-n"]
    if shutil.which("mount") is None or (sudo and shutil.which("sudo") is None):
        pytest.skip("needs root (or sudo) to mount a tmpfs")
    owner = [] if os.geteuid() == 0 else [f"uid={os.getuid()}", f"gid={os.getgid()}"]
    done = subprocess.run([*sudo, "mount", "-t", "tmpfs", "-o", ",".join([*options, *owner]), "tmpfs", str(path)],
                          capture_output=True)
    if done.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield path
    finally:
        subprocess.run([*sudo, "umount", "-l", str(path)], check=False)


@contextlib.contextmanager
def read_only(path: Path) -> Iterator[Path]:
    """A read-only folder: a read-only mount as root (root ignores file modes), else mode 0555."""
    if os.geteuid() != 0:
        path.mkdir(parents=True, exist_ok=True)
        path.chmod(0o555)
        try:
            yield path
        finally:
            path.chmod(0o755)
        return
    with mounted_tmpfs(path, "ro", "size=64k") as mounted:
        yield mounted


def check_chain(world: World, output: Path, *message: str) -> dict[str, Any]:
    """`validate notify --dry-run` with the results folder broken: exit 2, notify reached with ERROR."""
    run = world.invoke("validate", "notify", "--dry-run")
    log = assert_stopped(run, output, *message)
    assert "Notifying: verdict ERROR" in log  # the chain reached notify, which says error
    assert log.count("could not write the results") == 1  # one message (a dry-run notify writes nothing)
    return {"log": log}


@pytest.mark.parametrize("shape", ["file", "dangling-symlink", "symlink-loop"])
def test_results_folder_that_is_not_a_folder(run_world: World, shape: str) -> None:
    output = actions(run_world)
    results = run_world.results
    results.parent.mkdir(parents=True)
    if shape == "file":
        results.write_text("not a folder")
    elif shape == "dangling-symlink":
        results.symlink_to(run_world.root / "gone")
    else:
        results.symlink_to(results.parent / "loop")
        (results.parent / "loop").symlink_to(results)
    why = {"file": "it is a file, not a folder", "dangling-symlink": "it is a symlink to ",
           "symlink-loop": "it is a symlink loop"}[shape]
    check_chain(run_world, output, f"could not write the results in build/validation: {why}",
                "make build/validation a writable folder")
    assert not run_world.maestro_calls()  # nothing ran that could not be recorded


def test_results_folder_read_only(run_world: World) -> None:
    output = actions(run_world)
    with read_only(run_world.results):
        reason = "Read-only file system" if os.geteuid() == 0 else "Permission denied"
        # the first file it would write: the folder's lock (validate holds the folder for its whole run)
        check_chain(run_world, output, f"could not write the results in build/validation: {reason}: "
                    "build/validation/.prodval.lock")


def test_results_json_that_is_a_folder(run_world: World) -> None:
    output = actions(run_world)
    (run_world.results / "results.json").mkdir(parents=True)
    run = run_world.invoke("validate", "notify", "--dry-run")
    log = assert_stopped(run, output, "could not write the results in build/validation: Is a directory: "
                         "build/validation/results.json", "remove the folder build/validation/results.json")
    assert "Notifying: verdict ERROR" in log


def test_disk_full_while_a_flow_writes_its_output(run_world: World) -> None:
    output = actions(run_world)
    with mounted_tmpfs(run_world.results, "size=256k"):
        run = run_world.scenario({"login.yaml": ["spam:1000000"]}).invoke("validate", "notify", "--dry-run")
        log = assert_stopped(run, output, "No space left on device", "free space on the disk holding build/validation")
        assert "Notifying: verdict ERROR" in log  # the record the disk did not take still reached notify
        assert (run_world.results / "flows").is_dir()  # what was written is kept


def test_disk_full_record_finished_once_space_comes_back(run_world: World, slack_gate: SlackGate) -> None:
    """The disk is full when validate stops: its finished record stays in memory, `notify` alerts with it
    and writes it once the disk allows (here: space freed while Slack is being told)."""
    output = actions(run_world)
    with mounted_tmpfs(run_world.results, "size=512k"):
        filler = run_world.results / "filler"
        filler.write_bytes(b"\0" * (512 * 1024 - 48 * 1024))
        run_world.scenario({"login.yaml": ["spam:200000"]})
        log = run_world.root / "log.txt"
        with log.open("w") as sink:  # not a pipe: 200 kB of flow output would fill it and block the run
            proc = subprocess.Popen(run_world.invoke_argv("validate", "notify"), cwd=run_world.root, stdout=sink,
                                    stderr=subprocess.STDOUT, env=run_world.env(SLACK_WEBHOOK_URL=slack_gate.url,
                                                                                INVOKE_NOTIFY_TIMEOUT="60"))
        try:
            assert slack_gate.arrived.wait(60), "notify never reached Slack"
            filler.unlink()
            slack_gate.release.set()
            proc.wait(timeout=60)
        finally:
            proc.kill()
        assert_stopped((proc.returncode, log.read_text(), ""), output, "No space left on device")
        [post] = slack_gate.server.hits(SLACK_PATH)
        assert "No space left on device" in post.text
        record = run_world.record()
    assert record["verdict"] == "error"
    assert "No space left on device" in record["stages"]["validate"]["error"]
    assert record["alerts"][0]["channel"] == "slack" and record["alerts"][0]["delivered"]


# --- hostile flow files -----------------------------------------------------------------------------


@pytest.mark.parametrize("char", ["\x00", "\x1b"])
def test_flow_with_a_control_character(run_world: World, char: str) -> None:
    output = actions(run_world)
    bad = run_world.flows / "login.yaml"
    bad.write_text(f'appId: com.example.exerciselog\n---\n- launchApp\n- tapOn: "Save{char}[31m"\n')
    run = run_world.invoke("validate", "notify", "--dry-run")
    log = assert_stopped(run, output, "login.yaml", f"U+{ord(char):04X}", "remove it")
    assert "Notifying: verdict ERROR" in log
    record = run_world.record()
    assert record["verdict"] == "error" and f"U+{ord(char):04X}" in record["stages"]["validate"]["error"]
    lint = run_world.invoke("lint-flows", GITHUB_ACTIONS="false")
    assert_stopped(lint, None, "login.yaml:4: invalid YAML", f"U+{ord(char):04X}")


# --- invoke's own errors ----------------------------------------------------------------------------


def test_unknown_flag_says_did_you_mean_and_the_chain_still_notifies(run_world: World) -> None:
    output = actions(run_world)
    assert run_world.invoke("validate").returncode == 0  # a previous run, whose files must not pass for this one's
    run = run_world.invoke("build-apk", "validate", "--retires", "2", "notify", "--dry-run")
    log = assert_stopped(run, output, "`invoke validate` has no flag --retires (did you mean --retries?)",
                         "invoke --help validate")
    assert "No idea what" not in log
    assert "Notifying: verdict ERROR" in log and "dry run: nothing was sent" in log  # notify's own flags kept
    record = run_world.record()
    assert record["verdict"] == "error" and "--retires" in record["stages"]["config"]["error"]
    assert "Validation could not run: `invoke validate` has no flag --retires" in (
        run_world.results / "summary.md").read_text()
    assert not (run_world.results / "report.html").exists()
    assert len(run_world.maestro_calls()) == 2  # the previous run's; this one ran nothing


def test_flag_without_its_value(run_world: World) -> None:
    output = actions(run_world)
    run = run_world.invoke("validate", "--flow-timeout")
    assert_stopped(run, output, "`invoke validate`: --flow-timeout needs a value", "invoke --help validate")


def test_command_line_error_records_in_the_results_folder_given(run_world: World) -> None:
    output = actions(run_world)
    run = run_world.invoke("validate", "--results-dir", "build/elsewhere", "--retires", "2", "notify", "--dry-run",
                           "--results-dir", "build/elsewhere")
    log = assert_stopped(run, output, "has no flag --retires")
    assert "Notifying: verdict ERROR" in log
    record = json.loads((run_world.root / "build" / "elsewhere" / "results.json").read_text())
    assert record["verdict"] == "error" and not run_world.results.exists()


def test_unknown_task_says_did_you_mean(run_world: World) -> None:
    run = run_world.invoke("valdate")
    assert_stopped(run, None, "no task named 'valdate' (did you mean validate?)", "invoke --list")
    assert not run_world.results.exists()  # no stage of a run was asked for: no record


def project_with_config(world: World, extra: str) -> list[str]:
    """A project folder of its own (tasks.py and an invoke.yaml with `extra`): invoke reads the
    invoke.yaml beside the tasks.py it loads."""
    (world.root / "tasks.py").symlink_to(REPO / "tasks.py")
    (world.root / "invoke.yaml").write_text((REPO / "invoke.yaml").read_text() + extra)
    return [sys.executable, "-m", "invoke", "--search-root", str(world.root)]


@pytest.mark.parametrize(("extra", "message"), [
    ("notify:\n  on: failure\n", "under `notify:` the key True is not a name"),
    ("validation: [\n", "invoke.yaml:"),
    ("notify: failure\n", "`notify:` must be a mapping of settings"),
])
def test_invoke_yaml_that_does_not_parse_or_clashes(run_world: World, extra: str, message: str) -> None:
    output = actions(run_world)
    argv = project_with_config(run_world, extra)
    done = subprocess.run([*argv, "validate", "notify", "--dry-run"], cwd=run_world.root, env=run_world.env(),
                          capture_output=True, text=True, timeout=120)
    log = assert_stopped(done, output, message, "fix:")
    assert "Notifying: verdict ERROR" in log
    assert run_world.record()["verdict"] == "error"
    assert not run_world.maestro_calls()


def test_debug_switch_shows_the_traceback(run_world: World) -> None:
    (run_world.results / "results.json").mkdir(parents=True)
    quiet = run_world.invoke("validate")
    assert quiet.returncode == 2 and "Traceback" not in quiet.stderr
    loud = run_world.invoke("validate", PRODVAL_DEBUG="1")
    assert loud.returncode == 2
    assert "Traceback (most recent call last)" in loud.stderr and "IsADirectoryError" in loud.stderr
    assert "could not write the results in build/validation" in loud.stderr  # and the message, once
    assert loud.stderr.count("could not write the results") == 1


# --- Ctrl-C and SIGTERM -----------------------------------------------------------------------------


SLACK_PATH = "/services/T0/B0/xyz"


@dataclass
class SlackGate:
    """A Slack webhook that holds every post until `release` is set; `arrived` is set on the first."""

    server: HttpServer
    arrived: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)

    @property
    def url(self) -> str:
        return self.server.url(SLACK_PATH)


@pytest.fixture
def slack_gate() -> Iterator[SlackGate]:
    for server in serve_http():
        gate = SlackGate(server)

        def hold(request: Request, gate: SlackGate = gate) -> Reply:
            gate.arrived.set()
            gate.release.wait(60)
            return Reply(200, "ok")

        server.script(SLACK_PATH, hold)
        try:
            yield gate
        finally:
            gate.release.set()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_interrupt_during_notify(run_world: World, slack_gate: SlackGate, sig: signal.Signals) -> None:
    output = actions(run_world)
    run_world.scenario({"login.yaml": [FAILURE]})
    proc = run_world.start("validate", "--retries", "0", "notify", SLACK_WEBHOOK_URL=slack_gate.url,
                           INVOKE_NOTIFY_TIMEOUT="60")
    try:
        assert slack_gate.arrived.wait(60), "notify never reached Slack"
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    name = "SIGTERM" if sig == signal.SIGTERM else "Ctrl-C (SIGINT)"
    assert_stopped((proc.returncode, out, err), output, f"`invoke notify` was interrupted by {name}",
                   "run `invoke notify` again")
    record = run_world.record()
    assert record["verdict"] == "error"
    assert record["stages"]["notify"]["outcome"] == "error"
    assert name in record["stages"]["notify"]["error"]
    assert record["stages"]["validate"]["outcome"] == "fail"  # what validate found is kept


def test_interrupt_while_report_html_renders(world: World, tmp_path: Path) -> None:
    """A screenshot that blocks when read (a FIFO) holds the renderer; Ctrl-C then stops it."""
    record = RunRecord(runId="r1", job=Job(jobId="j", startTime="2026-01-01T00:00:00.000Z"), verdict="fail",
                       stages={"validate": Stage("fail", "2026-01-01T00:00:00.000Z")})
    debug = world.results / "flows" / "login.yaml" / "attempt-1" / "debug"
    debug.mkdir(parents=True)
    fifo = debug / "screenshot-❌-1700000000000-(login.yaml).png"
    os.mkfifo(fifo)
    record.flows = [FlowResult("login.yaml", "login", status="failed", errorSummary="boom", attempts=[
        Attempt(1, "failed", 1, 100, "emulator-5554", "2026-01-01T00:00:00.000Z",
                artifactPaths=[fifo.relative_to(world.results).as_posix()])])]
    RecordWriter(world.results, Redactor()).save(record)
    proc = world.start("report")
    try:
        writer = hold_renderer(fifo, proc)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
        os.close(writer)
    finally:
        proc.kill()
    assert_stopped((proc.returncode, out, err), None,
                   "`invoke report` was interrupted by Ctrl-C (SIGINT) while report.html was being rendered")
    assert not (world.results / "report.html").exists()
    assert json.loads((world.results / "results.json").read_text())["verdict"] == "fail"


def hold_renderer(fifo: Path, proc: subprocess.Popen[str]) -> int:
    """Wait until the renderer opened `fifo` (a writer can open it only then); the write end, which
    keeps it blocked until closed."""
    while proc.poll() is None:
        with contextlib.suppress(OSError):
            return os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
    raise AssertionError(f"the run ended before rendering the report: {proc.communicate()}")


def test_interrupt_while_the_run_renders_report_html(run_world: World) -> None:
    """The flow leaves a screenshot that blocks when read (a FIFO): validate's report rendering waits on
    it, SIGTERM arrives there, and the chain still reaches notify."""
    output = actions(run_world)
    run_world.flows.joinpath("add-exercise.yaml").unlink()
    run_world.scenario({"login.yaml": [FAILURE]}, sleep=5)  # the report shows a failed flow's screenshots
    proc = run_world.start("validate", "--retries", "0", "notify", "--dry-run")
    debug = run_world.results / "flows" / "login.yaml" / "attempt-1" / "debug"
    try:
        while not debug.is_dir():  # maestro made its debug folder: the flow is running (for 5 s)
            assert proc.poll() is None, proc.communicate()
        fifo = debug / "screenshot-❌-1700000000000-(login.yaml).png"
        os.mkfifo(fifo)
        writer = hold_renderer(fifo, proc)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
        os.close(writer)
    finally:
        proc.kill()
    log = assert_stopped((proc.returncode, out, err), output,
                         "`invoke validate` was interrupted by SIGTERM while report.html was being rendered",
                         "run `invoke report` to render report.html from the record")
    assert "Notifying: verdict ERROR" in log
    record = run_world.record()
    assert record["verdict"] == "error" and "while report.html" in record["stages"]["validate"]["error"]
    assert [f["status"] for f in record["flows"]] == ["failed"]  # what the flow did is kept
    assert not (run_world.results / "report.html").exists()


def test_workspace_config_with_a_control_character(run_world: World) -> None:
    (run_world.flows / "config.yaml").write_text("flows:\n  - '*.yaml'\nincludeTags: [\x00]\n")
    lint = run_world.invoke("lint-flows")
    assert_stopped(lint, None, "config.yaml:3: invalid YAML: control character U+0000")


def test_the_first_task_of_a_chain_records_where_the_environment_put_its_folder(run_world: World) -> None:
    """CI gives the results folder as INVOKE_VALIDATION_RESULTS_DIR, which invoke loads only when a task runs:
    a stage that stops must still finish the record in that folder, not in the default one."""
    output = actions(run_world)
    elsewhere = run_world.root / "build" / "shard-1"
    (elsewhere / "junit.xml").mkdir(parents=True)  # the run goes well until it writes its JUnit report
    run = run_world.invoke("validate", "notify", "--dry-run", INVOKE_VALIDATION_RESULTS_DIR="build/shard-1")
    assert_stopped(run, output, "junit.xml")
    record = json.loads((elsewhere / "results.json").read_text())
    assert record["verdict"] == "error" and "junit.xml" in record["stages"]["validate"]["error"]
    assert not (run_world.root / "build" / "validation").exists()
