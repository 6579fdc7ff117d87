"""Phase 1: one SQLite file next to the single application server."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from .base import QueryHook, SqlStore, StorageUnavailable

# The migration to PostgreSQL freezes writes here before its final pass (sample_app.migrate):
# one row while frozen, none otherwise.
FREEZE_DDL = (
    "CREATE TABLE IF NOT EXISTS phaseshift_freeze (id INTEGER PRIMARY KEY CHECK (id = 1), "
    "reason TEXT NOT NULL, since INTEGER NOT NULL)"
)
FREEZE_QUERY = "SELECT reason FROM phaseshift_freeze"

DDL = (
    "CREATE TABLE IF NOT EXISTS users (id TEXT PRIMARY KEY, name TEXT NOT NULL, "
    "email TEXT NOT NULL UNIQUE, created_at INTEGER NOT NULL)",
    "CREATE TABLE IF NOT EXISTS items (id TEXT PRIMARY KEY, "
    "owner_id TEXT NOT NULL REFERENCES users(id), name TEXT NOT NULL, "
    "price_cents INTEGER NOT NULL, created_at INTEGER NOT NULL)",
    "CREATE INDEX IF NOT EXISTS items_owner_created ON items (owner_id, created_at DESC)",
    "CREATE INDEX IF NOT EXISTS items_created ON items (created_at DESC)",
    "CREATE INDEX IF NOT EXISTS users_created ON users (created_at DESC)",
    "CREATE TABLE IF NOT EXISTS user_stats (user_id TEXT PRIMARY KEY, "
    "item_count INTEGER NOT NULL, updated_at INTEGER NOT NULL)",
    FREEZE_DDL,
)


def sqlite_path(url: str) -> str:
    """`sqlite:///relative.db`, `sqlite:////abs/path.db` or `sqlite:///:memory:`."""
    if not url.startswith("sqlite:///"):
        raise ValueError(f"not a sqlite:/// URL: {url!r}")
    return url[len("sqlite:///") :]


class _Cursor:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def execute(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return self.conn.execute(sql.replace("%s", "?"), tuple(params)).fetchall()


class SqliteStore(SqlStore):
    ddl = DDL
    freeze_query = FREEZE_QUERY

    def __init__(self, url: str, on_query: QueryHook | None = None) -> None:
        self.path = sqlite_path(url)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        # SQLite takes one writer at a time; serialising in-process avoids
        # busy-timeouts under load instead of relying on them.
        self._write_lock = threading.Lock()
        self._all: list[sqlite3.Connection] = []
        self._on_query = on_query or (lambda target: None)

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            try:
                conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            except sqlite3.Error as exc:
                raise StorageUnavailable(str(exc)) from exc
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA foreign_keys=ON")
            conn.execute("PRAGMA busy_timeout=5000")
            self._local.conn = conn
            self._all.append(conn)
        return conn

    @contextmanager
    def reading(self, fresh: bool) -> Iterator[_Cursor]:
        self._on_query("primary")
        try:
            yield _Cursor(self._conn())
        except sqlite3.OperationalError as exc:
            raise StorageUnavailable(str(exc)) from exc

    @contextmanager
    def writing(self) -> Iterator[_Cursor]:
        self._on_query("primary")
        conn = self._conn()
        with self._write_lock:
            try:
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                raise StorageUnavailable(str(exc)) from exc
            try:
                yield _Cursor(conn)
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            else:
                conn.execute("COMMIT")

    def is_unique_violation(self, exc: BaseException) -> bool:
        return isinstance(exc, sqlite3.IntegrityError) and "UNIQUE" in str(exc)

    def close(self) -> None:
        for conn in self._all:
            with suppress(sqlite3.Error):
                conn.close()
        self._all.clear()
        self._local = threading.local()
