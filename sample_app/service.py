"""The users-and-items domain: validation, cache-aside, read-your-writes, jobs, events.

Everything here is synchronous; the HTTP layer runs it in a thread pool. Reads
return JSON bytes so that a cache hit is served without decoding and re-encoding.
"""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from typing import Any

from .cache import CacheAside, NoCache, item_key, owner_items_key, recent_write_key, user_key
from .config import Settings
from .events import EventPublisher
from .metrics import Metrics
from .queue import JobPublisher
from .storage import Row, Store

ID_RE = re.compile(r"^[0-9a-f]{32}$")
EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
MAX_PRICE_CENTS = 10**12
MAX_LIMIT = 100


class Invalid(ValueError):
    """The request is malformed (400/422)."""

    def __init__(self, message: str, status: int = 422) -> None:
        super().__init__(message)
        self.status = status


def new_id() -> str:
    return uuid.uuid4().hex


def now_ms() -> int:
    return int(time.time() * 1000)


def dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def item_view(row: Row) -> Row:
    return {
        "id": row["id"],
        "owner": row["owner_id"],
        "name": row["name"],
        "price_cents": row["price_cents"],
        "created_at": row["created_at"],
    }


def _text(body: dict[str, Any], name: str, max_len: int) -> str:
    value = body.get(name)
    if not isinstance(value, str) or not value.strip():
        raise Invalid(f"'{name}' must be a non-empty string")
    value = value.strip()
    if len(value) > max_len:
        raise Invalid(f"'{name}' must be at most {max_len} characters")
    return value


def _only(body: Any, allowed: set[str]) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise Invalid("the body must be a JSON object", 400)
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise Invalid(f"unknown field(s): {', '.join(unknown)}")
    return body


def validate_id(value: Any, what: str) -> str:
    if not isinstance(value, str) or not ID_RE.match(value):
        raise Invalid(f"'{what}' must be an id of 32 lowercase hex digits")
    return value


def validate_user(body: Any) -> Row:
    body = _only(body, {"name", "email"})
    name = _text(body, "name", 100)
    email = _text(body, "email", 254).lower()
    if not EMAIL_RE.match(email):
        raise Invalid("'email' must be an email address")
    return {"id": new_id(), "name": name, "email": email, "created_at": now_ms()}


def validate_item(body: Any) -> Row:
    body = _only(body, {"owner", "name", "price_cents"})
    owner = validate_id(body.get("owner"), "owner")
    name = _text(body, "name", 200)
    price = body.get("price_cents", 0)
    # bool is an int in Python; true is not a price.
    if isinstance(price, bool) or not isinstance(price, int) or not 0 <= price <= MAX_PRICE_CENTS:
        raise Invalid(f"'price_cents' must be an integer between 0 and {MAX_PRICE_CENTS}")
    return {
        "id": new_id(),
        "owner_id": owner,
        "name": name,
        "price_cents": price,
        "created_at": now_ms(),
    }


class RecentWrites:
    """Users whose data changed within the read-your-writes window.

    Kept in-process and in the cache too (in Redis, when there is one), so that another
    replica of the service also sends that user's reads to the primary.
    """

    def __init__(self, window_seconds: float, cache: CacheAside) -> None:
        self.window = window_seconds
        self.cache = cache
        self._local: dict[str, float] = {}
        self._lock = threading.Lock()

    def mark(self, user_id: str) -> None:
        now = time.monotonic()
        with self._lock:
            self._local[user_id] = now + self.window
            if len(self._local) > 100_000:
                self._local = {u: t for u, t in self._local.items() if t > now}
        self.cache.set(recent_write_key(user_id), b"1", ttl_ms=int(self.window * 1000) or 1)

    def recent(self, user_id: str) -> bool:
        deadline = self._local.get(user_id)
        if deadline is not None and deadline > time.monotonic():
            return True
        return self.cache.exists(recent_write_key(user_id))


