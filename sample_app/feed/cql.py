"""The feed's CQL. The keyspace is a name Settings has checked (letters, digits and _),
so it can be written into the statements."""

from __future__ import annotations

TABLE = "activity_by_user"


def create_keyspace(keyspace: str, replication_factor: int) -> str:
    # NetworkTopologyStrategy's replication_factor shorthand (Cassandra 4.0+) gives every
    # data centre that many replicas, so the snitch's data centre names need not be known.
    return (
        f"CREATE KEYSPACE IF NOT EXISTS {keyspace} WITH replication = "
        f"{{'class': 'NetworkTopologyStrategy', 'replication_factor': {replication_factor}}}"
    )


def create_table(keyspace: str) -> str:
    # One partition per user, rows newest first: a feed page is one sequential read.
    return f"""CREATE TABLE IF NOT EXISTS {keyspace}.{TABLE} (
    user_id text,
    at timestamp,
    event_id text,
    type text,
    subject_id text,
    detail text,
    PRIMARY KEY ((user_id), at, event_id)
) WITH CLUSTERING ORDER BY (at DESC, event_id DESC)"""


def insert(keyspace: str) -> str:
    return (
        f"INSERT INTO {keyspace}.{TABLE} (user_id, at, event_id, type, subject_id, detail) "
        "VALUES (?, ?, ?, ?, ?, ?)"
    )


def select(keyspace: str) -> str:
    return f"SELECT at, type, subject_id, detail FROM {keyspace}.{TABLE} WHERE user_id = ? LIMIT ?"


def consistency(replication_factor: int) -> str:
    """The consistency level of reads and writes, by name.

    LOCAL_QUORUM at RF >= 2: a write acknowledged by a majority of the data centre's
    replicas is seen by every quorum read after it, and either survives one replica
    down (RF 3, the operator's default from three nodes). At RF 1 the quorum is the one
    replica, so ONE says the same thing plainly.
    """
    return "LOCAL_QUORUM" if replication_factor >= 2 else "ONE"
