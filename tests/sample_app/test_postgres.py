"""Phase 2/3 storage against a real PostgreSQL primary, its streaming replica and shards."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from conftest import PgCluster, PgDb
from sampleapp_helpers import client, metric, new_user

from sample_app.storage.sharded import shard_for


def test_reads_go_to_the_replica_and_writes_to_the_primary(pg_db: PgDb) -> None:
    with client(
        DATABASE_URL=pg_db.primary_url,
        READ_REPLICA_URLS=pg_db.replica_url,
        READ_YOUR_WRITES_SECONDS="0",
    ) as c:
        owner = new_user(c)
        c.post("/items", json={"owner": owner, "name": "desk"})
        pg_db.wait_replicated()
        replica_before = metric(c, "db_queries_total", target="replica")
        listed = c.get("/items", params={"owner": owner}).json()["items"]
        assert [i["name"] for i in listed] == ["desk"]
        assert metric(c, "db_queries_total", target="replica") > replica_before
    # The rows really are in the primary and were streamed to the replica.
    with psycopg.connect(pg_db.replica_url) as r:
        assert r.execute("SELECT count(*) FROM items").fetchone() == (1,)
        assert r.execute("SELECT pg_is_in_recovery()").fetchone() == (True,)


def test_read_your_writes_sends_a_writers_reads_to_the_primary(pg_db: PgDb) -> None:
    with client(DATABASE_URL=pg_db.primary_url, READ_REPLICA_URLS=pg_db.replica_url) as c:
        owner = new_user(c)
        # Read immediately after each write, without waiting for replication.
        for n in range(5):
            item = c.post("/items", json={"owner": owner, "name": f"i{n}"}).json()
            listed = c.get("/items", params={"owner": owner}).json()["items"]
            assert item["id"] in [i["id"] for i in listed]
            assert c.get(f"/items/{item['id']}").status_code == 200
            assert c.get(f"/users/{owner}").json()["item_count"] == n + 1
        assert metric(c, "db_queries_total", target="primary") > 0


def test_a_lost_replica_costs_capacity_not_availability(pg_db: PgDb) -> None:
    dead_replica = "postgresql://postgres@127.0.0.1:1/none"
    with client(
        DATABASE_URL=pg_db.primary_url, READ_REPLICA_URLS=dead_replica, READ_YOUR_WRITES_SECONDS="0"
    ) as c:
        owner = new_user(c)
        assert c.get("/items", params={"owner": owner}).status_code == 200
        assert metric(c, "db_queries_total", target="primary-fallback") > 0


@pytest.fixture
def shard_urls(pg_cluster: PgCluster) -> list[str]:
    # Two databases stand in for two primaries: routing is what is under test.
    return [pg_cluster.primary.url(pg_cluster.create_database()) for _ in range(2)]


def test_hash_sharding_keeps_a_user_and_their_items_together(shard_urls: list[str]) -> None:
    with client(DATABASE_URL=shard_urls[0], DATABASE_SHARD_URLS=",".join(shard_urls)) as c:
        owners = [new_user(c, f"u{i}") for i in range(12)]
        items: dict[str, str] = {}
        for owner in owners:
            items[owner] = c.post("/items", json={"owner": owner, "name": "x"}).json()["id"]
        for owner in owners:
            assert c.get(f"/users/{owner}").json()["item_count"] == 1
            assert c.get(f"/items/{items[owner]}").json()["owner"] == owner
            listed = c.get("/items", params={"owner": owner}).json()["items"]
            assert [i["id"] for i in listed] == [items[owner]]
        assert len(c.get("/users", params={"limit": 100}).json()["users"]) == 12
    counts: list[Any] = []
    for i, url in enumerate(shard_urls):
        with psycopg.connect(url) as conn:
            stored = {row[0] for row in conn.execute("SELECT id FROM users")}
            assert stored == {o for o in owners if shard_for(o, 2) == i}
            owners_of_items = {row[0] for row in conn.execute("SELECT owner_id FROM items")}
            assert owners_of_items == stored
            counts.append(len(stored))
    assert all(counts), "12 random users should land on both shards"
