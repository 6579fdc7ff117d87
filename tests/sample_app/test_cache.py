"""Cache-aside on real Redis and Redis Cluster, including an outage."""

from __future__ import annotations

import threading
from collections.abc import Callable, Collection

import redis
from conftest import PgDb, RedisServer, free_port
from sampleapp_helpers import client, metric, new_user

from phaseshift.lab.wait import wait_for
from sample_app.cache import Cache, owner_items_key, user_key
from sample_app.metrics import Metrics

RedisFactory = Callable[..., RedisServer]


def test_reads_after_writes_are_correct_with_the_cache_on(pg_db: PgDb, redis_url: str) -> None:
    with client(
        DATABASE_URL=pg_db.primary_url, READ_REPLICA_URLS=pg_db.replica_url, REDIS_URL=redis_url
    ) as c:
        owner = new_user(c)
        seen: list[str] = []
        for n in range(4):
            # Warm the cache, write, read again: the write must be visible at once.
            c.get("/items", params={"owner": owner})
            c.get(f"/users/{owner}")
            seen.append(c.post("/items", json={"owner": owner, "name": f"i{n}"}).json()["id"])
            listed = c.get("/items", params={"owner": owner}).json()["items"]
            assert sorted(i["id"] for i in listed) == sorted(seen)
            assert c.get(f"/users/{owner}").json()["item_count"] == n + 1
        hits = metric(c, "cache_hits_total")
        c.get("/items", params={"owner": owner})
        assert metric(c, "cache_hits_total") == hits + 1


def test_cache_entries_expire_and_writes_invalidate(pg_db: PgDb, redis_url: str) -> None:
    r = redis.Redis.from_url(redis_url)
    with client(DATABASE_URL=pg_db.primary_url, REDIS_URL=redis_url, CACHE_TTL_SECONDS="7") as c:
        owner = new_user(c)
        c.get("/items", params={"owner": owner})
        c.get(f"/users/{owner}")
        assert 0 < r.pttl(owner_items_key(owner)) <= 7000
        assert r.exists(user_key(owner))
        c.post("/items", json={"owner": owner, "name": "x"})
        assert not r.exists(owner_items_key(owner))
        assert not r.exists(user_key(owner))


def test_a_cache_outage_degrades_to_the_database(pg_db: PgDb, redis_factory: object) -> None:
    server: RedisServer = redis_factory()  # type: ignore[operator]
    with client(DATABASE_URL=pg_db.primary_url, REDIS_URL=server.url) as c:
        owner = new_user(c)
        c.post("/items", json={"owner": owner, "name": "before"})
        assert c.get("/items", params={"owner": owner}).status_code == 200
        assert metric(c, "cache_up") == 1

        server.stop()
        # Writes and reads still succeed, straight from PostgreSQL.
        assert c.post("/items", json={"owner": owner, "name": "during"}).status_code == 201
        listed = c.get("/items", params={"owner": owner}).json()["items"]
        assert {i["name"] for i in listed} == {"before", "during"}
        assert c.get(f"/users/{owner}").json()["item_count"] == 2
        assert c.get("/readyz").status_code == 200
        assert metric(c, "cache_errors_total") > 0
        assert metric(c, "cache_up") == 0

        server.start()  # empty again: what was cached before the outage is gone

        def fresh_and_back() -> bool:
            # The cache is bypassed for a second after a failure, then used again.
            listed = c.get("/items", params={"owner": owner}).json()["items"]
            assert {i["name"] for i in listed} == {"before", "during"}
            return metric(c, "cache_up") == 1

        wait_for(fresh_and_back, timeout=15)
        listed = c.get("/items", params={"owner": owner}).json()["items"]
        assert {i["name"] for i in listed} == {"before", "during"}


