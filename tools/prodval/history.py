"""The run history: every finished run and its flows in one SQLite file, so a run knows what came before.

    remember(record, settings, warn)     after the verdict, before the derived files: `annotate` the record
                                         from the stored runs (strip, rates, failing since, p50/p95, slow),
                                         then `append` it; never raises for history trouble
    History.open(path, warn)             the store: created when missing; a corrupt, unreadable or newer-schema
                                         file is set aside next to itself (`<name>.<why>-<when>`), `warn`
                                         says so once, and a fresh file takes its place
    flow_summaries / render_*            what `invoke history` shows

The file is SQLite through the standard library (nothing to run), in WAL mode with a busy timeout; every run
is written in one `BEGIN IMMEDIATE` transaction, so concurrent writers (two runs at once, a re-run) queue
rather than corrupt it. Its schema version is `PRAGMA user_version`; `MIGRATIONS[n]` takes a file from
version n to n + 1, applied in order when a file is opened (docs/history.md).

Statuses: failing is failed, error or timed_out; passing is passed or flaky; a `not_run` flow neither breaks
nor extends a streak, and counts in no rate.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .errors import ConfigError
from .outcomes import Status
from .results import BROKEN, PASSING, RunRecord, duration_text, percent, runs_ago, short_commit
from .secrets import Redactor
from .settings import HistorySettings

HISTORY_SCHEMA = 3  # the current schema version (`PRAGMA user_version`); version 1 was the first
DEFAULT_KEEP = 1000
BUSY_TIMEOUT = 30.0  # seconds a writer waits for another one's transaction before giving up
BUSY_RETRY = 0.02  # seconds between tries to open a file another process is checkpointing
MIN_SAMPLES = 5  # passing durations needed before a run can be called slow
assert set(BROKEN) == {"failed", "error", "timed_out"} and set(PASSING) == {"passed", "flaky"}  # streak_start's SQL

# Version 1: the runs and their flows.
_SCHEMA_1 = """
CREATE TABLE runs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,  -- the order runs were stored in: newest is the largest
    run_id TEXT NOT NULL UNIQUE,
    commit_sha TEXT NOT NULL DEFAULT '',
    trigger TEXT NOT NULL DEFAULT '',
    start_time TEXT NOT NULL DEFAULT '',
    end_time TEXT NOT NULL DEFAULT '',
    verdict TEXT NOT NULL DEFAULT '',
    apk_version_name TEXT NOT NULL DEFAULT '',
    apk_version_code TEXT NOT NULL DEFAULT ''
);
CREATE TABLE flows (
    seq INTEGER NOT NULL,                   -- runs.seq
    flow TEXT NOT NULL,                     -- flowFileName
    name TEXT NOT NULL DEFAULT '',
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    duration INTEGER NOT NULL DEFAULT 0,    -- ms, every attempt
    device TEXT NOT NULL DEFAULT '',
    error_summary TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (seq, flow)
);
"""

# Each step takes the file from version n (its index + 1) to n + 1, inside the opening transaction.
MIGRATIONS: tuple[str, ...] = (
    # 1 -> 2: quarantined flows are recorded with their flag; one flow's runs are found by an index, not a
    # scan of every flow of every run (`failingSince`, `invoke history --flow`: 100 k rows at 1000 runs).
    """
    ALTER TABLE flows ADD COLUMN quarantined INTEGER NOT NULL DEFAULT 0;
    CREATE INDEX flows_by_flow ON flows (flow, seq);
    """,
    # 2 -> 3: the alerts sent (scheduled runs alert on a change of state, and remind while still failing).
    """
    CREATE TABLE alerts (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        run_id TEXT NOT NULL,
        kind TEXT NOT NULL,
        channel TEXT NOT NULL DEFAULT '',
        at TEXT NOT NULL
    );
    CREATE INDEX alerts_by_kind ON alerts (kind, id);
    CREATE INDEX alerts_by_run ON alerts (run_id);
    """,
)
assert len(MIGRATIONS) == HISTORY_SCHEMA - 1


class HistoryUnusable(ConfigError):
    """The history file cannot be used: corrupt, unreadable, of a newer schema, or its folder not writable.
    `reason` is what the set-aside copy's name says (corrupt, unreadable, newer-schema-vN)."""

    def __init__(self, message: str, *, fix: str = "", reason: str = "") -> None:
        super().__init__(message, fix=fix)
        self.reason = reason


