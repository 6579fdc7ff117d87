"""The feed in Cassandra: a session made on first use, kept, and rebuilt only when it
could never be made.

An app must start while Cassandra is away (its nodes bootstrap one at a time after the
app's pods are up), so nothing connects before the feed is first used. A connection that
fails leaves the feed alone for `retry_after` seconds: an outage costs one connect
timeout per interval, not one per request. Once made, the session is kept through
outages: the driver reconnects to nodes that come back by itself, and until then each
statement fails fast with FeedUnavailable.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ..cache.breaker import Breaker
from ..config import KEYSPACE_RE, Settings
from . import cql
from .rows import ActivityRow, FeedEntry, millis

log = logging.getLogger(__name__)
# The driver logs each failed connection with its traceback at ERROR, and each failed
# reconnection attempt at WARNING; the feed logs one line per failure itself.
logging.getLogger("cassandra.cluster").setLevel(logging.CRITICAL)
logging.getLogger("cassandra.pool").setLevel(logging.ERROR)

# Protocol v5 is Cassandra 4.0's and 5.0's; fixing it spares the driver a downgrade
# dance (and its warnings) from the DSE versions it would try first.
PROTOCOL_VERSION = 5
# How long the driver waits between attempts to reach a node that went down: short
# enough that the feed is back soon after the node, bounded so an outage costs little.
RECONNECT_BASE_SECONDS = 0.5
RECONNECT_MAX_SECONDS = 10.0
PREPARE_ATTEMPTS = 10


class FeedUnavailable(RuntimeError):
    """Cassandra could not be reached, or did not answer in time; worth retrying."""


@dataclass(frozen=True)
class _Session:
    """A connected session and the statements prepared on it, replaced as one."""

    session: Any
    insert: Any
    select: Any


class ActivityFeed:
    def __init__(
        self,
        contact_points: Sequence[tuple[str, int]],
        keyspace: str,
        replication_factor: int,
        *,
        timeout: float = 5.0,
        retry_after: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not contact_points:
            raise ValueError("the activity feed needs at least one contact point")
        if not KEYSPACE_RE.match(keyspace):
            # It is written into the CQL statements.
            raise ValueError(f"{keyspace!r} is not a CQL keyspace name")
        self.contact_points = tuple(contact_points)
        self.keyspace = keyspace
        self.replication_factor = replication_factor
        self.timeout = timeout
        self.breaker = Breaker(retry_after, clock)
        self._lock = threading.Lock()
        self._cluster: Any = None
        self._session: _Session | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> ActivityFeed | None:
        """The feed the settings name (CASSANDRA_*), or None when there is none."""
        if not settings.cassandra_contact_points:
            return None
        return cls(
            settings.cassandra_contact_points,
            settings.cassandra_keyspace,
            settings.cassandra_replication_factor,
        )

    # -- the session ---------------------------------------------------------

    def _connected(self) -> _Session:
        session = self._session
        if session is not None:
            return session
        with self._lock:
            if self._session is not None:
                return self._session
            if not self.breaker.closed:
                raise FeedUnavailable("Cassandra was unreachable moments ago; retrying shortly")
            try:
                self._session = self._connect()
            except Exception as exc:
                # The driver raises NoHostAvailable (not a DriverException), its own
                # DriverException family, and OSError from name resolution; each means
                # no session this time.
                self.breaker.trip()
                self._shutdown()
                log.warning("Cassandra not reachable at %s: %s", self._points(), exc)
                raise FeedUnavailable(f"Cassandra is not reachable: {exc}") from exc
            log.info("activity feed connected to Cassandra at %s", self._points())
            return self._session

    def _points(self) -> str:
        return ",".join(f"{host}:{port}" for host, port in self.contact_points)

    def _connect(self) -> _Session:
        from cassandra import ConsistencyLevel
        from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile
        from cassandra.policies import (
            DCAwareRoundRobinPolicy,
            ExponentialReconnectionPolicy,
            TokenAwarePolicy,
        )

        profile = ExecutionProfile(
            # To a replica of the user's partition, in the data centre of the contact
            # points (the first one the driver reaches).
            load_balancing_policy=TokenAwarePolicy(DCAwareRoundRobinPolicy()),
            consistency_level=ConsistencyLevel.name_to_value[
                cql.consistency(self.replication_factor)
            ],
            request_timeout=self.timeout,
        )
        self._cluster = Cluster(
            contact_points=list(self.contact_points),
            protocol_version=PROTOCOL_VERSION,
            execution_profiles={EXEC_PROFILE_DEFAULT: profile},
            connect_timeout=self.timeout,
            control_connection_timeout=self.timeout,
            reconnection_policy=ExponentialReconnectionPolicy(
                RECONNECT_BASE_SECONDS, RECONNECT_MAX_SECONDS
            ),
        )
        session = self._cluster.connect()
        self._ensure_schema(session)
        return _Session(
            session,
            insert=self._prepare(session, cql.insert(self.keyspace)),
            select=self._prepare(session, cql.select(self.keyspace)),
        )

    def _prepare(self, session: Any, query: str) -> Any:
        from cassandra import InvalidRequest

        # When another client's CREATE TABLE is still being applied, ours returns at once
        # (IF NOT EXISTS) and the node may refuse to prepare against the table for a
        # moment; that settles well within a second.
        for attempt in range(PREPARE_ATTEMPTS):
            try:
                return session.prepare(query)
            except InvalidRequest:
                if attempt == PREPARE_ATTEMPTS - 1:
                    raise
                time.sleep(0.2)
        raise AssertionError("unreachable")

    def _ensure_schema(self, session: Any) -> None:
        """Creates the keyspace and table unless the driver's schema metadata shows them.

        Asking first keeps DDL to a cluster's first start: Cassandra 5.0 settles
        concurrent schema changes by gossip, so the fewer clients race on them the
        better. Each statement waits for the nodes to agree on the schema.
        """
        keyspace = self._cluster.metadata.keyspaces.get(self.keyspace)
        if keyspace is not None and cql.TABLE in keyspace.tables:
            return
        session.execute(cql.create_keyspace(self.keyspace, self.replication_factor))
        session.execute(cql.create_table(self.keyspace))

    def _shutdown(self) -> None:
        cluster, self._cluster, self._session = self._cluster, None, None
        if cluster is not None:
            try:
                cluster.shutdown()
            except Exception:
                log.debug("shutting the Cassandra cluster object down failed", exc_info=True)

    def _run(self, statement: Callable[[_Session], Any], values: tuple[Any, ...]) -> Any:
        connected = self._connected()
        try:
            return connected.session.execute(statement(connected), values)
        except Exception as exc:
            # NoHostAvailable, timeouts, Unavailable: the session stays, the driver
            # reconnects to the nodes as they come back.
            raise FeedUnavailable(f"Cassandra did not answer: {exc}") from exc

    # -- what callers use ----------------------------------------------------

    def write(self, row: ActivityRow) -> None:
        """Writes one row; FeedUnavailable when it may not have been written. Writing the
        same row again changes nothing, so a caller retries freely."""
        self._run(
            lambda s: s.insert,
            (row.user_id, row.at_ms, row.event_id, row.type, row.subject_id, row.detail),
        )

    def read(self, user_id: str, limit: int) -> list[FeedEntry]:
        """The user's newest `limit` entries, newest first (the table's clustering order)."""
        rows = self._run(lambda s: s.select, (user_id, limit))
        return [FeedEntry(millis(r.at), r.type, r.subject_id, r.detail or "") for r in rows]

    def available(self) -> bool:
        """Whether a session is made and reaches a node (connecting if it may): for
        readiness reports, never raises."""
        try:
            self._connected()
        except FeedUnavailable:
            return False
        cluster = self._cluster
        return cluster is not None and any(host.is_up for host in cluster.metadata.all_hosts())

    def close(self) -> None:
        with self._lock:
            self._shutdown()