def test_redis_cluster_as_the_cache(pg_db: PgDb, redis_cluster: list[RedisServer]) -> None:
    with client(
        DATABASE_URL=pg_db.primary_url, REDIS_URL=redis_cluster[0].url, REDIS_CLUSTER="true"
    ) as c:
        owners = [new_user(c, f"u{i}") for i in range(8)]
        for owner in owners:
            c.post("/items", json={"owner": owner, "name": "x"})
            c.get("/items", params={"owner": owner})
            c.get(f"/users/{owner}")
        hits = metric(c, "cache_hits_total")
        for owner in owners:
            assert len(c.get("/items", params={"owner": owner}).json()["items"]) == 1
            assert c.get(f"/users/{owner}").json()["item_count"] == 1
        assert metric(c, "cache_hits_total") == hits + 16
        assert metric(c, "cache_errors_total") == 0

        # The in-process level works against a cluster too, and a write invalidates it.
        def read_locally() -> bool:
            before = metric(c, "cache_local_hits_total")
            c.get("/items", params={"owner": owners[0]})
            return metric(c, "cache_local_hits_total") > before

        wait_for(read_locally, timeout=10)
        c.post("/items", json={"owner": owners[0], "name": "y"})
        assert len(c.get("/items", params={"owner": owners[0]}).json()["items"]) == 2
        assert metric(c, "cache_errors_total") == 0
    # The keys were spread over the cluster's primaries.
    holders = {
        node.port
        for node in redis_cluster
        if redis.Redis(port=node.port).info("replication")["role"] == "master"
        and redis.Redis(port=node.port).dbsize() > 0
    }
    assert len(holders) >= 2


def test_writes_during_an_outage_invalidate_what_redis_kept_once_it_is_back(
    pg_db: PgDb, redis_factory: RedisFactory
) -> None:
    server = redis_factory("--appendonly", "yes")  # keeps its data across a restart
    kept = redis.Redis.from_url(server.url)
    with client(DATABASE_URL=pg_db.primary_url, REDIS_URL=server.url) as c:
        owner = new_user(c)
        c.post("/items", json={"owner": owner, "name": "before"})
        c.get("/items", params={"owner": owner})
        c.get(f"/users/{owner}")
        assert kept.exists(owner_items_key(owner), user_key(owner)) == 2

        server.stop()
        assert c.post("/items", json={"owner": owner, "name": "during"}).status_code == 201
        assert metric(c, "cache_invalidations_owed") == 2
        server.start()
        # Redis came back with the entries cached before the write: stale now.
        assert kept.exists(owner_items_key(owner), user_key(owner)) == 2

        def fresh_and_delivered() -> bool:
            listed = c.get("/items", params={"owner": owner}).json()["items"]
            assert {i["name"] for i in listed} == {"before", "during"}
            assert c.get(f"/users/{owner}").json()["item_count"] == 2
            return metric(c, "cache_invalidations_owed") == 0 and metric(c, "cache_up") == 1

        wait_for(fresh_and_delivered, timeout=15)
        # Cached afresh from the database after the owed invalidations were delivered.
        listed = c.get("/items", params={"owner": owner}).json()["items"]
        assert {i["name"] for i in listed} == {"before", "during"}
        assert c.get(f"/users/{owner}").json()["item_count"] == 2


def test_a_write_during_an_outage_does_not_wait_for_redis(redis_factory: RedisFactory) -> None:
    server = redis_factory()
    metrics = Metrics("shop")
    cache = Cache(server.url, metrics, retry_after=600)
    cache.set("k0", b"v")
    server.stop()
    cache.delete("k0")  # finds Redis down

    def sample(name: str) -> float | None:
        return metrics.registry.get_sample_value(name, {"plan": "shop"})

    assert sample("cache_errors_total") == 1
    for n in range(1, 50):
        cache.delete(f"k{n}")
    # No further attempt on Redis: the keys are owed, not tried and timed out one by one.
    assert sample("cache_errors_total") == 1
    assert sample("cache_invalidations_owed") == 50
    cache.close()