def _utc_stamp() -> str:
    return f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}"


def set_aside(path: Path, reason: str) -> Path:
    """Move `path` (and its -wal and -shm files) to `<name>.<reason>-<UTC time>` beside it; the new path."""
    stamp = _utc_stamp()
    target = path.with_name(f"{path.name}.{reason}-{stamp}")
    number = 1
    while target.exists():
        number += 1
        target = path.with_name(f"{path.name}.{reason}-{stamp}-{number}")
    os.replace(path, target)
    for suffix in ("-wal", "-shm"):
        extra = path.with_name(path.name + suffix)
        if extra.exists():
            os.replace(extra, target.with_name(target.name + suffix))
    return target


def _error_name(exc: sqlite3.Error) -> str:
    return str(getattr(exc, "sqlite_errorname", ""))


_CORRUPT = ("SQLITE_CORRUPT", "SQLITE_NOTADB")
_UNREADABLE = ("SQLITE_CANTOPEN", "SQLITE_READONLY", "SQLITE_PERM", "SQLITE_AUTH")


def _why_unusable(exc: sqlite3.Error) -> str:
    """`corrupt` or `unreadable` for an error that means the file cannot be used as it is; '' for one that
    may pass (locked, busy, a full disk)."""
    name = _error_name(exc)
    if name.startswith(_CORRUPT) or type(exc) is sqlite3.DatabaseError:
        return "corrupt"
    if name.startswith(_UNREADABLE):
        return "unreadable"
    return ""


