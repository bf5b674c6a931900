"""`invoke merge-results`: the shards of one run, merged into one run record and one verdict."""

from __future__ import annotations

import glob
import os
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path

from .errors import ConfigError
from .outcomes import JobStatus, Verdict
from .results import (
    RECORD_NAME,
    RUNNING,
    VALIDATE_STAGE,
    RunRecord,
    Stage,
    alert_channels,
    job_from_env,
    load_record,
    now_iso,
)
from .stage import new_run_id


def find_shard_records(spec: str, exclude: Path | None = None) -> list[Path]:
    """results.json files under a folder (any depth), or matched by a glob of folders. None found (or
    no such folder: no shard uploaded anything) is an empty list: `merge` then records an `error`."""
    if glob.has_magic(spec):
        folders = [Path(p) for p in sorted(glob.glob(spec))]
        found = [f / RECORD_NAME for f in folders if (f / RECORD_NAME).is_file()]
    else:
        root = Path(spec)
        if root.exists() and not root.is_dir():
            raise ConfigError(f"'{spec}' is not a folder", fix="pass the folder that holds the shards' results folders")
        found = sorted(root.rglob(RECORD_NAME)) if root.is_dir() else []
    if exclude is not None:
        found = [p for p in found if p.resolve() != (exclude / RECORD_NAME).resolve()]
    return found


def no_records(out_dir: Path, environ: Mapping[str, str]) -> RunRecord:
    """The record of a run that left no shard record (every shard died before uploading, or the runner
    never got that far): verdict `error`, so notify still alerts and posts the commit status."""
    # the deployed commit as the workflow passes it to invoke (notify.deployed_sha), else GITHUB_SHA
    job = job_from_env(environ, environ.get("INVOKE_NOTIFY_DEPLOYED_SHA"))
    job.startTime = job.endTime = now_iso()
    job.status = JobStatus.FAILURE
    record = RunRecord(runId=new_run_id(environ), job=job, verdict=Verdict.ERROR)
    record.environment.alertChannels = alert_channels(environ)
    record.stages[VALIDATE_STAGE] = Stage(Verdict.ERROR, job.startTime, job.endTime,
                                      "no run record to merge: no shard (or runner) recorded a result before "
                                      f"{out_dir} was written; see the workflow run's log for the job that failed")
    return record


def merge(paths: list[Path], out_dir: Path, environ: Mapping[str, str] | None = None) -> RunRecord:
    """One record from the shard records; refuses records of different runs or overlapping shards.
    No records at all: an `error` record (see `no_records`), so the chain still notifies."""
    if not paths:
        return no_records(out_dir, os.environ if environ is None else environ)
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
    records = newest_attempts(records)
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
                attempt.video = f"{prefix}/{attempt.video}" if attempt.video else ""
            merged.flows.append(flow)
        merged.devices += [d for d in record.devices if d not in merged.devices]
        merged.retiredDevices += record.retiredDevices
        merged.environment.maestroFlowPaths = sorted(set(merged.environment.maestroFlowPaths)
                                                     | set(record.environment.maestroFlowPaths))
        merged.job.artifactPaths += [f"{prefix}/{p}" for p in record.job.artifactPaths]
        for name, stage in record.stages.items():
            if stage.error:
                errors.append(f"{label}: {stage.error}")
            if name != VALIDATE_STAGE and name not in merged.stages:
                merged.stages[name] = stage
        if record.verdict is None:
            errors.append(f"{label}: did not finish (no verdict in {folder / RECORD_NAME})")
    if first.shard:
        missing = sorted(set(range(1, first.shard["count"] + 1)) - set(seen))
        errors += [f"shard {i}/{first.shard['count']} is missing" for i in missing]
    merged.flows.sort(key=lambda f: f.flowFileName)
    validate = Stage(RUNNING, merged.job.startTime, now_iso(), "\n".join(errors))
    merged.stages[VALIDATE_STAGE] = validate
    verdict = merged.decide()
    if errors and verdict == Verdict.PASS:
        verdict = Verdict.ERROR
    merged.verdict = validate.outcome = verdict
    merged.job.status = JobStatus.SUCCESS if verdict == Verdict.PASS else JobStatus.FAILURE
    return merged


def newest_attempts(records: list[tuple[Path, RunRecord]]) -> list[tuple[Path, RunRecord]]:
    """Per shard, only the record of the newest run attempt ("Re-run failed jobs" leaves the first
    attempt's records of the re-run shards beside the new ones); records of one attempt stay as they are."""
    newest: dict[int, int] = {}
    for _, record in records:
        if record.shard:
            index, attempt = record.shard["index"], record.shard.get("attempt", 1)
            newest[index] = max(newest.get(index, attempt), attempt)
    return [(folder, record) for folder, record in records
            if not record.shard or record.shard.get("attempt", 1) == newest[record.shard["index"]]]
