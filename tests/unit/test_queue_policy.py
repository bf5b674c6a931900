"""validate's shared queue and its retry, avoid and retire policy, without a process: `_attempt` is scripted."""

from __future__ import annotations

import io
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from prodval.console import Console
from prodval.errors import DeviceError, ValidationError
from prodval.flows import Flow
from prodval.maestro import ERROR, FAILED, PASSED, TIMED_OUT, Outcome
from prodval.results import FlowResult, Job, RecordWriter, RunRecord
from prodval.secrets import Redactor
from prodval.validate import RETIRE_AFTER, Plan, _Job, _Queue, _Runner


def flow(name: str) -> Flow:
    return Flow(path=Path(".maestro") / name, file_name=name, name=name.removesuffix(".yaml"), app_id="com.x")


def job(name: str) -> _Job:
    return _Job(flow(name), FlowResult(flowFileName=name, name=name))


def taken(queue: _Queue, serial: str) -> str | None:
    got = queue.take(serial)
    return None if got is None else got.flow.file_name


# ---- the queue ----------------------------------------------------------------------------------------

def test_flows_are_handed_out_in_order_and_a_retry_goes_to_the_front() -> None:
    jobs = [job("a.yaml"), job("b.yaml"), job("c.yaml")]
    queue = _Queue(list(jobs), ("s1",))
    first = queue.take("s1")
    assert first is jobs[0]
    queue.done(first, retry=True)
    assert taken(queue, "s1") == "a.yaml"  # the retry, before b
    queue.done(jobs[0], retry=False)
    assert [taken(queue, "s1"), taken(queue, "s1")] == ["b.yaml", "c.yaml"]
    queue.done(jobs[1], retry=False)
    queue.done(jobs[2], retry=False)
    assert queue.take("s1") is None and queue.left() == []


def test_a_flow_avoids_the_device_of_its_infrastructure_error_while_another_is_healthy() -> None:
    a, b = job("a.yaml"), job("b.yaml")
    a.avoid.add("s1")
    queue = _Queue([a, b], ("s1", "s2"))
    assert taken(queue, "s1") == "b.yaml"  # a is first, but not for s1
    assert taken(queue, "s2") == "a.yaml"


def test_the_avoided_device_takes_the_flow_when_no_other_device_is_left() -> None:
    a = job("a.yaml")
    a.avoid.add("s1")
    queue = _Queue([a], ("s1", "s2"))
    queue.retire("s2")
    assert taken(queue, "s1") == "a.yaml"
    b = job("b.yaml")
    b.avoid.update({"s1", "s2"})  # it hit an infrastructure error on every device: any may try again
    queue = _Queue([b], ("s1", "s2"))
    assert taken(queue, "s2") == "b.yaml"


def test_a_device_waits_while_a_flow_that_may_come_back_still_runs() -> None:
    a = job("a.yaml")
    queue = _Queue([a], ("s1", "s2"))
    assert queue.take("s1") is a
    got: list[_Job | None] = []
    waiter = threading.Thread(target=lambda: got.append(queue.take("s2")))
    waiter.start()
    try:
        a.avoid.add("s1")
        queue.done(a, retry=True)  # wakes s2, which takes the retry
        waiter.join(30)
        assert got == [a]
    finally:
        queue.cancel()
        waiter.join(30)
    assert not waiter.is_alive()


def test_nothing_left_and_nothing_running_ends_the_device() -> None:
    a = job("a.yaml")
    queue = _Queue([a], ("s1", "s2"))
    assert queue.take("s1") is a
    got: list[_Job | None] = [a]
    waiter = threading.Thread(target=lambda: got.append(queue.take("s2")))
    waiter.start()
    queue.done(a, retry=False)
    waiter.join(30)
    assert not waiter.is_alive() and got == [a, None]


def test_a_retired_or_cancelled_device_takes_nothing_and_the_rest_is_left() -> None:
    queue = _Queue([job("a.yaml"), job("b.yaml")], ("s1", "s2"))
    queue.retire("s1")
    assert queue.take("s1") is None
    queue.cancel()
    assert queue.take("s2") is None and queue.cancelled.is_set()
    assert [j.flow.file_name for j in queue.left()] == ["a.yaml", "b.yaml"]


# ---- the policy: retry, avoid, retire -----------------------------------------------------------------

Script = Callable[[str, str, int], Outcome]  # (flow file name, serial, attempt number) -> outcome


class ScriptedRunner(_Runner):
    """The real runner with `_attempt` replaced: no maestro, the outcome comes from `script`."""

    def __init__(self, tmp_path: Path, names: list[str], serials: tuple[str, ...], attempts: int,
                 script: Script) -> None:
        flows = tuple(flow(n) for n in names)
        plan = Plan(run_id="r1", serials=serials, maestro=Path("maestro"), flows=flows, flow_env=(),
                    attempts=attempts, timeout=60, results_dir=tmp_path / "results", session_wait=0)
        record = RunRecord(runId="r1", job=Job(jobId="local"),
                           flows=[FlowResult(flowFileName=n, name=n) for n in names])
        self.out, self.err = io.StringIO(), io.StringIO()
        console = Console({}, Redactor(), out=self.out, err=self.err)
        super().__init__(plan, record, RecordWriter(plan.results_dir, Redactor()), console, {})
        self.script = script
        self.calls: list[tuple[str, str, int]] = []
        self.calls_lock = threading.Lock()

    def _attempt(self, job: _Job, serial: str) -> Outcome:
        with self.calls_lock:
            self.calls.append((job.flow.file_name, serial, job.attempt))
        return self.script(job.flow.file_name, serial, job.attempt)


