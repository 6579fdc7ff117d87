"""The cache's in-process level: bounds, expiry, invalidation (here and from other
processes), read-your-writes and a Redis outage, on real PostgreSQL and Redis."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import redis
from conftest import PgDb, RedisServer
from sampleapp_helpers import client, metric, new_user, settings

from phaseshift.lab.wait import wait_for
from sample_app.cache import Cache, LocalCache, owner_items_key, user_key
from sample_app.metrics import Metrics
from sample_app.service import DataService
from sample_app.storage import open_store


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def enabled(max_entries: int = 100, max_bytes: int = 1 << 20, ttl: float = 1.0) -> LocalCache:
    clock = Clock()
    local = LocalCache(max_entries, max_bytes, ttl, clock=clock)
    local.enable()
    return local


# -- LocalCache alone ------------------------------------------------------------------


def test_local_level_is_bounded_in_entries_least_recently_used_first_out() -> None:
    local = enabled(max_entries=3)
    for k in "abc":
        assert local.put(k, None, k.encode(), local.token(k))
    assert local.get("a") == b"a"  # a is now the most recently used
    local.put("d", None, b"d", local.token("d"))
    assert len(local) == 3
    assert local.get("b") is None
    assert [local.get(k) for k in "acd"] == [b"a", b"c", b"d"]


def test_local_level_is_bounded_in_bytes() -> None:
    local = enabled(max_entries=100, max_bytes=10)
    local.put("a", None, b"12345", local.token("a"))
    local.put("b", None, b"12345", local.token("b"))
    local.put("c", None, b"123", local.token("c"))
    assert local.size_bytes <= 10
    assert local.get("a") is None and local.get("c") == b"123"
    # A value larger than the whole level is not kept at all.
    assert not local.put("big", None, b"x" * 11, local.token("big"))
    assert local.get("big") is None


def test_local_entries_expire_after_their_ttl() -> None:
    local = enabled(ttl=1.0)
    clock = local.clock
    assert isinstance(clock, Clock)
    local.put("k", "20", b"v", local.token("k"))
    clock.now += 0.9
    assert local.get("k", "20") == b"v"
    clock.now += 0.2
    assert local.get("k", "20") is None
    assert len(local) == 0


def test_invalidating_a_key_drops_all_its_fields_and_voids_fills_under_way() -> None:
    local = enabled()
    for limit in ("20", "50"):
        local.put("items:owner:o", limit, b"page", local.token("items:owner:o"))
    local.put("user:o", None, b"user", local.token("user:o"))
    token = local.token("items:owner:o")  # a reader starts...
    local.invalidate("items:owner:o")  # ...a write invalidates...
    assert not local.put("items:owner:o", "20", b"old page", token)  # ...the old read is void
    assert local.get("items:owner:o", "20") is None
    assert local.get("items:owner:o", "50") is None
    assert local.get("user:o") == b"user"
    assert local.invalidated_since("items:owner:o", token)


@pytest.mark.parametrize(
    ("max_entries", "max_bytes", "ttl"), [(100, 1 << 20, 0.0), (0, 1 << 20, 1.0), (100, 0, 1.0)]
)
def test_a_zero_ttl_or_bound_turns_the_local_level_off(
    max_entries: int, max_bytes: int, ttl: float
) -> None:
    local = enabled(max_entries, max_bytes, ttl)
    assert local.max_entries == 0
    assert not local.put("k", None, b"v", local.token("k"))
    assert local.get("k") is None and len(local) == 0


def test_a_disabled_local_level_neither_serves_nor_stores() -> None:
    local = enabled()
    local.put("k", None, b"v", local.token("k"))
    local.disable()
    assert local.get("k") is None
    assert not local.put("k", None, b"v", local.token("k"))
    local.enable()  # back on, but empty: nothing from before survives
    assert local.get("k") is None


# -- the service with both levels --------------------------------------------------------


@contextmanager
def service(db: PgDb, redis_url: str, local_ttl: float = 60.0) -> Iterator[DataService]:
    """A DataService of its own, as another replica of the app would have."""
    s = settings(DATABASE_URL=db.primary_url, REDIS_URL=redis_url)
    metrics = Metrics(s.plan)
    cache = Cache(redis_url, metrics, local_ttl_seconds=local_ttl)
    svc = DataService(s, open_store(s), metrics, cache)
    svc.store.ensure_schema()
    try:
        yield svc
    finally:
        cache.close()
        svc.store.close()


def local_on(svc: DataService) -> None:
    assert svc.cache is not None
    svc.get_user("0" * 32)  # the first read starts the invalidation listener
    wait_for(lambda: svc.cache is not None and svc.cache.local.enabled, timeout=10)


def local_hits(svc: DataService) -> float:
    labels = {"plan": svc.metrics.plan}
    return svc.metrics.registry.get_sample_value("cache_local_hits_total", labels) or 0.0


def test_a_repeated_read_is_served_from_process_memory(pg_db: PgDb, redis_url: str) -> None:
    with service(pg_db, redis_url) as svc:
        local_on(svc)
        owner = svc.create_user({"name": "Ada", "email": "ada@example.com"})["id"]
        svc.create_item({"owner": owner, "name": "lamp"})
        first = svc.list_items(owner, 20)
        hits = local_hits(svc)
        assert svc.list_items(owner, 20) == first
        assert svc.peek_items(owner, 20) == first
        assert local_hits(svc) == hits + 2
        # Redis holds the same bytes for the other processes.
        assert redis.Redis.from_url(redis_url).hget(owner_items_key(owner), "20") == first


def test_a_write_is_read_back_at_once_through_the_same_process(pg_db: PgDb, redis_url: str) -> None:
    with service(pg_db, redis_url) as svc:
        local_on(svc)
        owner = svc.create_user({"name": "Ada", "email": "ada2@example.com"})["id"]
        for n in range(3):
            svc.list_items(owner, 20)
            svc.get_user(owner)
            svc.create_item({"owner": owner, "name": f"i{n}"})
            assert svc.list_items(owner, 20).count(b'"id"') == n + 1
            assert f'"item_count":{n + 1}'.encode() in (svc.get_user(owner) or b"")


def test_a_write_through_another_process_invalidates_this_ones_memory(
    pg_db: PgDb, redis_url: str
) -> None:
    # A local TTL of a minute: only the published invalidation can explain freshness.
    with service(pg_db, redis_url) as a, service(pg_db, redis_url) as b:
        local_on(a)
        local_on(b)
        owner = a.create_user({"name": "Ada", "email": "ada3@example.com"})["id"]
        a.create_item({"owner": owner, "name": "first"})
        before = b.list_items(owner, 20)
        hits = local_hits(b)
        assert b.list_items(owner, 20) == before
        assert local_hits(b) == hits + 1  # b holds the page in memory
        a.create_item({"owner": owner, "name": "second"})
        wait_for(lambda: b"second" in b.list_items(owner, 20), timeout=5)
        wait_for(lambda: b'"item_count":2' in (b.get_user(owner) or b""), timeout=5)


def test_a_key_changed_in_redis_without_an_invalidation_is_stale_at_most_the_local_ttl(
    pg_db: PgDb, redis_url: str
) -> None:
    with service(pg_db, redis_url, local_ttl=0.5) as svc:
        local_on(svc)
        owner = svc.create_user({"name": "Ada", "email": "ada4@example.com"})["id"]
        svc.get_user(owner)
        r = redis.Redis.from_url(redis_url)
        r.set(user_key(owner), b'{"changed":true}')  # behind the app's back
        wait_for(lambda: svc.get_user(owner) == b'{"changed":true}', timeout=5)


def test_a_fill_read_before_a_write_is_not_stored(pg_db: PgDb, redis_url: str) -> None:
    with service(pg_db, redis_url) as svc:
        local_on(svc)
        assert svc.cache is not None
        key = user_key("f" * 32)
        token = svc.cache.token(key)  # a reader took its token and read the old row...
        svc.cache.delete(key)  # ...then a write invalidated the key
        svc.cache.set(key, b"old", token=token)
        assert svc.cache.local.get(key) is None
        assert redis.Redis.from_url(redis_url).get(key) is None


def test_a_redis_outage_empties_the_local_level_and_reads_still_succeed(
    pg_db: PgDb, redis_factory: object
) -> None:
    server: RedisServer = redis_factory()  # type: ignore[operator]
    with client(DATABASE_URL=pg_db.primary_url, REDIS_URL=server.url) as c:
        owner = new_user(c)
        c.post("/items", json={"owner": owner, "name": "before"})
        cache = c.app.state.runtime.service.cache  # type: ignore[attr-defined]

        def read_locally() -> bool:
            before = metric(c, "cache_local_hits_total")
            c.get("/items", params={"owner": owner})
            return metric(c, "cache_local_hits_total") > before

        wait_for(read_locally, timeout=10)
        server.stop()
        wait_for(lambda: not cache.local.enabled, timeout=10)
        local = metric(c, "cache_local_hits_total")
        assert c.post("/items", json={"owner": owner, "name": "during"}).status_code == 201
        listed = c.get("/items", params={"owner": owner}).json()["items"]
        assert {i["name"] for i in listed} == {"before", "during"}
        assert c.get(f"/users/{owner}").json()["item_count"] == 2
        assert metric(c, "cache_local_hits_total") == local
        assert metric(c, "cache_errors_total") > 0
        assert metric(c, "cache_up") == 0

        server.start()
        # Back: the subscription is confirmed again and memory serves hits again.
        wait_for(read_locally, timeout=15)
        listed = c.get("/items", params={"owner": owner}).json()["items"]
        assert {i["name"] for i in listed} == {"before", "during"}
        assert metric(c, "cache_up") == 1


def test_http_reads_are_answered_from_memory(pg_db: PgDb, redis_url: str) -> None:
    with client(
        DATABASE_URL=pg_db.primary_url, READ_REPLICA_URLS=pg_db.replica_url, REDIS_URL=redis_url
    ) as c:
        owner = new_user(c)
        item = c.post("/items", json={"owner": owner, "name": "lamp"}).json()["id"]
        pg_db.wait_replicated()

        def all_local() -> bool:
            before = metric(c, "cache_local_hits_total")
            c.get("/items", params={"owner": owner})
            c.get(f"/users/{owner}")
            c.get(f"/items/{item}")
            return metric(c, "cache_local_hits_total") == before + 3

        wait_for(all_local, timeout=10)
        body = c.get("/items", params={"owner": owner})
        assert body.headers["content-type"] == "application/json"
        assert [i["id"] for i in body.json()["items"]] == [item]
        assert c.get(f"/items/{item}").json()["name"] == "lamp"
        # A malformed id is still a 404, not a cache question.
        assert c.get("/users/not-an-id").status_code == 404


def test_the_environment_sizes_the_local_level(pg_db: PgDb, redis_url: str) -> None:
    with client(
        DATABASE_URL=pg_db.primary_url,
        REDIS_URL=redis_url,
        CACHE_LOCAL_TTL_SECONDS="2.5",
        CACHE_LOCAL_MAX_ENTRIES="7",
        CACHE_LOCAL_MAX_BYTES="4096",
    ) as c:
        local = c.app.state.runtime.service.cache.local  # type: ignore[attr-defined]
        assert (local.ttl, local.max_entries, local.max_bytes) == (2.5, 7, 4096)


def test_a_local_ttl_of_zero_sends_every_hit_to_redis(pg_db: PgDb, redis_url: str) -> None:
    with client(
        DATABASE_URL=pg_db.primary_url, REDIS_URL=redis_url, CACHE_LOCAL_TTL_SECONDS="0"
    ) as c:
        cache = c.app.state.runtime.service.cache  # type: ignore[attr-defined]
        owner = new_user(c)
        item = c.post("/items", json={"owner": owner, "name": "lamp"}).json()["id"]
        for path in ("/items", f"/users/{owner}", f"/items/{item}"):
            c.get(path, params={"owner": owner} if path == "/items" else None)  # fills Redis
        hits = metric(c, "cache_hits_total")
        for _ in range(5):
            assert c.get("/items", params={"owner": owner}).json()["items"][0]["id"] == item
            assert c.get(f"/users/{owner}").json()["item_count"] == 1
            assert c.get(f"/items/{item}").json()["name"] == "lamp"
        # Every read was a Redis hit; none came from process memory, which holds nothing
        # and has no invalidation listener to keep.
        assert metric(c, "cache_hits_total") == hits + 15
        assert metric(c, "cache_local_hits_total") == 0
        assert len(cache.local) == 0 and not cache.local.enabled
        assert cache._listener is None
        # Writes still invalidate Redis: the next read sees them.
        c.post("/items", json={"owner": owner, "name": "desk"})
        assert len(c.get("/items", params={"owner": owner}).json()["items"]) == 2
        assert c.get(f"/users/{owner}").json()["item_count"] == 2
