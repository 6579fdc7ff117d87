"""Phase 3 option: users and their items hash-sharded across PostgreSQL primaries.

A user and all of that user's items live on one shard, chosen from the user id, so
every per-user read and write touches exactly one database. Lookups that do not
name a user (an item by id, the newest users or items) fan out to all shards and
merge; shards are few, so that stays cheap. Email uniqueness holds per shard only:
enforcing it globally would need a lookup table keyed by email, which this
service does not need to demonstrate sharding.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from .base import QueryHook, Row, Store
from .postgres import PostgresStore


def shard_for(key: str, shards: int) -> int:
    """Stable across processes and releases (unlike hash())."""
    digest = hashlib.blake2b(key.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % shards


class ShardedStore(Store):
    def __init__(self, urls: Sequence[str], on_query: QueryHook | None = None) -> None:
        if not urls:
            raise ValueError("a sharded store needs at least one shard URL")
        self.shards = [
            PostgresStore(url, on_query=on_query, target=f"shard-{i}") for i, url in enumerate(urls)
        ]
        self._fanout = ThreadPoolExecutor(max_workers=len(self.shards), thread_name_prefix="shard")

    def shard(self, user_id: str) -> PostgresStore:
        return self.shards[shard_for(user_id, len(self.shards))]

    def ensure_schema(self) -> None:
        for shard in self.shards:
            shard.ensure_schema()

    def ping(self) -> None:
        for shard in self.shards:
            shard.ping()

    def create_user(self, user: Row) -> Row:
        return self.shard(user["id"]).create_user(user)

    def get_user(self, user_id: str, fresh: bool = False) -> Row | None:
        return self.shard(user_id).get_user(user_id, fresh)

    def list_users(self, limit: int, offset: int) -> list[Row]:
        # Each shard returns its first offset+limit rows; the global page is within them.
        parts = self._fanout.map(lambda s: s.list_users(limit + offset, 0), self.shards)
        merged = sorted(
            (row for part in parts for row in part), key=lambda r: (-r["created_at"], r["id"])
        )
        return merged[offset : offset + limit]

    def create_item(self, item: Row) -> Row:
        return self.shard(item["owner_id"]).create_item(item)

    def get_item(self, item_id: str, fresh: bool = False) -> Row | None:
        for row in self._fanout.map(lambda s: s.get_item(item_id, fresh), self.shards):
            if row is not None:
                return row
        return None

    def list_items(self, owner: str | None, limit: int, fresh: bool = False) -> list[Row]:
        if owner is not None:
            return self.shard(owner).list_items(owner, limit, fresh)
        parts = self._fanout.map(lambda s: s.list_items(None, limit, fresh), self.shards)
        merged = sorted(
            (row for part in parts for row in part), key=lambda r: (-r["created_at"], r["id"])
        )
        return merged[:limit]

    def refresh_item_count(self, owner: str) -> int:
        return self.shard(owner).refresh_item_count(owner)

    def close(self) -> None:
        self._fanout.shutdown(wait=False)
        for shard in self.shards:
            shard.close()