class History:
    """An open history file. `open` it, use it, `close` it (or use it as a context manager)."""

    def __init__(self, path: Path, connection: sqlite3.Connection, *, keep: int = DEFAULT_KEEP,
                 note: str = "") -> None:
        self.path = path
        self.connection = connection
        self.keep = keep
        self.note = note  # what happened on opening ("<path> is corrupt (...): set aside as X; started fresh")

    # ---- opening ------------------------------------------------------------------------------------------

    @classmethod
    def open(cls, path: Path, warn: Callable[[str], None], *, keep: int = DEFAULT_KEEP,
             busy_timeout: float = BUSY_TIMEOUT, repair: bool = True) -> History:
        """The store at `path`: created (folders too) when missing, migrated to HISTORY_SCHEMA when older.
        A corrupt, unreadable or newer-schema file is set aside (`set_aside`), `warn` is called once, and a
        fresh file is used; with `repair=False` (a command that only reads) HistoryUnusable is raised instead,
        and the file is not checked page by page first (a damaged page then fails the query that meets it).
        A folder that cannot be written, or a file another writer holds past `busy_timeout`, raise
        HistoryUnusable."""
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise HistoryUnusable(f"the history folder {path.parent} cannot be created: {exc.strerror or exc}",
                                  fix="set history.path to a writable place") from None
        try:
            return cls(path, _connect(path, busy_timeout, check=repair), keep=keep)
        except HistoryUnusable as exc:
            if not repair or not exc.reason:
                raise
            problem = exc
        try:
            aside = set_aside(path, problem.reason)
        except OSError as exc:
            raise HistoryUnusable(f"{problem.message}, and it cannot be set aside: {exc.strerror or exc}",
                                  fix=f"remove {path} (a new one is started)") from None
        note = f"{problem.message}: set aside as {aside.name}; started fresh"
        warn(note)
        return cls(path, _connect(path, busy_timeout), keep=keep, note=note)

    def close(self) -> None:
        self.connection.close()

    def __enter__(self) -> History:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, taken at once (BEGIN IMMEDIATE): writers queue on the busy timeout."""
        db = self.connection
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            with contextlib.suppress(sqlite3.Error):  # the first error is the one to tell
                db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    # ---- writing --------------------------------------------------------------------------------------------

    def append(self, record: RunRecord, *, redact: Callable[[str], str] | None = None) -> None:
        """Store the run and its flows in one transaction, replacing an earlier copy of the same runId (a
        GitHub re-run must not count twice), then keep only the `keep` newest runs. `redact` masks what
        tools said (the errorSummary), as results.json is masked."""
        apk = record.apk or {}
        mask = redact or (lambda text: text)
        with self._write() as db:
            old = [row[0] for row in db.execute("SELECT seq FROM runs WHERE run_id = ?", (record.runId,))]
            for seq in old:
                db.execute("DELETE FROM flows WHERE seq = ?", (seq,))
            db.execute("DELETE FROM runs WHERE run_id = ?", (record.runId,))
            cursor = db.execute(
                "INSERT INTO runs (run_id, commit_sha, trigger, start_time, end_time, verdict, apk_version_name, "
                "apk_version_code) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (record.runId, record.job.commit, getattr(record.job, "trigger", ""), record.job.startTime,
                 record.job.endTime, record.verdict or "", str(apk.get("versionName") or ""),
                 str(apk.get("versionCode") or "")))
            seq = cursor.lastrowid
            db.executemany(
                "INSERT OR REPLACE INTO flows (seq, flow, name, status, attempts, duration, device, error_summary, "
                "quarantined) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [(seq, f.flowFileName, f.name, f.status, len(f.build_attempts()), f.duration, f.device, mask(f.errorSummary),
                  int(bool(getattr(f, "quarantined", False)))) for f in record.flows])
            row = db.execute("SELECT seq FROM runs ORDER BY seq DESC LIMIT 1 OFFSET ?", (self.keep - 1,)).fetchone()
            if row is not None:
                cutoff = row[0]
                db.execute("DELETE FROM flows WHERE seq < ?", (cutoff,))
                db.execute("DELETE FROM alerts WHERE run_id IN (SELECT run_id FROM runs WHERE seq < ?)", (cutoff,))
                db.execute("DELETE FROM runs WHERE seq < ?", (cutoff,))

    def record_alert(self, run_id: str, kind: str, channel: str, at: str) -> None:
        """Remember an alert sent for a run (kind: fail, error, recovery, reminder, ...; `at`: ISO time)."""
        with self._write() as db:
            db.execute("INSERT INTO alerts (run_id, kind, channel, at) VALUES (?, ?, ?, ?)",
                       (run_id, kind, channel, at))

    # ---- reading --------------------------------------------------------------------------------------------

    def run_count(self, exclude: str | None = None) -> int:
        """Stored runs (but the one with runId `exclude`)."""
        row = self.connection.execute("SELECT COUNT(*) FROM runs WHERE run_id != ?", (exclude or "",)).fetchone()
        return int(row[0])

    def previous_run(self, before: str | None = None) -> dict[str, Any] | None:
        """The newest stored run (but the one with runId `before`): {"runId", "verdict", "commit", "trigger",
        "startTime", "endTime", "versionName", "versionCode"}; None when there is none."""
        row = self.connection.execute(
            "SELECT run_id, verdict, commit_sha, trigger, start_time, end_time, apk_version_name, apk_version_code "
            "FROM runs WHERE run_id != ? ORDER BY seq DESC LIMIT 1", (before or "",)).fetchone()
        if row is None:
            return None
        keys = ("runId", "verdict", "commit", "trigger", "startTime", "endTime", "versionName", "versionCode")
        return dict(zip(keys, row, strict=True))

    def flow_runs(self, flow: str, last: int) -> list[dict[str, Any]]:
        """One flow's `last` stored runs, newest first: the run's runId, commit, trigger, startTime, endTime,
        verdict and the flow's status, attempts, duration, device, errorSummary, quarantined."""
        rows = self.connection.execute(
            "SELECT r.run_id, r.commit_sha, r.trigger, r.start_time, r.end_time, r.verdict, f.status, f.attempts, "
            "f.duration, f.device, f.error_summary, f.quarantined FROM flows f JOIN runs r ON r.seq = f.seq "
            "WHERE f.flow = ? ORDER BY f.seq DESC LIMIT ?", (flow, last)).fetchall()
        keys = ("runId", "commit", "trigger", "startTime", "endTime", "verdict", "status", "attempts", "duration",
                "device", "errorSummary", "quarantined")
        return [{**dict(zip(keys, row, strict=True)), "quarantined": bool(row[-1])} for row in rows]

    def flows(self) -> list[str]:
        """Every stored flow's file name (from the index, not the table)."""
        return [row[0] for row in self.connection.execute("SELECT DISTINCT flow FROM flows ORDER BY flow")]

    def find_flow(self, wanted: str) -> str | None:
        """The stored flow `wanted` names: its file name, that name without .yaml/.yml, or its `name:`."""
        db = self.connection
        for flow in (wanted, f"{wanted}.yaml", f"{wanted}.yml"):
            if db.execute("SELECT 1 FROM flows WHERE flow = ? LIMIT 1", (flow,)).fetchone():
                return flow
        row = db.execute("SELECT flow FROM flows WHERE name = ? ORDER BY seq DESC LIMIT 1", (wanted,)).fetchone()
        return None if row is None else str(row[0])

    def last_alert(self, kinds: Sequence[str], channel: str = "") -> dict[str, Any] | None:
        """The newest alert of one of `kinds` (any kind when empty), sent on `channel` (any when empty):
        {"runId", "kind", "channel", "at"}."""
        query, where, args = "SELECT run_id, kind, channel, at FROM alerts", [], list(kinds)
        if kinds:
            where.append(f"kind IN ({', '.join('?' for _ in kinds)})")
        if channel:
            where.append("channel = ?")
            args.append(channel)
        if where:
            query += " WHERE " + " AND ".join(where)
        row = self.connection.execute(query + " ORDER BY id DESC LIMIT 1", tuple(args)).fetchone()
        return None if row is None else dict(zip(("runId", "kind", "channel", "at"), row, strict=True))

    def window(self, size: int, exclude: str | None = None) -> list[tuple[int, str, str, str]]:
        """The `size` newest stored runs (but runId `exclude`), oldest first: (seq, runId, commit, startTime)."""
        rows = self.connection.execute(
            "SELECT seq, run_id, commit_sha, start_time FROM runs WHERE run_id != ? ORDER BY seq DESC LIMIT ?",
            (exclude or "", size)).fetchall()
        return [(int(r[0]), str(r[1]), str(r[2]), str(r[3])) for r in reversed(rows)]

    def window_flows(self, seqs: Sequence[int], names: dict[str, str] | None = None,
                     ) -> dict[str, list[tuple[int, str, int]]]:
        """Every flow's (seq, status, duration) in the runs `seqs`, oldest first; `names` gets each flow's
        newest `name:` in them."""
        found: dict[str, list[tuple[int, str, int]]] = {}
        if not seqs:
            return found
        wanted = set(seqs)
        rows = self.connection.execute(
            "SELECT flow, seq, status, duration, name FROM flows WHERE seq >= ? ORDER BY seq", (min(seqs),))
        for flow, seq, status, duration, name in rows:
            if seq in wanted:
                found.setdefault(flow, []).append((int(seq), str(status), int(duration)))
                if names is not None:
                    names[flow] = name
        return found

    def last_status(self, flow: str, exclude: str | None = None) -> str | None:
        """The flow's newest stored status that is not `not_run` (but in runId `exclude`)."""
        row = self.connection.execute(
            "SELECT f.status FROM flows f JOIN runs r ON r.seq = f.seq WHERE f.flow = ? AND f.status != ? "
            "AND r.run_id != ? ORDER BY f.seq DESC LIMIT 1", (flow, Status.NOT_RUN, exclude or "")).fetchone()
        return None if row is None else str(row[0])

    def streak_start(self, flow: str, exclude: str | None = None) -> dict[str, Any] | None:
        """The first stored run of the flow's current failing streak (its newest ran status is failing):
        {"runId", "commit", "startTime", "runsAgo"}, runsAgo counting the stored runs after it (0: it is the
        newest); None when the flow's newest ran status is not failing. A `not_run` neither breaks nor
        extends a streak; runId `exclude` is left out."""
        db = self.connection  # (the newest ran status not failing: no failure after the last pass, None)
        # (the statuses are PASSING and BROKEN, written out: the query is one constant text)
        row = db.execute(
            "SELECT MAX(f.seq) FROM flows f JOIN runs r ON r.seq = f.seq WHERE f.flow = ? "
            "AND f.status IN ('passed', 'flaky') AND r.run_id != ?", (flow, exclude or "")).fetchone()
        after = row[0] if row and row[0] is not None else -1
        start = db.execute(
            "SELECT r.seq, r.run_id, r.commit_sha, r.start_time FROM flows f JOIN runs r ON r.seq = f.seq "
            "WHERE f.flow = ? AND f.seq > ? AND f.status IN ('failed', 'error', 'timed_out') AND r.run_id != ? "
            "ORDER BY f.seq LIMIT 1", (flow, after, exclude or "")).fetchone()
        if start is None:
            return None
        later = db.execute("SELECT COUNT(*) FROM runs WHERE seq > ? AND run_id != ?",
                           (start[0], exclude or "")).fetchone()[0]
        return {"runId": start[1], "commit": start[2], "startTime": start[3], "runsAgo": int(later)}


