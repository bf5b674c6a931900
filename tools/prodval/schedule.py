"""Which flow runs where: order by recorded durations, and deterministic shares for CI runners.

All pure functions. Durations come from `timings.json` in the results folder (written after every
validation, so it survives the new record each chain starts) or from any run record (`--timings`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .errors import ConfigError
from .flows import Flow
from .outcomes import Status
from .results import PASSING, RELEASED, atomic_write

TIMINGS_NAME = "timings.json"


def load_timings(path: Path) -> dict[str, int]:
    """flowFileName -> duration in ms of one attempt, from a timings.json or a results.json."""
    try:
        data: Any = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"the timings file '{path}' does not exist",
                          fix="pass --timings with a results.json or timings.json from an earlier run") from None
    except (OSError, ValueError) as exc:
        raise ConfigError(f"the timings file '{path}' is not readable JSON: {exc}",
                          fix="pass a results.json or timings.json written by `invoke validate`") from None
    if isinstance(data, dict) and isinstance(data.get("flows"), list):
        return timings_from_record(data)
    if isinstance(data, dict) and all(isinstance(v, int) for v in data.values()):
        return {str(k): int(v) for k, v in data.items()}
    raise ConfigError(f"the timings file '{path}' is neither a run record nor a timings file",
                      fix="pass a results.json or timings.json written by `invoke validate`")


def timings_from_record(record: Mapping[str, Any]) -> dict[str, int]:
    """The duration of the last attempt of each flow that ran (an attempt, not the sum of retries), with this
    run's build (not the released app's rerun of impact triage)."""
    timings: dict[str, int] = {}
    for flow in record.get("flows", []):
        attempts = [a for a in flow.get("attempts") or [] if a.get("apk") != RELEASED]
        if attempts and flow.get("status") not in (Status.TIMED_OUT, Status.NOT_RUN):
            timings[flow["flowFileName"]] = int(attempts[-1]["duration"])
    return timings


def _estimate(flows: Sequence[Flow], timings: Mapping[str, int]) -> dict[str, int]:
    """Known durations; unknown flows count as the mean of the known ones (1 when none is known)."""
    known = [timings[f.file_name] for f in flows if f.file_name in timings]
    default = round(sum(known) / len(known)) if known else 1
    return {f.file_name: max(1, timings.get(f.file_name, default)) for f in flows}


def longest_first(flows: Sequence[Flow], timings: Mapping[str, int]) -> list[Flow]:
    """Longest expected flows first, so no device is left running one long flow at the end."""
    if not timings:
        return list(flows)
    cost = _estimate(flows, timings)
    return sorted(flows, key=lambda f: (-cost[f.file_name], f.file_name))


def shard(flows: Sequence[Flow], timings: Mapping[str, int], index: int, count: int) -> list[Flow]:
    """Shard `index` (1-based) of `count`: greedy longest-processing-time bins, deterministic.

    With no durations every flow costs the same, which gives equal counts (differing by at most one).
    Ties are broken by file name, so every runner computes the same shares from the same inputs.
    """
    cost = _estimate(flows, timings)
    bins: list[list[Flow]] = [[] for _ in range(count)]
    loads = [0] * count
    for flow in sorted(flows, key=lambda f: (-cost[f.file_name], f.file_name)):
        target = min(range(count), key=lambda i: (loads[i], len(bins[i]), i))
        bins[target].append(flow)
        loads[target] += cost[flow.file_name]
    return sorted(bins[index - 1], key=lambda f: f.file_name)


def shard_loads(flows: Sequence[Flow], timings: Mapping[str, int], count: int) -> list[int]:
    """Expected milliseconds per shard (for the benchmark and the log)."""
    cost = _estimate(flows, timings)
    return [sum(cost[f.file_name] for f in shard(flows, timings, i, count)) for i in range(1, count + 1)]


def remember_timings(results_dir: Path, record: Mapping[str, Any]) -> None:
    """Keep a run's durations in the results folder's timings.json, for ordering the next run."""
    path = results_dir / TIMINGS_NAME
    try:
        known = load_timings(path) if path.is_file() else {}
    except ConfigError:
        known = {}
    known.update(timings_from_record(record))
    if known:
        atomic_write(path, json.dumps(dict(sorted(known.items())), indent=1) + "\n")


def check_execution_order(sequence: Sequence[str], shard: tuple[int, int] | None, devices: int) -> None:
    """Maestro refuses `executionOrder` with sharding; so do we, for --shard and for --devices > 1
    (the ordered flows must run one after another on one device, before the rest)."""
    if not sequence:
        return
    if shard is not None or devices > 1:
        how = f"--shard {shard[0]}/{shard[1]}" if shard is not None else f"--devices {devices}"
        raise ConfigError(
            f"the workspace config's executionOrder ({', '.join(sequence)}) cannot run with {how}: those flows run "
            "first, in order, on one device, as Maestro runs them (Maestro refuses executionOrder with sharding too)",
            fix="run on one device without --shard, or remove executionOrder from the workspace config "
                "(or point --config at a config without it)")


def order_flows(flows: Sequence[Flow], sequence: Sequence[str], timings: Mapping[str, int]) -> list[Flow]:
    """The executionOrder flows first, in their order, then the rest longest first."""
    ordered = {f.file_name: f for f in flows if f.file_name in sequence}
    first = [ordered[name] for name in sequence if name in ordered]
    return first + longest_first([f for f in flows if f.file_name not in ordered], timings)


def stop_reason(flow: Flow, status: str, sequence: Sequence[str], continue_on_failure: bool) -> str:
    """Why the rest of the run does not run after `flow` ended with `status` ('' when it goes on)."""
    if continue_on_failure or flow.file_name not in sequence or status in PASSING:
        return ""
    return (f"not run: {flow.file_name} ({flow.name}), an executionOrder flow, ended {status} and the workspace "
            "config says continueOnFailure: false")