class DataService:
    def __init__(
        self,
        settings: Settings,
        store: Store,
        metrics: Metrics,
        cache: CacheAside | None = None,
        jobs: JobPublisher | None = None,
        events: EventPublisher | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.metrics = metrics
        self.cache: CacheAside = cache if cache is not None else NoCache()
        self.jobs = jobs
        self.events = events
        # Freshness only matters when reads can go somewhere stale.
        self.has_replicas = bool(settings.read_replica_urls)
        self.recent = RecentWrites(settings.read_your_writes_seconds, self.cache)

    # -- reads ---------------------------------------------------------------

    def _fresh(self, user_id: str) -> bool:
        return self.has_replicas and self.recent.recent(user_id)

    def _cached(self, key: str, load: Any, fresh: bool, field: str | None = None) -> bytes | None:
        # Taken before anything is read: a write in between voids the fill below.
        token = self.cache.token(key)
        hit = self.cache.get(key, field)
        if hit is not None:
            return hit
        value = load(fresh)
        if value is None and not fresh and self.has_replicas:
            # Not on the replica may mean not replicated yet: ask the primary before
            # answering 404 to someone who just created the row.
            value = load(True)
        if value is None:
            return None
        data = dumps(value)
        self.cache.set(key, data, field=field, token=token)
        return data

    # Answers from the process's own memory only, or None: cheap and non-blocking, so
    # the HTTP layer tries them before handing the request to a worker thread.

    def peek_user(self, user_id: str) -> bytes | None:
        return self.cache.peek(user_key(user_id))

    def peek_items(self, owner: str, limit: int) -> bytes | None:
        return self.cache.peek(owner_items_key(owner), str(limit))

    def peek_item(self, item_id: str) -> bytes | None:
        return self.cache.peek(item_key(item_id))

    def get_user(self, user_id: str) -> bytes | None:
        validate_id(user_id, "id")
        return self._cached(
            user_key(user_id),
            lambda fresh: self.store.get_user(user_id, fresh or self._fresh(user_id)),
            fresh=False,
        )

    def list_users(self, limit: int, offset: int) -> bytes:
        return dumps({"users": self.store.list_users(limit, offset)})

    def get_item(self, item_id: str) -> bytes | None:
        validate_id(item_id, "id")

        def load(fresh: bool) -> Row | None:
            row = self.store.get_item(item_id, fresh)
            return item_view(row) if row else None

        return self._cached(item_key(item_id), load, fresh=False)

    def list_items(self, owner: str | None, limit: int) -> bytes:
        if owner is None:
            rows = self.store.list_items(None, limit)
            return dumps({"items": [item_view(r) for r in rows]})
        validate_id(owner, "owner")

        def load(fresh: bool) -> Row:
            rows = self.store.list_items(owner, limit, fresh or self._fresh(owner))
            return {"items": [item_view(r) for r in rows]}

        # Pages of every size live in one hash per owner, so a write invalidates them
        # all with one DEL and a hit is served as stored, without re-encoding.
        data = self._cached(owner_items_key(owner), load, fresh=False, field=str(limit))
        assert data is not None
        return data

    # -- writes --------------------------------------------------------------

    def create_user(self, body: Any) -> Row:
        user = self.store.create_user(validate_user(body))
        self.recent.mark(user["id"])
        if self.events is not None:
            self.events.emit("user_created", user["id"], user)
        return user

    def create_item(self, body: Any) -> Row:
        row = self.store.create_item(validate_item(body))
        owner = row["owner_id"]
        self.recent.mark(owner)
        self.cache.delete(owner_items_key(owner), user_key(owner))
        job = {"type": "item_created", "owner": owner, "item_id": row["id"]}
        if self.jobs is not None:
            self.jobs.publish(job)
        else:
            # Without a queue (phases 1-2) the derived count is kept inline.
            self.store.refresh_item_count(owner)
            self.cache.delete(user_key(owner))
        view = item_view(row)
        if self.events is not None:
            self.events.emit("item_created", owner, view)
        return view
