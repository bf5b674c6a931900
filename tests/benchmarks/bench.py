"""The benchmark behind `nox -s bench`: our own cost, measured against baselines run on the same machine.

Everything runs on the fake toolchain of tests/fakes, so only the harness's cost is timed. Each figure
is the median of several runs and is reported as a ratio against a baseline measured in the same run.
Results go to the console and to BENCHMARKS.md.

    python tests/benchmarks/bench.py [--quick] [--only history,...] [--output BENCHMARKS.md]

`--only` runs some of the benchmarks (startup, shards, overhead, parallel, cost, memory, history) and
replaces only their rows of the table in the output, keeping the others as they were measured.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
FAKES = REPO / "tests" / "fakes"
sys.path.insert(0, str(REPO / "tools"))

from prodval.flows import Flow  # noqa: E402
from prodval.history import History, flow_summaries, render_summary  # noqa: E402
from prodval.results import Attempt, FlowResult, Job, RunRecord  # noqa: E402
from prodval.schedule import shard_loads  # noqa: E402

FLOW = "appId: com.example.exerciselog\ntags:\n- production\n---\n- launchApp\n- assertVisible: \"Exercises\"\n"
SERIALS = ("emulator-5554", "emulator-5556", "emulator-5558", "emulator-5560")


@dataclass
class Figure:
    name: str
    value: str
    baseline: str
    result: str
    target: str
    ok: bool


class Workspace:
    """A project folder with N flows, a fake device state and the fakes on PATH."""

    def __init__(self, flows: int, devices: int = 1, scenario: dict[str, object] | None = None) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="prodval-bench-"))
        (self.root / ".maestro").mkdir()
        for i in range(flows):
            (self.root / ".maestro" / f"flow-{i:03}.yaml").write_text(FLOW)
        state = {"devices": {s: {"state": "device", "boot_completed": "1"} for s in SERIALS[:devices]}}
        (self.root / "adb.json").write_text(json.dumps(state))
        (self.root / "scenario.json").write_text(json.dumps(scenario or {"default": "pass"}))
        self.env = {
            **os.environ,
            "PATH": f"{FAKES}{os.pathsep}{os.environ['PATH']}",
            "FAKE_ADB_STATE": str(self.root / "adb.json"),
            "FAKE_MAESTRO_SCENARIO": str(self.root / "scenario.json"),
            "FAKE_MAESTRO_STATE_DIR": str(self.root),
            "HOME": str(self.root),
        }

    def validate(self, *args: str) -> subprocess.CompletedProcess[bytes]:
        argv = [sys.executable, "-m", "invoke", "--search-root", str(REPO), "validate", "--retries", "0", *args]
        return subprocess.run(argv, cwd=self.root, env=self.env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, check=True)

    def record(self) -> dict[str, object]:
        data: dict[str, object] = json.loads((self.root / "build/validation/results.json").read_text())
        return data

    def clean(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


def timed(action: Callable[[], object]) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def shell_loop(ws: Workspace, flows: int) -> None:
    """The baseline: the same fake maestro, the same arguments, once per flow, from a shell loop."""
    out = ws.root / "loop"
    script = (
        'for f in .maestro/*.yaml; do n=$(basename "$f" .yaml); mkdir -p "loop/$n"; '
        'maestro --no-ansi --device emulator-5554 test "$f" --format junit --output "loop/$n/report.xml" '
        '--debug-output "loop/$n/debug" --flatten-debug-output -e SKIP_DATA_CLEANUP=true '
        '-e VALIDATION_RUN_ID=bench >"loop/$n/stdout.log" 2>"loop/$n/stderr.log"; done'
    )
    shutil.rmtree(out, ignore_errors=True)
    subprocess.run(["bash", "-c", script], cwd=ws.root, env=ws.env, check=True)


def bench_overhead(runs: int) -> list[Figure]:
    """The harness's own cost per flow against a shell loop running the same fake maestro, with the screen
    recording off (`validation.video: false`); what recording adds per attempt is its own row."""
    flows = 50
    ws = Workspace(flows)
    recording = {**ws.env, "INVOKE_VALIDATION_VIDEO": "true"}
    ws.env["INVOKE_VALIDATION_VIDEO"] = "false"
    try:
        ws.validate()  # warm caches (pyc, page cache) before measuring either side
        ours = statistics.median(timed(ws.validate) for _ in range(runs))
        loop = statistics.median(timed(lambda: shell_loop(ws, flows)) for _ in range(runs))
        ws.env = recording
        recorded = statistics.median(timed(ws.validate) for _ in range(runs))
    finally:
        ws.clean()
    ratio = ours / loop
    per_flow_ms = max(0.0, (ours - loop) / flows * 1000)
    video_ms = max(0.0, (recorded - ours) / flows * 1000)
    return [Figure("Overhead: 50 flows, maestro exits at once", f"{ours:.2f} s",
                   f"shell loop {loop:.2f} s", f"ratio {ratio:.2f}, {per_flow_ms:.1f} ms/flow of our own",
                   "ratio <= 1.10 or < 30 ms/flow", ratio <= 1.10 or per_flow_ms < 30),
            Figure("Screen recording: 50 passing attempts (start, stop, delete on the device)", f"{recorded:.2f} s",
                   f"recording off {ours:.2f} s", f"{video_ms:.0f} ms per attempt",
                   "< 1000 ms per attempt (a real flow takes 10 s to minutes)", video_ms < 1000)]


def _instant(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def bench_parallel(runs: int) -> list[Figure]:
    """How busy the queue keeps the devices: the flow phase's wall time (first attempt's start to last
    attempt's end, from the run record) against the sum of flow durations / devices. The fixed costs
    before the first flow (preflight checks, device selection) are in the overhead figure instead."""
    devices, flows = 4, 16
    ws = Workspace(flows, devices, {"default": "sleep:1"})
    efficiencies, phases, walls = [], [], []
    try:
        for _ in range(runs):
            walls.append(timed(lambda: ws.validate("--devices", str(devices))))
            attempts = [a for f in ws.record()["flows"] for a in f["attempts"]]  # type: ignore[attr-defined]
            start = min(_instant(a["startTime"]) for a in attempts)
            end = max(_instant(a["startTime"]) + a["duration"] / 1000 for a in attempts)
            total = sum(a["duration"] for a in attempts) / 1000
            efficiencies.append(total / devices / (end - start))
            phases.append(end - start)
    finally:
        ws.clean()
    eff = statistics.median(efficiencies)
    return [Figure("Parallel efficiency: 16 flows of 1 s on 4 devices",
                   f"flow phase {statistics.median(phases):.2f} s (whole run {statistics.median(walls):.2f} s)",
                   "sum of flow durations / 4", f"efficiency {eff:.2f}", ">= 0.90", eff >= 0.90)]


# The real cost model (tests/fakes/README.md, "Real per-process costs"), scaled down 10 times so a run takes tens of seconds:
# a flow's own time 60 s, JVM start 2 s, driver install (uninstall + install of two APKs) 8 s, driver
# uninstall at exit 2 s, a killed process's session window 21 s.
SCALE = 10
REAL_COST = {"flow": 60.0, "jvm": 2.0, "driver_install": 8.0, "driver_uninstall": 2.0, "session_window": 21.0}


def fake_process_cost(ws: Workspace, runs: int = 5) -> float:
    """What one fake `maestro test` costs that the real one does not (Python start-up, its own bookkeeping):
    the median wall time of a flow with no modelled cost, run straight from here."""
    flow = next((ws.root / ".maestro").glob("*.yaml"))
    env = {**ws.env, "FAKE_MAESTRO_SCENARIO": str(ws.root / "bare.json"), "FAKE_MAESTRO_LOG": ""}
    (ws.root / "bare.json").write_text(json.dumps({"default": "pass"}))
    argv = ["maestro", "--device", SERIALS[0], "test", str(flow), "--format", "junit", "--output",
            str(ws.root / "bare.xml"), "--debug-output", str(ws.root / "bare"), "--flatten-debug-output",
            "--no-reinstall-driver"]
    return statistics.median(timed(lambda: subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, check=True))
                             for _ in range(runs))


def bench_real_cost(runs: int) -> list[Figure]:
    """Time to verdict (first `maestro test` start to the verdict) against the physical limit: the flows'
    own time divided by the devices, plus one driver install per device. The fake's own process cost
    (Python start-up, which stands in for no real cost) is measured apart and added to the limit."""
    devices, flows = 4, 16
    costs = {k: v / SCALE for k, v in REAL_COST.items() if k != "flow"}
    own = REAL_COST["flow"] / SCALE
    ws = Workspace(flows, devices, {"default": f"sleep:{own}", "costs": costs})
    log = ws.root / "maestro-log.jsonl"
    ws.env["FAKE_MAESTRO_LOG"] = str(log)
    limit = flows * own / devices + costs["driver_install"]
    times = []
    try:
        fake = fake_process_cost(ws)
        for _ in range(runs):
            log.unlink(missing_ok=True)
            (ws.root / "attempts.json").unlink(missing_ok=True)
            ws.validate("--devices", str(devices))
            end = time.time()
            calls = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
            first = min(c["ts"] for c in calls if "test" in c["argv"])
            times.append(end - first)
    finally:
        ws.clean()
    verdict = statistics.median(times)
    fake_total = fake * flows / devices
    per_flow_before = costs["driver_install"] + costs["driver_uninstall"]  # each flow reinstalled, then removed
    before = limit + flows / devices * per_flow_before
    ratio = verdict / (limit + fake_total)
    model = (f"model /{SCALE}: flow {own:g} s, JVM {costs['jvm']:g} s, driver install {costs['driver_install']:g} s, "
             f"uninstall at exit {costs['driver_uninstall']:g} s; plus the fake's own start-up {fake:.2f} s a process "
             f"= {limit + fake_total:.2f} s; reinstalling per flow would add {before - limit:.1f} s")
    return [Figure(f"Real cost model: {flows} flows on {devices} devices", f"time to verdict {verdict:.2f} s",
                   f"physical limit {limit:.2f} s ({model})", f"ratio {ratio:.2f}", "<= 1.10", ratio <= 1.10)]


def bench_shards() -> list[Figure]:
    rng = random.Random(7)  # a fixed, realistic spread: most flows short, a few long
    flows = [Flow(path=Path(f"f{i:02}.yaml"), file_name=f"f{i:02}.yaml", name=str(i), app_id="x") for i in range(40)]
    timings = {f.file_name: int(rng.lognormvariate(10.5, 0.8)) for f in flows}
    figures = []
    for count in (2, 4, 8):
        loads = shard_loads(flows, timings, count)
        ideal = sum(timings.values()) / count
        ratio = max(loads) / ideal
        figures.append(Figure(f"Shard balance: 40 recorded flows, {count} shards", f"longest {max(loads) / 1000:.0f} s",
                              f"ideal {ideal / 1000:.0f} s", f"ratio {ratio:.3f}", "<= 1.10", ratio <= 1.10))
    return figures


def bench_startup(runs: int) -> list[Figure]:
    argv = [sys.executable, "-m", "invoke", "--search-root", str(REPO), "--list"]
    python = [sys.executable, "-c", "pass"]
    ours = statistics.median(timed(lambda: subprocess.run(argv, stdout=subprocess.DEVNULL, check=True))
                             for _ in range(runs * 3))
    bare = statistics.median(timed(lambda: subprocess.run(python, check=True)) for _ in range(runs * 3))
    return [Figure("Start-up: invoke --list", f"{ours * 1000:.0f} ms", f"bare python {bare * 1000:.0f} ms",
                   f"ratio {ours / bare:.1f}", "< 500 ms", ours < 0.5)]


def bench_memory(flows: int, per_flow: int) -> list[Figure]:
    ws = Workspace(flows, 1, {"default": f"spam:{per_flow}"})
    runner = (
        "import resource, sys\n"
        "from invoke.main import program\n"
        "try:\n"
        "    program.run(sys.argv, exit=False)\n"
        "finally:\n"
        "    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)\n"
    )
    try:
        argv = [sys.executable, "-c", runner, "--search-root", str(REPO), "validate", "--retries", "0"]
        start = time.perf_counter()
        done = subprocess.run(argv, cwd=ws.root, env=ws.env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              check=True)
        wall = time.perf_counter() - start
        peak_mb = int(done.stderr.decode().strip().splitlines()[-1]) / 1024
        written = sum(p.stat().st_size for p in (ws.root / "build/validation/flows").rglob("stdout.log"))
        record_mb = (ws.root / "build/validation/results.json").stat().st_size / 2**20
    finally:
        ws.clean()
    return [Figure(f"Memory: {flows} flows, {written / 2**20:.0f} MB of output", f"peak RSS {peak_mb:.0f} MB",
                   f"results.json {record_mb:.1f} MB, {wall:.0f} s", "outputs streamed to disk",
                   "< 200 MB", peak_mb < 200)]


def history_record(number: int, flows: int, rng: random.Random) -> RunRecord:
    """Run `number` of a synthetic history: mostly passing flows, some flaky, a few failing streaks."""
    record = RunRecord(runId=f"gh-{1_000_000 + number}", verdict="pass",
                       job=Job(jobId=f"{number}/validate", commit=f"{number:040x}", trigger="deploy",
                               startTime=f"2026-01-01T00:00:{number % 60:02d}.000Z",
                               endTime=f"2026-01-01T00:10:{number % 60:02d}.000Z"))
    for index in range(flows):
        roll = rng.random()
        status = "failed" if roll < 0.04 or (index % 17 == 0 and number % 50 < 10) else "flaky" if roll < 0.12 else "passed"
        duration = rng.randint(8_000, 40_000)
        record.flows.append(FlowResult(f"flow-{index:03}.yaml", f"flow {index}", status=status, duration=duration,
                                       device="emulator-5554", errorSummary="Element not found" if status != "passed" else "",
                                       attempts=[Attempt(1, status, 0, duration, "emulator-5554", "")]))
    return record


def bench_history(runs: int, stored: int = 1000, flows: int = 100) -> list[Figure]:
    """`invoke history` (the table, --json, and one flow's runs) on a file of `stored` runs x `flows` flows,
    written through History.append; against `invoke --list` (the start-up every task pays)."""
    root = Path(tempfile.mkdtemp(prefix="prodval-bench-history-"))
    path = root / "build" / "history.sqlite"
    rng = random.Random(16)
    try:
        with History.open(path, print, keep=stored) as store:
            start = time.perf_counter()
            for number in range(stored):
                store.append(history_record(number, flows, rng))
            append_ms = (time.perf_counter() - start) / stored * 1000
        env = {**os.environ, "HOME": str(root)}
        base = [sys.executable, "-m", "invoke", "--search-root", str(REPO)]

        cpu: dict[str, float] = {}

        def run(*args: str) -> float:
            """The median wall time of `invoke *args`; its median CPU time (user + sys) goes to `cpu`."""
            walls, cpus = [], []
            for _ in range(runs):
                before = resource.getrusage(resource.RUSAGE_CHILDREN)
                walls.append(timed(lambda: subprocess.run([*base, *args], cwd=root, env=env,
                                                          stdout=subprocess.DEVNULL, check=True)))
                after = resource.getrusage(resource.RUSAGE_CHILDREN)
                cpus.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
            cpu[" ".join(args)] = statistics.median(cpus)
            return statistics.median(walls)
        def in_process() -> None:  # what the task does after start-up: open, the table's queries, the text
            with History.open(path, print, repair=False) as store:
                render_summary(path, store.run_count(), 20, flow_summaries(store, 20), 0.2)
        ours = statistics.median(timed(in_process) for _ in range(runs * 3))
        listing = run("--list")
        table_s, as_json, one_flow = run("history"), run("history", "--json"), run("history", "--flow", "flow-017.yaml",
                                                                                   "--last", "50")
        size_mb = path.stat().st_size / 2**20
    finally:
        shutil.rmtree(root, ignore_errors=True)
    worst = max(table_s, as_json, one_flow)
    slowest_cpu = max(value for key, value in cpu.items() if key != "--list")
    return [Figure(f"History: invoke history on {stored} runs x {flows} flows ({size_mb:.0f} MB)",
                   f"table {table_s * 1000:.0f} ms, --json {as_json * 1000:.0f} ms, --flow {one_flow * 1000:.0f} ms",
                   f"invoke --list {listing * 1000:.0f} ms (CPU {cpu['--list'] * 1000:.0f} ms)",
                   f"{ours * 1000:.0f} ms of our own in-process (open, queries, table); CPU of the slowest "
                   f"{slowest_cpu * 1000:.0f} ms; append of one run {append_ms:.1f} ms; load average "
                   f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs", "< 1 s", worst < 1.0)]


BENCHES: dict[str, Callable[[bool], list[Figure]]] = {
    "startup": lambda quick: bench_startup(3 if quick else 5),
    "shards": lambda quick: bench_shards(),
    "overhead": lambda quick: bench_overhead(3 if quick else 5),
    "parallel": lambda quick: bench_parallel(3 if quick else 5),
    "cost": lambda quick: bench_real_cost(1 if quick else 3),
    "memory": lambda quick: bench_memory(100, 1_000_000) if quick else bench_memory(500, 1_000_000),
    "history": lambda quick: bench_history(3 if quick else 5),
}


def merged_rows(previous: str, figures: list[Figure]) -> list[str]:
    """The previous table's rows with those of `figures` (same name) replaced or added: `--only`'s table."""
    fresh = {f.name: line for f, line in zip(figures, table(figures).splitlines()[2:], strict=True)}
    rows = []
    for line in previous.splitlines():
        if line.startswith("| ") and not line.startswith(("| benchmark |", "| when |")) and "|---" not in line:
            key = line[2:].split(" | ")[0]
            if key in fresh:
                rows.append(fresh.pop(key))
            elif previous.find(line) < previous.find(SUITE_SECTION) or SUITE_SECTION not in previous:
                rows.append(line)
    return rows + list(fresh.values())


def table(figures: list[Figure]) -> str:
    lines = ["| benchmark | measured | baseline | result | target | ok |", "|---|---|---|---|---|---|"]
    lines += [f"| {f.name} | {f.value} | {f.baseline} | {f.result} | {f.target} | {'yes' if f.ok else 'NO'} |"
              for f in figures]
    return "\n".join(lines)


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{platform.system()} {platform.release()}, {cpu}, {os.cpu_count()} CPUs, Python {platform.python_version()}"


SUITE_SECTION = "## Test-suite timing"


def kept_sections(previous: str) -> str:
    """What of the previous BENCHMARKS.md a new run keeps: the test-suite timing, measured by hand
    (`time nox -s tests`, with the machine's load), from its heading to the end."""
    at = previous.find(SUITE_SECTION)
    return "" if at < 0 else "\n" + previous[at:]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer runs and a smaller memory run")
    parser.add_argument("--output", default=str(REPO / "BENCHMARKS.md"))
    parser.add_argument("--only", default="", help=f"comma-separated: {', '.join(BENCHES)}")
    args = parser.parse_args()
    chosen = [name.strip() for name in args.only.split(",") if name.strip()] or list(BENCHES)
    unknown = [name for name in chosen if name not in BENCHES]
    if unknown:
        parser.error(f"unknown benchmark(s) {', '.join(unknown)}; known: {', '.join(BENCHES)}")
    figures = [figure for name in chosen for figure in BENCHES[name](args.quick)]
    text = table(figures)
    print(text)
    stamp = time.strftime("%Y-%m-%d", time.gmtime())
    output = Path(args.output)
    previous = output.read_text() if output.is_file() else ""
    kept = kept_sections(previous)
    if args.only and previous:  # the other rows as they were measured
        text = "\n".join(table([]).splitlines() + merged_rows(previous, figures))
    output.write_text(
        "# Benchmarks\n\n"
        "Written by `nox -s bench` (tests/benchmarks/bench.py). Every figure is measured on the fake toolchain of\n"
        "tests/fakes, so only the harness's own cost is timed, as the median of several runs, against a baseline\n"
        "measured in the same run.\n\n"
        f"Latest run: {stamp}, {'quick' if args.quick else 'full'} mode, on {machine()}"
        + (f" (only {', '.join(chosen)}: the other rows are from an earlier run)" if args.only and previous else "")
        + ".\n\n" + text + "\n" + kept
    )
    return 0 if all(f.ok for f in figures) else 1


if __name__ == "__main__":
    sys.exit(main())
