"""What cache-aside callers use of a cache, and the cache to use when there is none."""

from __future__ import annotations

from typing import Protocol

from .local import Token


class CacheAside(Protocol):
    """The operations the data service and the worker need; `Cache` has them on Redis."""

    def peek(self, key: str, field: str | None = None) -> bytes | None: ...

    def token(self, key: str) -> Token: ...

    def get(self, key: str, field: str | None = None) -> bytes | None: ...

    def set(
        self,
        key: str,
        value: bytes,
        ttl_ms: int | None = None,
        field: str | None = None,
        token: Token | None = None,
    ) -> None: ...

    def delete(self, *keys: str) -> None: ...

    def exists(self, key: str) -> bool: ...

    def close(self) -> None: ...


class NoCache:
    """No cache configured (phase 1): every lookup misses, nothing is kept, and there is
    nothing to invalidate."""

    def peek(self, key: str, field: str | None = None) -> bytes | None:
        return None

    def token(self, key: str) -> Token:
        return (0, 0)

    def get(self, key: str, field: str | None = None) -> bytes | None:
        return None

    def set(
        self,
        key: str,
        value: bytes,
        ttl_ms: int | None = None,
        field: str | None = None,
        token: Token | None = None,
    ) -> None:
        pass

    def delete(self, *keys: str) -> None:
        pass

    def exists(self, key: str) -> bool:
        return False

    def close(self) -> None:
        pass