def _connect(path: Path, busy_timeout: float, *, check: bool = True) -> sqlite3.Connection:
    """A connection to `path` in WAL mode at HISTORY_SCHEMA (migrated in one transaction when older); with
    `check`, a file that was there is checked first (`PRAGMA quick_check`)."""
    existed = path.exists()
    if existed and not path.is_file():
        raise HistoryUnusable(f"{path} is not a file", reason="unreadable",
                              fix=f"set history.path to a file, or move {path} away")
    if existed and not os.access(path, os.R_OK | os.W_OK):
        raise HistoryUnusable(f"{path} cannot be read and written (permissions)", reason="unreadable",
                              fix=f"fix the permissions of {path}, or remove it")
    deadline = time.monotonic() + busy_timeout
    while True:
        try:
            db = sqlite3.connect(path, timeout=busy_timeout, isolation_level=None)
        except sqlite3.Error as exc:
            raise _unusable(path, exc) from None
        try:
            _setup(db, path, existed and check)
            return db
        except sqlite3.OperationalError as exc:
            db.close()
            # Switching to WAL, or finding it while the last connection of another process checkpoints and
            # removes the -wal file, answers SQLITE_BUSY at once, without the busy handler: wait and retry.
            if not _error_name(exc).startswith(("SQLITE_BUSY", "SQLITE_LOCKED")) or time.monotonic() > deadline:
                raise _unusable(path, exc) from None
            time.sleep(BUSY_RETRY)
        except HistoryUnusable:
            db.close()
            raise
        except sqlite3.Error as exc:
            db.close()
            raise _unusable(path, exc) from None


