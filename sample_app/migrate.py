"""`python -m sample_app migrate --from sqlite:///PATH --to postgresql://...`

The phase 1 -> 2 data move, run by the operator as a Job:

* copies users and items in id order, in batches; each batch and the
  record of how far it got commit in one PostgreSQL transaction, so a run killed at
  any point resumes after the last committed batch;
* never overwrites a row that already exists in the target (ON CONFLICT DO
  NOTHING), so rerunning is harmless and nothing in the target is lost; the derived
  per-user counts are recomputed in the target from the copied items;
* verifies every table: each source row must be in the target, unchanged (row
  counts, a merge by key and an order-independent checksum of the copied rows). Rows added
  to the source behind a finished run's cursor are caught by the verification,
  which then triggers one full sweep before it decides.

With --freeze-source no acknowledged write stays behind: the first pass copies while the
app still writes; then one row in the source's phaseshift_freeze table freezes its writes
(the app checks it inside every write transaction, so a write either committed before it
or is answered 503 with Retry-After) and a full sweep copies whatever came meanwhile
before the verification. Reads go on throughout. The source stays frozen for good: the
operator routes traffic to the new tier next, and `--thaw` (run when a transition is
abandoned before that) opens it again. Apart from that row the source is never written.

Exit codes: 0 verified, 1 verification failed, 3 stopped early (--max-batches; rerun
to resume), 4 a database was unreachable.
"""

from __future__ import annotations

import hashlib
import sqlite3
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

from .storage.postgres import DDL as PG_DDL
from .storage.postgres import redact
from .storage.sqlite import FREEZE_DDL, sqlite_path

# (table, key column, columns, overwrite?) in dependency order. user_stats is not
# copied: it is derived from items and recomputed in the target afterwards, so a
# rerun after the switch cannot roll counts back to the source's older values.
TABLES: tuple[tuple[str, str, tuple[str, ...], bool], ...] = (
    ("users", "id", ("id", "name", "email", "created_at"), False),
    ("items", "id", ("id", "owner_id", "name", "price_cents", "created_at"), False),
)

RECOMPUTE_STATS = (
    "INSERT INTO user_stats (user_id, item_count, updated_at) "
    "SELECT owner_id, COUNT(*), %s FROM items GROUP BY owner_id "
    "ON CONFLICT (user_id) DO UPDATE SET item_count = excluded.item_count, "
    "updated_at = excluded.updated_at"
)

PROGRESS_DDL = (
    "CREATE TABLE IF NOT EXISTS phaseshift_migration (source TEXT NOT NULL, "
    'table_name TEXT NOT NULL, last_key TEXT COLLATE "C", copied BIGINT NOT NULL DEFAULT 0, '
    "updated_at TIMESTAMPTZ NOT NULL DEFAULT now(), PRIMARY KEY (source, table_name))"
)


class Incomplete(Exception):
    """Stopped by --max-batches before the copy finished."""


@dataclass
class TableReport:
    table: str
    source_rows: int
    target_rows: int
    missing: int
    differing: int
    source_checksum: str
    target_checksum: str

    @property
    def ok(self) -> bool:
        # Rows only in the target (written there after the switch) are allowed;
        # every source row must be there, unchanged.
        return (
            self.missing == 0
            and self.differing == 0
            and (self.source_checksum == self.target_checksum)
        )


def open_source(url: str) -> sqlite3.Connection:
    path = sqlite_path(url)
    if not Path(path).exists():
        raise FileNotFoundError(f"no SQLite database at {path}")
    # Read-only: the migration must never change its source.
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True)


FREEZE_REASON = "the data is moving to PostgreSQL"


def _writable_source(url: str) -> sqlite3.Connection:
    path = sqlite_path(url)
    if not Path(path).exists():
        raise FileNotFoundError(f"no SQLite database at {path}")
    # The app's own settings: it waits up to 5 s for the write lock as well.
    conn = sqlite3.connect(path, isolation_level=None, timeout=30)
    conn.execute(FREEZE_DDL)
    return conn


def freeze_source(url: str, reason: str = FREEZE_REASON) -> None:
    """Refuse the app's writes from now on. BEGIN IMMEDIATE waits for the write under way,
    so every write acknowledged before this returns is in the file."""
    conn = _writable_source(url)
    try:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute(
            "INSERT OR IGNORE INTO phaseshift_freeze (id, reason, since) VALUES (1, ?, ?)",
            (reason, int(time.time() * 1000)),
        )
        conn.execute("COMMIT")
    finally:
        conn.close()


def thaw_source(url: str) -> bool:
    """Accept the app's writes again; False when they were not frozen."""
    conn = _writable_source(url)
    try:
        return conn.execute("DELETE FROM phaseshift_freeze").rowcount > 0
    finally:
        conn.close()


