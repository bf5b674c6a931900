"""What the invoke tasks call: build settings, run, and turn errors into exit codes (only here)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from .console import Console
from .errors import ValidationError
from .settings import load


def validate(section: Mapping[str, Any], flags: Mapping[str, Any], environ: Mapping[str, str] | None = None) -> int:
    from .validate import run_validation

    environ = os.environ if environ is None else environ
    console = Console(environ)
    try:
        settings = load(section, flags)
    except ValidationError as exc:
        console.error(str(exc), title="configuration")
        return exc.exit_code
    return run_validation(settings, environ, console)


def merge_results(section: Mapping[str, Any], shards: str, results_dir: str | None,
                  environ: Mapping[str, str] | None = None) -> int:
    from pathlib import Path

    from .merge import find_shard_records, merge
    from .results import VERDICT_EXIT, RecordWriter
    from .secrets import Redactor
    from .validate import announce

    environ = os.environ if environ is None else environ
    console = Console(environ, Redactor.from_env(environ))
    try:
        settings = load(section, {"results_dir": results_dir})
        paths = find_shard_records(shards, exclude=settings.results_dir)
        console.step(f"Merging {len(paths)} shard record(s) into {settings.results_dir}")
        merged = merge(paths, settings.results_dir)
    except ValidationError as exc:
        console.error(str(exc), title="merge-results")
        return exc.exit_code
    writer = RecordWriter(Path(settings.results_dir), console.redact)
    writer.finish(merged)
    repo_paths = merged.environment.maestroFlowPaths
    announce(merged, console, writer, {
        f.flowFileName: next((p for p in repo_paths if p.endswith(f.flowFileName)), f.flowFileName)
        for f in merged.flows
    })
    assert merged.verdict is not None
    return VERDICT_EXIT[merged.verdict]


def report(section: Mapping[str, Any], results_dir: str | None, commit: str | None = None,
           environ: Mapping[str, str] | None = None) -> int:
    """`invoke report`: render report.html again from the run record in the results folder."""
    from .errors import ReportError
    from .report import deployed_commit, write_report
    from .results import RECORD_NAME, load_record
    from .secrets import Redactor

    environ = os.environ if environ is None else environ
    console = Console(environ, Redactor.from_env(environ))
    try:
        settings = load(section, {"results_dir": results_dir})
        console.redact = Redactor.from_env(environ, settings.flow_env)
        record_path = settings.results_dir / RECORD_NAME
        record = load_record(record_path)
        if record is None:
            raise ReportError(f"no run record at {record_path}",
                              fix="run `invoke validate` first, or pass --results-dir with the folder holding results.json")
        try:
            path = write_report(record, settings.results_dir, console.redact, commit=commit or deployed_commit(environ))
        except OSError as exc:
            raise ReportError(f"could not write the report in {settings.results_dir}: {exc}",
                              fix="check that the results folder is writable and the disk is not full") from None
    except ValidationError as exc:
        console.error(str(exc), title="report")
        return exc.exit_code
    console.info(f"report: {path}")
    return 0