def _setup(db: sqlite3.Connection, path: Path, check: bool) -> None:
    """WAL mode, the schema migrated to HISTORY_SCHEMA, and (for a file that was there) a quick check."""
    version = int(db.execute("PRAGMA user_version").fetchone()[0])
    _check_version(path, version)
    if db.execute("PRAGMA journal_mode").fetchone()[0] != "wal":  # kept in the file once set
        db.execute("PRAGMA journal_mode = WAL")
    db.execute("PRAGMA synchronous = NORMAL")  # WAL: durable at checkpoints, never corrupt on a crash
    if version < HISTORY_SCHEMA:
        _migrate(db, path)
    if check:  # a damaged page is found now, not half-way through a run's write
        problem = db.execute("PRAGMA quick_check(1)").fetchone()[0]
        if problem != "ok":
            raise HistoryUnusable(f"{path} is corrupt ({problem})", reason="corrupt",
                                  fix=f"remove {path} (a new one is started)")


def _unusable(path: Path, exc: sqlite3.Error) -> HistoryUnusable:
    why = _why_unusable(exc)
    if why == "corrupt":
        return HistoryUnusable(f"{path} is corrupt ({exc})", reason=why, fix=f"remove {path} (a new one is started)")
    if why:
        return HistoryUnusable(f"{path} cannot be opened ({exc})", reason=why,
                               fix=f"check {path} and its folder's permissions")
    return HistoryUnusable(f"{path} cannot be used now ({exc})",
                           fix="another run may hold it; the next run writes it again")