def test_too_many_owed_invalidations_keep_redis_unused_until_they_expire(
    redis_factory: RedisFactory,
) -> None:
    server = redis_factory("--appendonly", "yes")
    kept = redis.Redis.from_url(server.url)
    cache = Cache(
        server.url, Metrics("shop"), ttl_seconds=5, retry_after=0.1, max_owed_invalidations=3
    )
    cache.set("stale", b"old")
    cache.set("other", b"old")
    server.stop()
    cache.delete("stale", "a")
    cache.delete("b", "c")  # one more than can be remembered
    server.start()
    assert kept.get("stale") == b"old"  # Redis kept it: stale, and not known to be
    # Writes while Redis is not read still invalidate there, and never extend the wait.
    wait_for(lambda: (cache.delete("other"), kept.get("other") is None)[1], timeout=15)
    # Which entries are stale is no longer known: none is served until the TTL is over,
    # by which time Redis has expired every one of them.
    reads = []

    def expired_and_back() -> bool:
        reads.append(cache.get("stale"))
        cache.delete("other")
        cache.set("probe", b"1")
        return cache.get("probe") == b"1"

    wait_for(expired_and_back, timeout=15)
    assert reads[:-1] == [None] * (len(reads) - 1)
    assert cache.get("stale") is None
    cache.close()


def test_an_invalidation_owed_again_during_a_delivery_stays_owed(
    redis_factory: RedisFactory,
) -> None:
    server = redis_factory()
    metrics = Metrics("shop")
    cache = Cache(server.url, metrics, retry_after=0.1)
    server.stop()
    cache.delete("k")  # owed
    server.start()
    deliver = cache._delete_and_publish
    interleaved = []

    def delivering(keys: Collection[str]) -> None:
        main = threading.current_thread() is threading.main_thread()
        if "k" in keys and main and not interleaved:
            interleaved.append(keys)
            # Another request writes k while its earlier invalidation is being delivered.
            other = threading.Thread(target=cache.delete, args=("k",))
            other.start()
            other.join()
        deliver(keys)

    cache._delete_and_publish = delivering  # type: ignore[method-assign]

    def owed() -> float | None:
        return metrics.registry.get_sample_value("cache_invalidations_owed", {"plan": "shop"})

    # Once Redis is back, the first read delivers what is owed (and the write cuts in).
    wait_for(lambda: (cache.get("x"), interleaved)[1], timeout=15)
    # The later write's invalidation is not settled by the delivery that began before it.
    assert owed() == 1
    cache.get("x")
    assert owed() == 0
    cache.close()


def test_a_redis_cluster_wholly_down_degrades_to_the_database_and_is_used_again(
    pg_db: PgDb, redis_cluster: list[RedisServer]
) -> None:
    with client(
        DATABASE_URL=pg_db.primary_url, REDIS_URL=redis_cluster[0].url, REDIS_CLUSTER="true"
    ) as c:
        owner = new_user(c)
        c.post("/items", json={"owner": owner, "name": "before"})
        assert c.get(f"/users/{owner}").status_code == 200
        try:
            for node in redis_cluster:
                node.stop()
            # Every node gone, as when all the cluster's pods are deleted at once: the
            # app serves from PostgreSQL.
            assert c.post("/items", json={"owner": owner, "name": "during"}).status_code == 201
            assert c.get(f"/users/{owner}").json()["item_count"] == 2
            listed = c.get("/items", params={"owner": owner}).json()["items"]
            assert {i["name"] for i in listed} == {"before", "during"}
            assert metric(c, "cache_up") == 0
        finally:
            for node in redis_cluster:
                node.start()

        def formed_and_used() -> bool:
            assert c.get(f"/users/{owner}").json()["item_count"] == 2
            return metric(c, "cache_up") == 1 and metric(c, "cache_errors_total") > 0

        wait_for(formed_and_used, timeout=30)
        hits = metric(c, "cache_hits_total")
        for _ in range(3):
            assert c.get(f"/users/{owner}").json()["item_count"] == 2
        assert metric(c, "cache_hits_total") > hits


def test_an_app_starts_while_its_redis_cluster_cannot_be_reached(pg_db: PgDb) -> None:
    with client(
        DATABASE_URL=pg_db.primary_url, REDIS_URL=f"redis://127.0.0.1:{free_port()}/0",
        REDIS_CLUSTER="true",
    ) as c:  # fmt: skip
        assert c.get("/readyz").status_code == 200
        owner = new_user(c)
        assert c.post("/items", json={"owner": owner, "name": "x"}).status_code == 201
        assert c.get(f"/users/{owner}").json()["item_count"] == 1
        assert metric(c, "cache_up") == 0