class Checksum:
    """sha256 of each row, summed modulo 2**256: independent of row order."""

    def __init__(self) -> None:
        self.total = 0

    def add(self, row: tuple[Any, ...]) -> None:
        digest = hashlib.sha256(repr(tuple(row)).encode()).digest()
        self.total = (self.total + int.from_bytes(digest, "big")) % (1 << 256)

    def hexdigest(self) -> str:
        return f"{self.total:064x}"


def _source_rows(
    src: sqlite3.Connection, table: str, key: str, cols: tuple[str, ...]
) -> Iterator[tuple[Any, ...]]:
    yield from src.execute(f"SELECT {', '.join(cols)} FROM {table} ORDER BY {key}")


def _target_rows(
    dst: psycopg.Connection[Any], table: str, key: str, cols: tuple[str, ...]
) -> Iterator[tuple[Any, ...]]:
    # Keys are COLLATE "C" in the target: byte order, the order SQLite sorts in.
    with dst.transaction(), dst.cursor(name=f"verify_{table}") as cur:
        cur.itersize = 10_000
        cur.execute(f"SELECT {', '.join(cols)} FROM {table} ORDER BY {key}")
        yield from cur


def verify_table(
    src: sqlite3.Connection,
    dst: psycopg.Connection[Any],
    table: str,
    key: str,
    cols: tuple[str, ...],
) -> TableReport:
    """Merge-join both tables by key, comparing every source row with its copy."""
    s_iter = _source_rows(src, table, key, cols)
    d_iter = _target_rows(dst, table, key, cols)
    s_sum, d_sum = Checksum(), Checksum()
    s_rows = d_rows = missing = differing = 0
    s_row = next(s_iter, None)
    d_row = next(d_iter, None)
    while s_row is not None or d_row is not None:
        if d_row is None or (s_row is not None and s_row[0] < d_row[0]):
            assert s_row is not None
            s_rows += 1
            missing += 1
            s_sum.add(s_row)
            s_row = next(s_iter, None)
        elif s_row is None or d_row[0] < s_row[0]:
            d_rows += 1  # only in the target
            d_row = next(d_iter, None)
        else:
            s_rows += 1
            d_rows += 1
            s_sum.add(s_row)
            d_sum.add(tuple(d_row))
            if tuple(s_row) != tuple(d_row):
                differing += 1
            s_row = next(s_iter, None)
            d_row = next(d_iter, None)
    return TableReport(
        table, s_rows, d_rows, missing, differing, s_sum.hexdigest(), d_sum.hexdigest()
    )


def verify(src: sqlite3.Connection, dst: psycopg.Connection[Any]) -> list[TableReport]:
    return [verify_table(src, dst, table, key, cols) for table, key, cols, _ in TABLES]


def _prepare_target(dst: psycopg.Connection[Any]) -> None:
    with dst.transaction():
        for statement in (*PG_DDL, PROGRESS_DDL):
            dst.execute(statement)


def _progress(dst: psycopg.Connection[Any], source: str, table: str) -> str | None:
    row = dst.execute(
        "SELECT last_key FROM phaseshift_migration WHERE source = %s AND table_name = %s",
        [source, table],
    ).fetchone()
    return row[0] if row else None


def copy_table(
    src: sqlite3.Connection,
    dst: psycopg.Connection[Any],
    source: str,
    spec: tuple[str, str, tuple[str, ...], bool],
    batch_size: int,
    budget: list[int] | None,
    log: Any,
) -> int:
    table, key, cols, overwrite = spec
    col_list = ", ".join(cols)
    after = _progress(dst, source, table)
    stage = f"stage_{table}"
    dst.execute(f"CREATE TEMP TABLE IF NOT EXISTS {stage} (LIKE {table}) ON COMMIT DELETE ROWS")
    if overwrite:
        updates = ", ".join(f"{c} = excluded.{c}" for c in cols if c != key)
        on_conflict = f"ON CONFLICT ({key}) DO UPDATE SET {updates}"
    else:
        on_conflict = f"ON CONFLICT ({key}) DO NOTHING"
    copied = 0
    while True:
        if budget is not None:
            if budget[0] <= 0:
                raise Incomplete(table)
            budget[0] -= 1
        if after is None:
            rows = src.execute(
                f"SELECT {col_list} FROM {table} ORDER BY {key} LIMIT ?", (batch_size,)
            ).fetchall()
        else:
            rows = src.execute(
                f"SELECT {col_list} FROM {table} WHERE {key} > ? ORDER BY {key} LIMIT ?",
                (after, batch_size),
            ).fetchall()
        if not rows:
            return copied
        with dst.transaction():
            with dst.cursor() as cur, cur.copy(f"COPY {stage} ({col_list}) FROM STDIN") as cp:
                for row in rows:
                    cp.write_row(row)
            dst.execute(
                f"INSERT INTO {table} ({col_list}) SELECT {col_list} FROM {stage} {on_conflict}"
            )
            after = rows[-1][0]
            dst.execute(
                "INSERT INTO phaseshift_migration (source, table_name, last_key, copied) "
                "VALUES (%s, %s, %s, %s) ON CONFLICT (source, table_name) DO UPDATE SET "
                "last_key = excluded.last_key, "
                "copied = phaseshift_migration.copied + excluded.copied, updated_at = now()",
                [source, table, after, len(rows)],
            )
        copied += len(rows)
        log(f"  {table}: +{len(rows)} rows (up to {after})")