def _check_version(path: Path, version: int) -> None:
    if version > HISTORY_SCHEMA:
        raise HistoryUnusable(f"{path} has history schema version {version}, newer than this prodval's "
                              f"({HISTORY_SCHEMA})", reason=f"newer-schema-v{version}",
                              fix="update prodval, or use the prodval that wrote it")


def _migrate(db: sqlite3.Connection, path: Path) -> None:
    """From the file's version to HISTORY_SCHEMA, each step in order, in one transaction (another process
    may have migrated it meanwhile: the version is read again inside)."""
    db.execute("BEGIN IMMEDIATE")
    try:
        version = int(db.execute("PRAGMA user_version").fetchone()[0])
        _check_version(path, version)
        if version == 0:
            if db.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()[0]:
                raise HistoryUnusable(f"{path} is an SQLite file, but not a history file (no schema version)",
                                      reason="corrupt", fix=f"set history.path to another file, or move {path}")
            _script(db, _SCHEMA_1)
            version = 1
        for step in range(version, HISTORY_SCHEMA):
            _script(db, MIGRATIONS[step - 1])
        db.execute(f"PRAGMA user_version = {HISTORY_SCHEMA}")
    except BaseException:
        with contextlib.suppress(sqlite3.Error):
            db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


def _script(db: sqlite3.Connection, script: str) -> None:
    """The statements of `script`, one by one (executescript would commit the open transaction)."""
    for statement in script.split(";"):
        if statement.strip():
            db.execute(statement)


# ---- what a run learns from the history ----------------------------------------------------------------------

