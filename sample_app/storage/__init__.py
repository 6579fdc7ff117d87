"""Storage chosen by DATABASE_URL, READ_REPLICA_URLS and DATABASE_SHARD_URLS."""

from __future__ import annotations

from ..config import Settings
from .base import (
    Conflict,
    NotFound,
    QueryHook,
    Row,
    StorageError,
    StorageUnavailable,
    Store,
    WritesFrozen,
)

__all__ = [
    "Conflict",
    "NotFound",
    "Row",
    "StorageError",
    "StorageUnavailable",
    "Store",
    "WritesFrozen",
    "open_store",
]


def open_store(settings: Settings, on_query: QueryHook | None = None) -> Store:
    if settings.shard_urls:
        from .sharded import ShardedStore

        return ShardedStore(settings.shard_urls, on_query=on_query)
    if settings.uses_sqlite:
        from .sqlite import SqliteStore

        return SqliteStore(settings.database_url, on_query=on_query)
    from .postgres import PostgresStore

    return PostgresStore(settings.database_url, settings.read_replica_urls, on_query=on_query)