def _reset_progress(dst: psycopg.Connection[Any], source: str) -> None:
    dst.execute("DELETE FROM phaseshift_migration WHERE source = %s", [source])


def migrate(
    source_url: str,
    target_url: str,
    batch_size: int = 5000,
    max_batches: int | None = None,
    verify_only: bool = False,
    log: Any = print,
    freeze: bool = False,
) -> list[TableReport]:
    """Copy and verify; returns the verification. Raises Incomplete if stopped early."""
    src = open_source(source_url)
    # The source is named by its path, so two SQLite files never share progress.
    source = str(Path(sqlite_path(source_url)).resolve())
    try:
        with psycopg.connect(target_url, autocommit=True, connect_timeout=5) as dst:
            _prepare_target(dst)
            if not verify_only:
                budget = [max_batches] if max_batches is not None else None
                for spec in TABLES:
                    copied = copy_table(src, dst, source, spec, batch_size, budget, log)
                    log(f"{spec[0]}: {copied} rows copied this run")
            if freeze and not verify_only:
                freeze_source(source_url)
                log("writes to the source frozen; copying what came during the first pass")
                # New ids are random, so most new rows sort behind the cursor.
                _reset_progress(dst, source)
                for spec in TABLES:
                    copied = copy_table(src, dst, source, spec, batch_size, None, log)
                    log(f"{spec[0]}: {copied} rows checked again after the freeze")
            reports = verify(src, dst)
            if not verify_only and not all(r.ok for r in reports):
                # Rows may have landed in the source behind the cursor of an earlier
                # run; one full sweep (idempotent) picks them up before deciding.
                log("verification differs; sweeping every table once more")
                _reset_progress(dst, source)
                for spec in TABLES:
                    copy_table(src, dst, source, spec, batch_size, None, log)
                reports = verify(src, dst)
            if not verify_only:
                dst.execute(RECOMPUTE_STATS, [int(time.time() * 1000)])
            return reports
    finally:
        src.close()


def thaw(source_url: str) -> int:
    try:
        opened = thaw_source(source_url)
    except (FileNotFoundError, ValueError, sqlite3.Error) as exc:
        print(f"source error: {exc}", file=sys.stderr)
        return 4
    print(f"writes to {source_url} {'open again' if opened else 'were not frozen'}")
    return 0


def run(
    source_url: str,
    target_url: str | None,
    batch_size: int = 5000,
    max_batches: int | None = None,
    verify_only: bool = False,
    freeze: bool = False,
) -> int:
    if batch_size < 1:
        print("--batch-size must be positive", file=sys.stderr)
        return 2
    if not target_url or not target_url.startswith(("postgresql://", "postgres://")):
        print("--to must be a postgresql:// URL", file=sys.stderr)
        return 2
    started = time.monotonic()
    print(f"migrating {source_url} -> {redact(target_url)}")
    try:
        reports = migrate(
            source_url, target_url, batch_size, max_batches, verify_only, freeze=freeze
        )
    except Incomplete as exc:
        print(f"stopped after {max_batches} batch(es) in {exc}; run again to resume")
        return 3
    except (FileNotFoundError, ValueError, sqlite3.Error) as exc:
        print(f"source error: {exc}", file=sys.stderr)
        return 4
    except psycopg.OperationalError as exc:
        print(f"target unreachable: {exc}", file=sys.stderr)
        return 4
    for r in reports:
        status = "ok" if r.ok else "MISMATCH"
        print(
            f"verify {r.table}: source {r.source_rows} rows, target {r.target_rows} rows, "
            f"missing {r.missing}, differing {r.differing}, "
            f"checksum {r.source_checksum[:16]} vs {r.target_checksum[:16]}: {status}"
        )
    ok = all(r.ok for r in reports)
    print(f"{'verified' if ok else 'NOT verified'} in {time.monotonic() - started:.1f}s")
    return 0 if ok else 1
