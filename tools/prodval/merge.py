"""`invoke merge-results`: the shards of one run, merged into one run record and one verdict."""

from __future__ import annotations

import glob
import os
from dataclasses import replace
from pathlib import Path

from .errors import ConfigError
from .results import RECORD_NAME, RunRecord, Stage, load_record, now_iso


def find_shard_records(spec: str, exclude: Path | None = None) -> list[Path]:
    """results.json files under a folder (any depth), or matched by a glob of folders."""
    if glob.has_magic(spec):
        folders = [Path(p) for p in sorted(glob.glob(spec))]
        found = [f / RECORD_NAME for f in folders if (f / RECORD_NAME).is_file()]
    else:
        root = Path(spec)
        if not root.is_dir():
            raise ConfigError(f"'{spec}' is not a folder", fix="pass the folder that holds the shards' results folders")
        found = sorted(root.rglob(RECORD_NAME))
    if exclude is not None:
        found = [p for p in found if p.resolve() != (exclude / RECORD_NAME).resolve()]
    if not found:
        raise ConfigError(f"no results.json found in '{spec}'",
                          fix="download every shard's results folder first (actions/download-artifact)")
    return found


def merge(paths: list[Path], out_dir: Path) -> RunRecord:
    """One record from the shard records; refuses records of different runs or overlapping shards."""
    records: list[tuple[Path, RunRecord]] = []
    for path in paths:
        record = load_record(path)
        if record is None:
            raise ConfigError(f"'{path}' is not a run record", fix="pass the results folders written by `invoke validate`")
        records.append((path.parent, record))
    run_ids = sorted({r.runId for _, r in records})
    if len(run_ids) > 1:
        listing = ", ".join(f"{d} ({r.runId})" for d, r in records)
        raise ConfigError(f"these records belong to different runs: {listing}",
                          fix="merge only the shards of one run; set VALIDATION_RUN_ID to share one id across runners")
    counts = {r.shard["count"] if r.shard else 0 for _, r in records}
    if len(counts) > 1 or (0 in counts and len(records) > 1):
        raise ConfigError("the records are not shards of one split (different or missing shard counts)",
                          fix="run every shard with the same --shard I/N count")
    seen: dict[int, Path] = {}
    for folder, record in records:
        if record.shard:
            index = record.shard["index"]
            if index in seen:
                raise ConfigError(f"shard {index} appears twice: {seen[index]} and {folder}",
                                  fix="pass each shard's results folder once")
            seen[index] = folder

    first = records[0][1]
    # A copy of the job with no paths: each shard's (the first's included) are added below, prefixed.
    merged = RunRecord(runId=first.runId, job=replace(first.job, artifactPaths=[]),
                       environment=replace(first.environment), apk=first.apk)
    merged.job.startTime = min(r.job.startTime for _, r in records if r.job.startTime)
    merged.job.endTime = max((r.job.endTime for _, r in records), default="")
    names: dict[str, Path] = {}
    errors: list[str] = []
    for folder, record in sorted(records, key=lambda fr: fr[1].shard["index"] if fr[1].shard else 0):
        prefix = Path(os.path.relpath(folder, out_dir)).as_posix()
        label = f"shard {record.shard['index']}/{record.shard['count']}" if record.shard else str(folder)
        for flow in record.flows:
            if flow.flowFileName in names:
                raise ConfigError(f"{flow.flowFileName} is in two shards ({names[flow.flowFileName]} and {folder})",
                                  fix="run the shards with the same flows, include/exclude tags and timings")
            names[flow.flowFileName] = folder
            flow.artifactPaths = [f"{prefix}/{p}" for p in flow.artifactPaths]
            for attempt in flow.attempts:
                attempt.artifactPaths = [f"{prefix}/{p}" for p in attempt.artifactPaths]
            merged.flows.append(flow)
        merged.devices += [d for d in record.devices if d not in merged.devices]
        merged.retiredDevices += record.retiredDevices
        merged.environment.maestroFlowPaths = sorted(set(merged.environment.maestroFlowPaths)
                                                     | set(record.environment.maestroFlowPaths))
        merged.job.artifactPaths += [f"{prefix}/{p}" for p in record.job.artifactPaths]
        for name, stage in record.stages.items():
            if stage.error:
                errors.append(f"{label}: {stage.error}")
            if name != "validate" and name not in merged.stages:
                merged.stages[name] = stage
        if record.verdict is None:
            errors.append(f"{label}: did not finish (no verdict in {folder / RECORD_NAME})")
    if first.shard:
        missing = sorted(set(range(1, first.shard["count"] + 1)) - set(seen))
        errors += [f"shard {i}/{first.shard['count']} is missing" for i in missing]
    merged.flows.sort(key=lambda f: f.flowFileName)
    validate = Stage("running", merged.job.startTime, now_iso(), "\n".join(errors))
    merged.stages["validate"] = validate
    verdict = merged.decide()
    if errors and verdict == "pass":
        verdict = "error"
    merged.verdict = validate.outcome = verdict
    merged.job.status = "success" if verdict == "pass" else "failure"
    return merged
