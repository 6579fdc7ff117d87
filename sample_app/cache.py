"""Cache-aside on Redis (phase 2) or Redis Cluster (phase 3+).

The cache is an optimisation, never a dependency: every failure is counted and
the caller falls back to the database. After a failure the cache is bypassed for
a short while, so an outage costs one timeout per interval rather than one per
request.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from typing import Any

import redis
from redis.cluster import RedisCluster

from .metrics import Metrics

log = logging.getLogger(__name__)

CACHE_ERRORS: tuple[type[BaseException], ...] = (redis.RedisError, OSError)


def user_key(user_id: str) -> str:
    return f"user:{user_id}"


def owner_items_key(owner: str) -> str:
    return f"items:owner:{owner}"


def item_key(item_id: str) -> str:
    return f"item:{item_id}"


def recent_write_key(user_id: str) -> str:
    return f"rw:{user_id}"


class Cache:
    def __init__(
        self,
        url: str,
        metrics: Metrics,
        ttl_seconds: float = 30.0,
        cluster: bool = False,
        timeout: float = 0.5,
        retry_after: float = 1.0,
    ) -> None:
        self.metrics = metrics
        self.ttl_ms = max(1, int(ttl_seconds * 1000))
        self.retry_after = retry_after
        self._down_until = 0.0
        self._lock = threading.Lock()
        self.client: Any
        if cluster:
            # The URL names one startup node; the client discovers the rest.
            self.client = RedisCluster.from_url(
                url, socket_timeout=timeout, socket_connect_timeout=timeout
            )
        else:
            self.client = redis.Redis.from_url(
                url, socket_timeout=timeout, socket_connect_timeout=timeout
            )
        metrics.cache_up.labels(plan=metrics.plan).set(1)

    @property
    def available(self) -> bool:
        return time.monotonic() >= self._down_until

    def _failed(self, exc: BaseException) -> None:
        self.metrics.cache_error()
        with self._lock:
            if self.available:
                log.warning("cache unavailable (%s); serving from the database", exc)
            self._down_until = time.monotonic() + self.retry_after
        self.metrics.cache_up.labels(plan=self.metrics.plan).set(0)

    def _ok(self) -> None:
        self.metrics.cache_up.labels(plan=self.metrics.plan).set(1)

    def get(self, key: str, field: str | None = None) -> bytes | None:
        """The cached value, or None on a miss or when the cache is unavailable.

        With a field, the value is one field of a hash: variants of one entry (pages of
        different sizes) share a key, so a single DEL invalidates all of them.
        """
        if not self.available:
            self.metrics.miss()
            return None
        try:
            value = self.client.get(key) if field is None else self.client.hget(key, field)
        except CACHE_ERRORS as exc:
            self._failed(exc)
            self.metrics.miss()
            return None
        self._ok()
        if value is None:
            self.metrics.miss()
            return None
        self.metrics.hit()
        return bytes(value)

    def set(
        self, key: str, value: bytes, ttl_ms: int | None = None, field: str | None = None
    ) -> None:
        if not self.available:
            return
        try:
            if field is None:
                self.client.set(key, value, px=ttl_ms or self.ttl_ms)
            else:
                # One key, so one slot even in a cluster: the pipeline is allowed there.
                pipe = self.client.pipeline(transaction=False)
                pipe.hset(key, field, value)
                pipe.pexpire(key, ttl_ms or self.ttl_ms)
                pipe.execute()
        except CACHE_ERRORS as exc:
            self._failed(exc)

    def delete(self, *keys: str) -> None:
        # One key per command: in a cluster the keys may live in different slots.
        # Invalidation is attempted even while the cache looks down, because a stale
        # entry that survives an outage would be served once it is back.
        for key in keys:
            try:
                self.client.delete(key)
            except CACHE_ERRORS as exc:
                self._failed(exc)
                return

    def exists(self, key: str) -> bool:
        if not self.available:
            return False
        try:
            return bool(self.client.exists(key))
        except CACHE_ERRORS as exc:
            self._failed(exc)
            return False

    def ping(self) -> bool:
        try:
            self.client.ping()
        except CACHE_ERRORS:
            return False
        return True

    def close(self) -> None:
        with contextlib.suppress(*CACHE_ERRORS):
            self.client.close()
