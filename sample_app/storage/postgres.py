"""Phase 2+: a PostgreSQL primary for writes, streaming replicas for reads."""

from __future__ import annotations

import itertools
import logging
import queue
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg import errors as pg_errors
from psycopg.pq import TransactionStatus

from .base import QueryHook, SqlStore, StorageUnavailable

log = logging.getLogger(__name__)

# COLLATE "C" makes id order byte order, the same order SQLite uses, so keyset
# pagination during a migration walks both databases identically.
DDL = (
    'CREATE TABLE IF NOT EXISTS users (id TEXT COLLATE "C" PRIMARY KEY, name TEXT NOT NULL, '
    "email TEXT NOT NULL UNIQUE, created_at BIGINT NOT NULL)",
    'CREATE TABLE IF NOT EXISTS items (id TEXT COLLATE "C" PRIMARY KEY, '
    'owner_id TEXT COLLATE "C" NOT NULL REFERENCES users(id), name TEXT NOT NULL, '
    "price_cents BIGINT NOT NULL, created_at BIGINT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS items_owner_created ON items (owner_id, created_at DESC)",
    "CREATE INDEX IF NOT EXISTS items_created ON items (created_at DESC)",
    "CREATE INDEX IF NOT EXISTS users_created ON users (created_at DESC)",
    'CREATE TABLE IF NOT EXISTS user_stats (user_id TEXT COLLATE "C" PRIMARY KEY, '
    "item_count BIGINT NOT NULL, updated_at BIGINT NOT NULL)",
)


def redact(url: str) -> str:
    """A URL fit for logs: the password replaced."""
    if "@" not in url or "://" not in url:
        return url
    scheme, rest = url.split("://", 1)
    creds, host = rest.rsplit("@", 1)
    user = creds.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}"


class Pool:
    """A small thread-safe connection pool.

    Connections are autocommit; writes open explicit transactions. A connection that
    saw an error or is left mid-transaction is discarded rather than reused.
    """

    def __init__(self, url: str, size: int = 10, connect_timeout: float = 3.0) -> None:
        self.url = url
        self.size = size
        self.connect_timeout = connect_timeout
        self._idle: queue.LifoQueue[psycopg.Connection[Any]] = queue.LifoQueue()
        self._slots = threading.BoundedSemaphore(size)

    def _connect(self) -> psycopg.Connection[Any]:
        try:
            return psycopg.connect(
                self.url, autocommit=True, connect_timeout=max(1, int(self.connect_timeout))
            )
        except psycopg.Error as exc:
            raise StorageUnavailable(f"cannot connect to {redact(self.url)}: {exc}") from exc

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection[Any]]:
        if not self._slots.acquire(timeout=10):
            raise StorageUnavailable(f"no free connection to {redact(self.url)}")
        try:
            try:
                conn = self._idle.get_nowait()
            except queue.Empty:
                conn = self._connect()
            healthy = False
            try:
                yield conn
                healthy = True
            except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
                raise StorageUnavailable(str(exc)) from exc
            finally:
                reusable = (
                    healthy
                    and not conn.closed
                    and conn.info.transaction_status == TransactionStatus.IDLE
                )
                if reusable:
                    self._idle.put(conn)
                else:
                    conn.close()
        finally:
            self._slots.release()

    def close(self) -> None:
        while True:
            try:
                self._idle.get_nowait().close()
            except queue.Empty:
                return


class _Cursor:
    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.conn = conn

    def execute(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        cur = self.conn.execute(sql, list(params))
        return cur.fetchall() if cur.description is not None else []


class PostgresStore(SqlStore):
    ddl = DDL

    def __init__(
        self,
        url: str,
        replica_urls: Sequence[str] = (),
        on_query: QueryHook | None = None,
        pool_size: int = 10,
        target: str = "primary",
    ) -> None:
        self.url = url
        self.primary = Pool(url, pool_size)
        self.replicas = [Pool(u, pool_size) for u in replica_urls]
        self._next_replica = itertools.cycle(range(len(self.replicas))) if self.replicas else None
        self._target = target
        self._on_query = on_query or (lambda target: None)

    @contextmanager
    def reading(self, fresh: bool) -> Iterator[_Cursor]:
        """A cursor on the primary (fresh) or the next replica."""
        if fresh or self._next_replica is None:
            self._on_query(self._target)
            with self.primary.connection() as conn:
                yield _Cursor(conn)
            return
        self._on_query("replica")
        with self.replicas[next(self._next_replica)].connection() as conn:
            yield _Cursor(conn)

    def read(self, fresh: bool, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        if fresh or self._next_replica is None:
            return super().read(fresh, sql, params)
        try:
            return super().read(False, sql, params)
        except (StorageUnavailable, psycopg.Error) as exc:
            # A lost or lagging replica (even one still missing the schema) costs
            # read capacity, not availability: the primary answers instead.
            log.warning("replica read failed (%s); reading from the primary", exc)
            self._on_query("primary-fallback")
            with self.primary.connection() as conn:
                return _Cursor(conn).execute(sql, params)

    @contextmanager
    def writing(self) -> Iterator[_Cursor]:
        self._on_query(self._target)
        with self.primary.connection() as conn, conn.transaction():
            yield _Cursor(conn)

    def is_unique_violation(self, exc: BaseException) -> bool:
        return isinstance(exc, pg_errors.UniqueViolation)

    def close(self) -> None:
        self.primary.close()
        for pool in self.replicas:
            pool.close()
