"""The activity feed without Cassandra: what a row holds, its CQL, its settings, and that
an app without Cassandra says so. test_feed.py runs the feed against a real node."""

from __future__ import annotations

import json
from datetime import datetime

import pytest
from sampleapp_helpers import client

from sample_app.config import ConfigError, Settings, contact_points
from sample_app.events import Event, InvalidEvent
from sample_app.feed import ActivityFeed, FeedEntry, activity_row, cql, entry_view, feed_json
from sample_app.feed.rows import MAX_AT_MS, millis

USER = "a" * 32
ITEM = "b" * 32


def user_created(at: int = 1_700_000_000_123, **extra: object) -> Event:
    data = {"id": USER, "name": "Ada", "email": "ada@example.com", "created_at": at, **extra}
    return Event("user_created", USER, data)


def item_created(at: int = 1_700_000_000_456) -> Event:
    data = {"id": ITEM, "owner": USER, "name": "lamp", "price_cents": 1200, "created_at": at}
    return Event("item_created", USER, data)


def test_a_row_is_keyed_by_its_user_and_event() -> None:
    row = activity_row(item_created())
    assert (row.user_id, row.at_ms, row.event_id) == (
        USER,
        1_700_000_000_456,
        f"item_created:{ITEM}",
    )
    assert (row.type, row.subject_id) == ("item_created", ITEM)
    assert json.loads(row.detail) == {"name": "lamp", "price_cents": 1200}


def test_a_redelivered_event_makes_the_same_row() -> None:
    assert activity_row(user_created()) == activity_row(user_created())


def test_the_feed_keeps_only_what_it_shows() -> None:
    # The email stays in the relational database.
    assert json.loads(activity_row(user_created()).detail) == {"name": "Ada"}


@pytest.mark.parametrize(
    "data",
    [
        {"created_at": 1},
        {"id": "", "created_at": 1},
        {"id": 7, "created_at": 1},
        {"id": USER},
        {"id": USER, "created_at": True},
        {"id": USER, "created_at": "yesterday"},
        {"id": USER, "created_at": -1},
        {"id": USER, "created_at": MAX_AT_MS + 1},
    ],
)
def test_an_event_without_an_id_or_a_time_has_no_row(data: dict[str, object]) -> None:
    with pytest.raises(InvalidEvent):
        activity_row(Event("user_created", USER, data))


def test_timestamps_read_back_as_the_milliseconds_written() -> None:
    # The driver hands a timestamp column back as a naive UTC datetime.
    assert millis(datetime(2023, 11, 14, 22, 13, 20, 123000)) == 1_700_000_000_123
    assert millis(datetime(1970, 1, 1)) == 0
    assert millis(42) == 42


def test_the_api_shows_entries_with_their_detail() -> None:
    entries = [
        FeedEntry(2, "item_created", ITEM, '{"name":"lamp"}'),
        FeedEntry(1, "user_created", USER, "not json"),
    ]
    assert json.loads(feed_json(USER, entries)) == {
        "user": USER,
        "activity": [
            {"at": 2, "type": "item_created", "id": ITEM, "detail": {"name": "lamp"}},
            {"at": 1, "type": "user_created", "id": USER, "detail": {}},
        ],
    }
    assert entry_view(FeedEntry(1, "user_created", USER, ""))["detail"] == {}


def test_the_table_is_one_partition_per_user_newest_first() -> None:
    table = cql.create_table("shop")
    assert "PRIMARY KEY ((user_id), at, event_id)" in table
    assert "CLUSTERING ORDER BY (at DESC, event_id DESC)" in table
    assert table.startswith("CREATE TABLE IF NOT EXISTS shop.activity_by_user")
    keyspace = cql.create_keyspace("shop", 3)
    assert keyspace.startswith("CREATE KEYSPACE IF NOT EXISTS shop ")
    assert "'replication_factor': 3" in keyspace
    # Prepared statements: values are bound, never written in.
    assert cql.insert("shop").count("?") == 6
    assert cql.select("shop").endswith("WHERE user_id = ? LIMIT ?")


def test_quorums_once_there_are_replicas_to_agree() -> None:
    assert [cql.consistency(rf) for rf in (1, 2, 3, 5)] == ["ONE"] + ["LOCAL_QUORUM"] * 3


def test_contact_points_are_host_and_port() -> None:
    assert contact_points(None) == ()
    assert contact_points("shop-cassandra") == (("shop-cassandra", 9042),)
    assert contact_points("a:9043, b") == (("a", 9043), ("b", 9042))
    assert contact_points("[::1]:9043,::1") == (("::1", 9043), ("::1", 9042))


@pytest.mark.parametrize("value", ["a:", "a:x", "a:70000", ":9042", "[::1]:0"])
def test_bad_contact_points_are_refused(value: str) -> None:
    with pytest.raises(ConfigError, match="CASSANDRA_CONTACT_POINTS"):
        contact_points(value)


def test_feed_settings_from_the_environment() -> None:
    defaults = Settings.from_env({})
    assert defaults.cassandra_contact_points == ()
    assert (defaults.cassandra_keyspace, defaults.cassandra_replication_factor) == ("phaseshift", 1)
    s = Settings.from_env(
        {
            "CASSANDRA_CONTACT_POINTS": "shop-cassandra:9042",
            "CASSANDRA_KEYSPACE": "shop_feed",
            "CASSANDRA_REPLICATION_FACTOR": "3",
        }
    )
    assert s.cassandra_contact_points == (("shop-cassandra", 9042),)
    assert (s.cassandra_keyspace, s.cassandra_replication_factor) == ("shop_feed", 3)
    feed = ActivityFeed.from_settings(s)
    assert feed is not None and feed.keyspace == "shop_feed"
    assert ActivityFeed.from_settings(defaults) is None


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"CASSANDRA_KEYSPACE": "shop-feed"}, "CASSANDRA_KEYSPACE"),
        ({"CASSANDRA_KEYSPACE": "x; DROP KEYSPACE system"}, "CASSANDRA_KEYSPACE"),
        ({"CASSANDRA_KEYSPACE": "a" * 49}, "CASSANDRA_KEYSPACE"),
        ({"CASSANDRA_REPLICATION_FACTOR": "0"}, "CASSANDRA_REPLICATION_FACTOR"),
        ({"CASSANDRA_REPLICATION_FACTOR": "three"}, "CASSANDRA_REPLICATION_FACTOR"),
    ],
)
def test_bad_feed_settings_name_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Settings.from_env(env)


def test_the_feed_refuses_a_keyspace_it_would_write_into_cql() -> None:
    with pytest.raises(ValueError, match="keyspace"):
        ActivityFeed([("127.0.0.1", 9042)], "x; DROP", 1)


def test_without_cassandra_the_feed_is_not_found(tmp_path) -> None:
    with client(APP_ROLE="data-service", DATABASE_URL=f"sqlite:///{tmp_path}/app.db") as c:
        r = c.get(f"/users/{USER}/activity")
        assert r.status_code == 404
        assert "CASSANDRA_CONTACT_POINTS" in r.json()["detail"]
        assert "feed" not in c.get("/readyz").json().get("checks", {})