def percentile(values: Sequence[int], q: float) -> int | None:
    """The nearest-rank percentile (q in 0..1) of `values`; None for none."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def rates(statuses: Sequence[str]) -> dict[str, float]:
    """passRate (passed), flakyRate (flaky), failRate (failed, error, timed_out) over the statuses that ran."""
    ran = [s for s in statuses if s != Status.NOT_RUN]
    if not ran:
        return {"passRate": 0.0, "flakyRate": 0.0, "failRate": 0.0}
    share = len(ran)
    return {"passRate": round(sum(s == Status.PASSED for s in ran) / share, 4),
            "flakyRate": round(sum(s == Status.FLAKY for s in ran) / share, 4),
            "failRate": round(sum(s in BROKEN for s in ran) / share, 4)}


def _passing_duration(flow: Any) -> int:
    """This run's time for `slow`: a flaky flow's passing attempt, not its failed tries before it."""
    if flow.status == Status.FLAKY and flow.attempts:
        return int(flow.attempts[-1].duration)
    return int(flow.duration)


def annotate(record: RunRecord, history: History, settings: HistorySettings) -> None:
    """Fill every flow's `history` and the record's `history` from the stored runs (this runId's earlier
    copy, a re-run's, left out). Durations are `passed` runs' (a flaky one's include failed tries)."""
    runs = history.window(settings.window, exclude=record.runId)
    seqs = [seq for seq, *_ in runs]
    by_flow = history.window_flows(seqs)
    for flow in record.flows:
        stored = [(status, duration) for _, status, duration in by_flow.get(flow.flowFileName, [])
                  if status != Status.NOT_RUN]
        strip = [status for status, _ in stored] + [str(flow.status)]
        samples = [duration for status, duration in stored if status == Status.PASSED]
        p50, p95 = percentile(samples, 0.5), percentile(samples, 0.95)
        failing = flow.status in BROKEN
        before = history.last_status(flow.flowFileName, exclude=record.runId)
        since: dict[str, Any] | None = None
        state = ""
        if failing:
            if before in BROKEN:
                state = "still failing"
                since = history.streak_start(flow.flowFileName, exclude=record.runId)
                if since is not None:
                    since["runsAgo"] += 1  # this run comes after every stored one
            else:
                state = "new"
            if since is None:
                since = {"runId": record.runId, "commit": record.job.commit, "startTime": record.job.startTime,
                         "runsAgo": 0}
        slow = (flow.status in PASSING and len(samples) >= MIN_SAMPLES and p95 is not None
                and _passing_duration(flow) > p95 * settings.slow_factor)
        flow.history = {"strip": strip, "runs": len(stored), **rates(strip), "failingSince": since, "state": state,
                        "p50": p50, "p95": p95, "slow": bool(slow),
                        "durations": [duration for _, duration in stored] + [int(flow.duration)]}
    previous = history.previous_run(before=record.runId)
    record.history = {
        "path": str(history.path), "runs": history.run_count(exclude=record.runId), "note": history.note,
        "previous": None if previous is None else {key: previous[key] for key in
                                                   ("runId", "verdict", "commit", "trigger", "endTime")},
    }


def remember(record: RunRecord, settings: HistorySettings, warn: Callable[[str], None], *,
             redact: Redactor | None = None, busy_timeout: float = BUSY_TIMEOUT) -> None:
    """Annotate the record from the history and append it: what a finished run (not a shard) does once, after
    its verdict and before its files are written. History trouble never stops the run: it is said once
    (`warn`) and in `record.history["note"]`; a file found corrupt mid-way is set aside and started afresh.
    What is stored is masked by `redact` (an errorSummary may quote a secret), as results.json is."""
    said: list[str] = []

    def once(text: str) -> None:
        if not said:
            said.append(text)
            warn(text)

    for attempt in (1, 2):
        history: History | None = None
        try:
            history = History.open(settings.path, once, keep=settings.keep, busy_timeout=busy_timeout)
            annotate(record, history, settings)
            history.append(record, redact=redact)
            if said and record.history is not None and not record.history["note"]:
                record.history["note"] = said[0]  # set aside mid-way: the fresh file's note is empty
            return
        except HistoryUnusable as exc:
            problem = f"history not kept: {exc.message}"
        except sqlite3.Error as exc:
            why = _why_unusable(exc)
            if why and attempt == 1 and history is not None:
                history.close()
                history = None
                with contextlib.suppress(OSError):
                    aside = set_aside(settings.path, why)
                    once(f"{settings.path} is {why} ({exc}): set aside as {aside.name}; started fresh")
                    continue
            problem = f"history not kept: {settings.path}: {exc}"
        except OSError as exc:
            problem = f"history not kept: {settings.path}: {exc.strerror or exc}"
        finally:
            if history is not None:
                history.close()
        once(problem)
        record.history = {**(record.history or {"path": str(settings.path), "runs": 0, "previous": None}),
                          "note": problem}
        return


# ---- `invoke history` -----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class FlowSummary:
    flow: str
    name: str
    runs: int  # runs in the window that ran it
    rates: dict[str, float]
    p50: int | None
    p95: int | None
    failing_since: dict[str, Any] | None
    last: str  # the newest status in the window

    def to_json(self) -> dict[str, Any]:
        return {"flow": self.flow, "name": self.name, "runs": self.runs, **self.rates, "p50": self.p50,
                "p95": self.p95, "failingSince": self.failing_since, "last": self.last}


def flow_summaries(history: History, last: int) -> list[FlowSummary]:
    """Every flow seen in the `last` newest stored runs: its rates, p50/p95 (passed runs) and failing since."""
    runs = history.window(last)
    names: dict[str, str] = {}
    by_flow = history.window_flows([seq for seq, *_ in runs], names)
    found = []
    for flow in sorted(by_flow):
        ran = [(status, duration) for _, status, duration in by_flow[flow] if status != Status.NOT_RUN]
        samples = [duration for status, duration in ran if status == Status.PASSED]
        newest = ran[-1][0] if ran else Status.NOT_RUN
        found.append(FlowSummary(flow, names.get(flow, ""), len(ran), rates([s for s, _ in ran]),
                                 percentile(samples, 0.5), percentile(samples, 0.95),
                                 history.streak_start(flow) if newest in BROKEN else None, newest))
    return found


def _ms(value: int | None) -> str:
    return "-" if value is None else duration_text(value / 1000)


def _since(since: dict[str, Any] | None) -> str:
    """`abc1234 (3 runs ago)`: runsAgo counts back from the newest stored run."""
    if not since:
        return ""
    ago = since["runsAgo"]
    return f"{short_commit(since['commit']) or since['runId']} ({'the latest run' if ago == 0 else runs_ago(ago)})"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows, strict=False)]
    lines = ["  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
             for row in [header, *rows]]
    return "\n".join([lines[0], "  ".join("-" * w for w in widths), *lines[1:]])


