"""Cache-aside on real Redis and Redis Cluster, including an outage."""

from __future__ import annotations

import redis
from conftest import PgDb, RedisServer
from sampleapp_helpers import client, eventually, metric, new_user

from sample_app.cache import owner_items_key, user_key


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
        import time

        time.sleep(1.1)  # the cache is bypassed for one second after a failure
        c.get("/items", params={"owner": owner})
        listed = c.get("/items", params={"owner": owner}).json()["items"]
        assert {i["name"] for i in listed} == {"before", "during"}
        assert metric(c, "cache_up") == 1


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

        eventually(read_locally, timeout=10)
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
