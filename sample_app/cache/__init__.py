"""The application's cache: two-level cache-aside on Redis, or none.

- `two_level`: `Cache`, process memory in front of Redis or Redis Cluster;
- `local`: level 1, process memory, and how it stays fresh;
- `listener`: the subscription through which other processes' invalidations arrive;
- `breaker`: how long Redis is left alone after a failure;
- `owed`: invalidations Redis missed, delivered before it is used again;
- `aside`: what callers use of a cache (`CacheAside`), and `NoCache`;
- `keys`: the Redis keys of cached values.
"""

from __future__ import annotations

from ..config import Settings
from ..metrics import Metrics
from .aside import CacheAside, NoCache
from .keys import item_key, owner_items_key, recent_write_key, user_key
from .listener import INVALIDATION_CHANNEL
from .local import LocalCache, Token
from .owed import MAX_OWED_INVALIDATIONS
from .two_level import CACHE_ERRORS, Cache

__all__ = [
    "CACHE_ERRORS",
    "INVALIDATION_CHANNEL",
    "MAX_OWED_INVALIDATIONS",
    "Cache",
    "CacheAside",
    "LocalCache",
    "NoCache",
    "Token",
    "item_key",
    "open_cache",
    "owner_items_key",
    "recent_write_key",
    "user_key",
]


def open_cache(settings: Settings, metrics: Metrics) -> Cache | NoCache:
    """The cache the settings name (REDIS_URL, REDIS_CLUSTER, CACHE_*), or NoCache."""
    if not settings.redis_url:
        return NoCache()
    return Cache(
        settings.redis_url,
        metrics,
        settings.cache_ttl_seconds,
        cluster=settings.redis_cluster,
        local_max_entries=settings.cache_local_max_entries,
        local_max_bytes=settings.cache_local_max_bytes,
        local_ttl_seconds=settings.cache_local_ttl_seconds,
    )