def candidates(summaries: Sequence[FlowSummary], threshold: float) -> list[FlowSummary]:
    """Flows whose flaky rate over the window is above `threshold`: quarantine candidates, flakiest first."""
    return sorted((s for s in summaries if s.rates["flakyRate"] > threshold),
                  key=lambda s: (-s.rates["flakyRate"], s.flow))


def render_summary(path: Path, total: int, last: int, summaries: Sequence[FlowSummary], threshold: float) -> str:
    rows = [(s.flow, str(s.runs), percent(s.rates["passRate"]), percent(s.rates["flakyRate"]),
             percent(s.rates["failRate"]), _ms(s.p50), _ms(s.p95), _since(s.failing_since)) for s in summaries]
    lines = [f"History {path}: {total} run(s) stored; the table covers the last {min(last, total)}.", "",
             _table(("flow", "runs", "pass", "flaky", "fail", "p50", "p95", "failing since"), rows), ""]
    chosen = candidates(summaries, threshold)
    lines.append(f"Quarantine candidates (flaky rate above {percent(threshold)} over the window):")
    lines += [f"  {s.flow}: flaky {percent(s.rates['flakyRate'])} of {s.runs} run(s)" for s in chosen] or ["  none"]
    return "\n".join(lines)


def render_flow_runs(flow: str, runs: Sequence[dict[str, Any]]) -> str:
    rows = [(r["startTime"], r["runId"], short_commit(r["commit"]), r["trigger"], r["status"] + (" (quarantined)" if
             r["quarantined"] else ""), str(r["attempts"]), _ms(r["duration"]), r["device"],
             r["errorSummary"].splitlines()[0][:80] if r["errorSummary"] else "") for r in runs]
    return f"{flow}: its last {len(runs)} run(s), newest first\n\n" + _table(
        ("started", "run", "commit", "trigger", "status", "attempts", "duration", "device", "error"), rows)


def summary_json(path: Path, total: int, last: int, summaries: Sequence[FlowSummary], threshold: float) -> str:
    return json.dumps({"path": str(path), "runs": total, "window": last,
                       "flows": [s.to_json() for s in summaries],
                       "quarantineCandidates": [s.flow for s in candidates(summaries, threshold)],
                       "candidateFlakyRate": threshold}, indent=2)