def outcome(status: str) -> Outcome:
    return Outcome(status, "" if status == PASSED else f"it {status}")


def test_a_failed_flow_is_retried_on_the_spot_until_its_attempts_are_spent(tmp_path: Path) -> None:
    runner = ScriptedRunner(tmp_path, ["a.yaml", "b.yaml"], ("s1",), 3,
                            lambda name, serial, n: outcome(FAILED if name == "a.yaml" else PASSED))
    jobs = runner.queue.left()
    runner.run()
    assert [j.avoid for j in jobs] == [set(), set()]  # a flow's own failure blames no device
    assert runner.calls == [("a.yaml", "s1", 1), ("a.yaml", "s1", 2), ("a.yaml", "s1", 3), ("b.yaml", "s1", 1)]


def test_a_flaky_flow_stops_at_its_first_pass(tmp_path: Path) -> None:
    runner = ScriptedRunner(tmp_path, ["a.yaml"], ("s1",), 3,
                            lambda name, serial, n: outcome(TIMED_OUT if n == 1 else PASSED))
    runner.run()
    assert runner.calls == [("a.yaml", "s1", 1), ("a.yaml", "s1", 2)]
    assert runner.record.retiredDevices == []  # one device is never retired


@pytest.mark.parametrize("status", [ERROR, TIMED_OUT])
def test_an_infrastructure_error_is_retried_on_another_device(tmp_path: Path, status: str) -> None:
    first: list[str] = []
    lock = threading.Lock()

    def script(name: str, serial: str, number: int) -> Outcome:
        with lock:
            if name == "a.yaml" and number == 1:
                first.append(serial)
                return outcome(status)
        return outcome(PASSED)

    runner = ScriptedRunner(tmp_path, ["a.yaml"], ("s1", "s2"), 2, script)
    (job_a,) = runner.queue.left()
    runner.run()
    (bad,) = first
    assert job_a.avoid == {bad}
    assert [c for c in runner.calls if c[0] == "a.yaml"] == [("a.yaml", bad, 1),
                                                             ("a.yaml", "s2" if bad == "s1" else "s1", 2)]


def test_a_device_with_repeated_infrastructure_errors_leaves_the_rotation(tmp_path: Path) -> None:
    bad_done = threading.Event()  # the good device's first flow ends once the bad one has failed twice

    def script(name: str, serial: str, number: int) -> Outcome:
        if serial == "bad":
            if sum(1 for c in runner.calls if c[1] == "bad") >= RETIRE_AFTER:
                bad_done.set()
            return outcome(ERROR)
        bad_done.wait(60)
        return outcome(PASSED)

    names = [f"f{i}.yaml" for i in range(5)]
    runner = ScriptedRunner(tmp_path, names, ("good", "bad"), 2, script)
    runner.run()
    assert bad_done.is_set()
    assert len([c for c in runner.calls if c[1] == "bad"]) == RETIRE_AFTER
    assert runner.record.retiredDevices == [{"serial": "bad", "reason": f"{RETIRE_AFTER} infrastructure errors in a row"}]
    assert {c[0] for c in runner.calls if c[1] == "good"} == set(names)  # every flow ran on the good one
    assert "bad leaves the rotation for the rest of the run" in runner.out.getvalue() + runner.err.getvalue()
    assert runner.queue.left() == []


def test_a_failure_does_not_count_towards_retiring(tmp_path: Path) -> None:
    # failed, error, failed, error on one device of two: never two infrastructure errors in a row
    statuses = iter([FAILED, ERROR, FAILED, ERROR, FAILED])
    lock = threading.Lock()

    def script(name: str, serial: str, number: int) -> Outcome:
        with lock:
            return outcome(next(statuses)) if serial == "s1" else outcome(PASSED)

    gate = threading.Event()

    def s2_waits(name: str, serial: str, number: int) -> Outcome:
        if serial == "s2":
            gate.wait(60)
        elif len([c for c in runner.calls if c[1] == "s1"]) == 4:
            gate.set()
        return script(name, serial, number)

    runner = ScriptedRunner(tmp_path, [f"f{i}.yaml" for i in range(5)], ("s1", "s2"), 1, s2_waits)
    runner.run()
    assert runner.record.retiredDevices == []
    assert len([c for c in runner.calls if c[1] == "s1"]) >= 4


def test_when_every_device_is_retired_the_flows_left_make_a_device_error(tmp_path: Path) -> None:
    runner = ScriptedRunner(tmp_path, [f"f{i}.yaml" for i in range(6)], ("s1", "s2"), 1,
                            lambda name, serial, n: outcome(ERROR))
    with pytest.raises(DeviceError, match=r"every device left the rotation .*flow\(s\) did not run"):
        runner.run()
    assert {r["serial"] for r in runner.record.retiredDevices} == {"s1", "s2"}
    assert len(runner.calls) == 2 * RETIRE_AFTER


def test_a_usage_error_stops_the_run_without_a_retry(tmp_path: Path) -> None:
    runner = ScriptedRunner(tmp_path, ["a.yaml", "b.yaml"], ("s1",), 3,
                            lambda name, serial, n: Outcome(ERROR, "Unknown option: '--no-ansi'", usage=True))
    with pytest.raises(ValidationError, match="Unknown option"):
        runner.run()
    assert runner.calls == [("a.yaml", "s1", 1)]
    assert runner.record.retiredDevices == []
