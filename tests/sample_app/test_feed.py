"""Phase 4's activity feed on a real Cassandra node and a real Kafka broker (both on
loopback): written by the event consumer, served by the data-service through the gateway,
through a Cassandra outage."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
from conftest import CassandraNode, KafkaBroker, free_port
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from sampleapp_helpers import ServerThread, client, metric, running, settings

from phaseshift.lab.wait import wait_for
from sample_app.app import create_app
from sample_app.consumer import GROUP, Consumer
from sample_app.events import TOPIC
from sample_app.metrics import Metrics


def feed_env(node: CassandraNode | str, keyspace: str) -> dict[str, str]:
    points = node if isinstance(node, str) else node.contact_points
    return {"CASSANDRA_CONTACT_POINTS": points, "CASSANDRA_KEYSPACE": keyspace}


@contextmanager
def consuming(broker: KafkaBroker, **env: str) -> Iterator[Metrics]:
    """The consumer of `python -m sample_app consume`, running until the block ends."""
    metrics = Metrics("test")
    with running(Consumer(settings(KAFKA_BOOTSTRAP=broker.bootstrap, **env), metrics)):
        yield metrics


def counted(metrics: Metrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(name, {"plan": "test", **labels}) or 0.0


def user_event(user: str) -> dict[str, Any]:
    data = {"id": user, "name": "Ada", "email": "a@b.co", "created_at": int(time.time() * 1000)}
    return {"type": "user_created", "key": user, "data": data}


def produce(broker: KafkaBroker, *events: dict[str, Any]) -> None:
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap, acks="all")
    try:
        for event in events:
            value = json.dumps(event).encode()
            producer.send(TOPIC, key=event["key"].encode(), value=value).get(timeout=30)
    finally:
        producer.close()


def committed(broker: KafkaBroker) -> int:
    """Events the consumer group has committed past, over all partitions."""
    # A client of the group's that never subscribes: it reads the offsets, joins nothing.
    reader = KafkaConsumer(
        bootstrap_servers=broker.bootstrap, group_id=GROUP, enable_auto_commit=False
    )
    try:
        partitions = reader.partitions_for_topic(TOPIC) or set()
        offsets = [reader.committed(TopicPartition(TOPIC, p)) for p in partitions]
    finally:
        reader.close(autocommit=False)
    return sum(o or 0 for o in offsets)


def activity(c: Any, user: str, **params: Any) -> list[dict[str, Any]]:
    r = c.get(f"/users/{user}/activity", params=params)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["user"] == user
    return list(body["activity"])


def test_events_become_the_users_feed_newest_first(
    tmp_path: Path, kafka_broker: KafkaBroker, cassandra: CassandraNode, cassandra_keyspace: str
) -> None:
    db = f"sqlite:///{tmp_path}/shared.db"
    stream = {"DATABASE_URL": db, "KAFKA_BOOTSTRAP": kafka_broker.bootstrap}
    feed = feed_env(cassandra, cassandra_keyspace)
    users = create_app(settings(APP_ROLE="user-service", **stream))
    data = create_app(settings(APP_ROLE="data-service", **stream, **feed))
    with (
        ServerThread(users, free_port()) as us,
        ServerThread(data, free_port()) as ds,
        client(APP_ROLE="gateway", USER_SERVICE_URL=us.url, DATA_SERVICE_URL=ds.url) as gw,
        consuming(kafka_broker, **feed) as consumer,
    ):
        r = gw.post("/users", json={"name": "Ada", "email": "ada@example.com"})
        assert r.status_code == 201
        user = r.json()
        items = []
        for name in ("lamp", "desk", "chair"):
            r = gw.post("/items", json={"owner": user["id"], "name": name, "price_cents": 100})
            assert r.status_code == 201
            items.append(r.json())

        # The consumer writes the feed as the events arrive; the gateway sends the read
        # to the data-service, which serves it from Cassandra.
        feed_of_user = wait_for(
            lambda: (rows := activity(gw, user["id"])) and len(rows) == 4 and rows, timeout=120
        )
        expected = sorted(
            [(user["created_at"], "user_created", user["id"], {"name": "Ada"})]
            + [(i["created_at"], "item_created", i["id"], {"name": i["name"], "price_cents": 100})
               for i in items],
            key=lambda e: (e[0], f"{e[1]}:{e[2]}"),
            reverse=True,
        )  # fmt: skip
        assert [(e["at"], e["type"], e["id"], e["detail"]) for e in feed_of_user] == expected
        # Newest first, so a limit keeps the newest.
        assert activity(gw, user["id"], limit=2) == feed_of_user[:2]
        assert gw.get(f"/users/{user['id']}/activity", params={"limit": 0}).status_code == 400
        assert gw.get(f"/users/{user['id']}/activity", params={"limit": 101}).status_code == 400
        # A user with no events has an empty feed; an id that names nobody, none.
        assert activity(gw, "f" * 32) == []
        assert gw.get("/users/nobody/activity").status_code == 404

        wait_for(lambda: counted(consumer, "feed_writes_total") == 4, timeout=30)
        assert counted(consumer, "feed_errors_total") == 0
        assert httpx.get(f"{ds.url}/readyz").json()["checks"]["feed"] == "ok"
        # The email stays in the relational database.
        assert "ada@example.com" not in gw.get(f"/users/{user['id']}/activity").text


def test_a_redelivered_event_is_one_row(
    kafka_broker: KafkaBroker, cassandra: CassandraNode, cassandra_keyspace: str
) -> None:
    feed = feed_env(cassandra, cassandra_keyspace)
    user = "c" * 32
    event = user_event(user)
    # The same event twice (as a producer retry, or a consumer that died before its
    # commit, would deliver it): two writes of one row.
    produce(kafka_broker, event, event)
    with (
        consuming(kafka_broker, **feed) as consumer,
        client(APP_ROLE="data-service", DATABASE_URL="sqlite:///:memory:", **feed) as c,
    ):
        wait_for(lambda: counted(consumer, "feed_writes_total") == 2, timeout=120)
        rows = activity(c, user)
        assert [(e["type"], e["id"], e["at"]) for e in rows] == [
            ("user_created", user, event["data"]["created_at"])
        ]


def test_an_unreachable_cassandra_is_503_and_the_app_starts(
    tmp_path: Path, cassandra_keyspace: str
) -> None:
    nowhere = f"127.0.0.1:{free_port()}"  # nothing listens there
    env = {"DATABASE_URL": f"sqlite:///{tmp_path}/app.db", **feed_env(nowhere, cassandra_keyspace)}
    with client(APP_ROLE="data-service", **env) as c:
        # The rest of the service works; the feed is reported, not a readiness condition.
        ready = c.get("/readyz")
        assert ready.status_code == 200
        assert ready.json()["checks"]["feed"] == "unavailable"
        assert c.get("/items").status_code == 200
        r = c.get(f"/users/{'d' * 32}/activity")
        assert r.status_code == 503
        assert r.json()["error"] == "unavailable"
        assert "Cassandra" in r.json()["detail"]
        assert metric(c, "feed_errors_total") >= 1


def test_an_outage_delays_the_feed_and_loses_no_event(
    tmp_path: Path, kafka_broker: KafkaBroker, cassandra: CassandraNode, cassandra_keyspace: str
) -> None:
    feed = feed_env(cassandra, cassandra_keyspace)
    env = {"DATABASE_URL": f"sqlite:///{tmp_path}/app.db", **feed}
    before, during = user_event("e" * 32), user_event("f" * 32)
    with (
        consuming(kafka_broker, **feed) as consumer,
        client(APP_ROLE="data-service", **env) as c,
    ):
        produce(kafka_broker, before)
        wait_for(lambda: len(activity(c, "e" * 32)) == 1, timeout=120)
        wait_for(lambda: committed(kafka_broker) == 1, timeout=30)

        cassandra.stop()
        produce(kafka_broker, during)
        wait_for(lambda: counted(consumer, "feed_errors_total") >= 1, timeout=120)
        # Not written, so not committed: a consumer that stopped now would read it again.
        assert committed(kafka_broker) == 1
        assert counted(consumer, "events_consumed_total", type="user_created") == 1
        r = c.get(f"/users/{'e' * 32}/activity")
        assert r.status_code == 503 and r.json()["error"] == "unavailable"

        cassandra.start()
        # The consumer retries the same event; the service reconnects by itself.
        rows = wait_for(
            lambda: _answered(c, "f" * 32),
            timeout=180,
            what="the event written during the outage served",
        )
        assert [e["id"] for e in rows] == ["f" * 32]
        wait_for(lambda: committed(kafka_broker) == 2, timeout=60)
        assert counted(consumer, "feed_writes_total") == 2
        assert counted(consumer, "events_consumed_total", type="user_created") == 2
        assert activity(c, "e" * 32)[0]["id"] == "e" * 32


def _answered(c: Any, user: str) -> list[dict[str, Any]] | None:
    r = c.get(f"/users/{user}/activity")
    return r.json()["activity"] or None if r.status_code == 200 else None
