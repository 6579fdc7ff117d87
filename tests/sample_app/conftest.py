"""Real backing services for the sample app's tests, started from Debian packages.

Every server listens on 127.0.0.1 on a free port, keeps its data in its own temp
directory and is stopped by PID; system-wide instances are neither used nor touched.
Servers are started once per session; each test gets its own database, Redis
database flush or queue names cleaned, so tests stay independent.
"""

from __future__ import annotations

import contextlib
import functools
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest

from phaseshift.lab import binaries, ports
from phaseshift.lab.wait import wait_for

PG_BIN = binaries.postgres_bin_dir()

T = TypeVar("T")


# Redis Cluster listens on port + 10000 for its bus, RabbitMQ derives its distribution
# port the same way and Cassandra's storage port is placed there: every server's port
# here keeps that twin free.
free_port = functools.partial(ports.free_port, twin_offset=10000)


class ServerExited(RuntimeError):
    """A server ended while it was awaited: no point waiting on."""


def need(binary: str | Path) -> str:
    path = shutil.which(str(binary))
    if path is None:
        # .ci/run installs every server these tests use: a missing one is a setup defect.
        pytest.fail(f"{binary} is not installed on this machine (apt-get install it)")
    return path


def owned_tempdir(prefix: str, user: str) -> Path:
    path = Path(tempfile.mkdtemp(prefix=prefix))
    pw = pwd.getpwnam(user)
    os.chown(path, pw.pw_uid, pw.pw_gid)
    return path


def stop_process(
    proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM, grace: float = 30
) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


def launch(
    cmd: list[str],
    log_path: Path,
    what: str,
    ready: Callable[[], bool],
    timeout: float,
    **popen: Any,
) -> subprocess.Popen[bytes]:
    """Start a server with its output in `log_path`; return once `ready()` holds, failing
    at once (naming the log) if it exits first."""
    log = open(log_path, "ab")  # noqa: SIM115 (the child keeps writing to it)
    proc = subprocess.Popen(cmd, stdout=log, stderr=log, stdin=subprocess.DEVNULL, **popen)

    def up() -> bool:
        if proc.poll() is not None:
            raise ServerExited(f"{what} exited; see {log_path}")
        try:
            return ready()
        except Exception:
            return False  # not answering yet

    try:
        wait_for(up, timeout, what=what)
    except (AssertionError, ServerExited):
        stop_process(proc)
        raise
    return proc


# -- PostgreSQL -----------------------------------------------------------------------


@dataclass
class Postgres:
    data: Path
    port: int
    proc: subprocess.Popen[bytes] | None = None

    def url(self, db: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{db}"

    def start(self) -> None:
        import psycopg

        def up() -> bool:
            with psycopg.connect(self.url(), connect_timeout=2):
                return True

        # As the postgres user (PostgreSQL refuses root), directly: the PID is the
        # postmaster's, so stopping it never depends on a wrapper.
        self.proc = launch(
            [
                str(PG_BIN / "postgres"),
                "-D",
                str(self.data),
                "-p",
                str(self.port),
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                f"unix_socket_directories={self.data}",
            ],
            self.data.parent / f"postgres-{self.port}.log",
            f"postgres on {self.port}",
            up,
            60,
            user="postgres",
            group="postgres",
        )

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc, signal.SIGINT)  # fast shutdown
            self.proc = None


def _as_postgres(*cmd: str) -> None:
    subprocess.run(list(cmd), user="postgres", group="postgres", check=True, capture_output=True)


@dataclass
class PgCluster:
    primary: Postgres
    replica: Postgres
    root: Path
    databases: list[str] = field(default_factory=list)

    def create_database(self) -> str:
        import psycopg

        name = f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.primary.url(), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        self.databases.append(name)
        return name

    def wait_replicated(self, db: str) -> None:
        """Wait until the replica has replayed everything the primary has written."""
        import psycopg

        with psycopg.connect(self.primary.url(db), autocommit=True) as p:
            lsn = p.execute("SELECT pg_current_wal_lsn()").fetchone()[0]  # type: ignore[index]

        def caught_up() -> bool:
            with psycopg.connect(self.replica.url(db), autocommit=True) as r:
                row = r.execute("SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", [lsn]).fetchone()
                return bool(row and row[0])

        wait_for(caught_up, 30, what="replica catch-up", retry_on=(Exception,))


def start_pg_cluster() -> PgCluster:
    """A primary and a streaming replica in a new temp dir (also used by the bench)."""
    root = owned_tempdir("phaseshift-pg-", "postgres")
    os.chmod(root, 0o755)
    primary = Postgres(root / "primary", free_port())
    _as_postgres(
        str(PG_BIN / "initdb"),
        "-D",
        str(primary.data),
        "-U",
        "postgres",
        "-A",
        "trust",
        "--no-sync",
        "-E",
        "UTF8",
        "--locale=C.UTF-8",
    )
    with open(primary.data / "postgresql.conf", "a") as conf:
        # Test-only durability trade-offs: the data is thrown away afterwards.
        conf.write(
            "fsync = off\nfull_page_writes = off\nsynchronous_commit = off\n"
            "wal_level = replica\nmax_wal_senders = 5\nhot_standby = on\n"
            "max_connections = 200\nshared_buffers = 64MB\n"
        )
    primary.start()
    replica = Postgres(root / "replica", free_port())
    try:
        # -R writes standby.signal and primary_conninfo: a streaming replica.
        _as_postgres(
            str(PG_BIN / "pg_basebackup"),
            "-h",
            "127.0.0.1",
            "-p",
            str(primary.port),
            "-U",
            "postgres",
            "-D",
            str(replica.data),
            "-R",
            "-X",
            "stream",
            "--checkpoint=fast",
            "--no-sync",
        )
        replica.start()
    except BaseException:
        primary.stop()
        raise
    return PgCluster(primary, replica, root)


def stop_pg_cluster(cluster: PgCluster) -> None:
    cluster.replica.stop()
    cluster.primary.stop()
    shutil.rmtree(cluster.root, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PgCluster]:
    for tool in ("initdb", "postgres", "pg_basebackup"):
        if not (PG_BIN / tool).exists():
            pytest.fail(f"{PG_BIN / tool} missing: apt-get install postgresql")
    cluster = start_pg_cluster()
    yield cluster
    stop_pg_cluster(cluster)


@dataclass
class PgDb:
    name: str
    primary_url: str
    replica_url: str
    cluster: PgCluster

    def wait_replicated(self) -> None:
        self.cluster.wait_replicated(self.name)


@pytest.fixture
def pg_db(pg_cluster: PgCluster) -> PgDb:
    name = pg_cluster.create_database()
    pg_cluster.wait_replicated(name)
    return PgDb(name, pg_cluster.primary.url(name), pg_cluster.replica.url(name), pg_cluster)


# -- Redis -------------------------------------------------------------------------------


@dataclass
class RedisServer:
    port: int
    dir: Path
    extra: list[str] = field(default_factory=list)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        import redis

        self.proc = launch(
            [
                need("redis-server"),
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.dir),
                *self.extra,
            ],
            self.dir / f"redis-{self.port}.log",
            f"redis on {self.port}",
            lambda: bool(redis.Redis(port=self.port, socket_timeout=1).ping()),
            20,
        )

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)
            self.proc = None


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    need("redis-server")
    root = Path(tempfile.mkdtemp(prefix="phaseshift-redis-"))
    server = RedisServer(free_port(), root)
    server.start()
    yield server
    server.stop()
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    import redis

    redis.Redis(port=redis_server.port).flushall()
    return redis_server.url


@pytest.fixture
def redis_factory() -> Iterator[Callable[[], RedisServer]]:
    """Private Redis servers a test may stop and restart (outage tests)."""
    need("redis-server")
    servers: list[RedisServer] = []
    root = Path(tempfile.mkdtemp(prefix="phaseshift-redis-"))

    def make(*extra: str) -> RedisServer:
        server = RedisServer(free_port(), root, list(extra))
        server.start()
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[list[RedisServer]]:
    need("redis-server")
    cli = need("redis-cli")
    root = Path(tempfile.mkdtemp(prefix="phaseshift-rediscluster-"))
    nodes = []
    try:
        for _ in range(6):
            port = free_port()
            node_dir = root / str(port)
            node_dir.mkdir()
            node = RedisServer(
                port,
                node_dir,
                [
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-node-timeout",
                    "5000",
                ],
            )
            node.start()
            nodes.append(node)
        # Three primaries, each with one replica.
        subprocess.run(
            [
                cli,
                "--cluster",
                "create",
                *(f"127.0.0.1:{n.port}" for n in nodes),
                "--cluster-replicas",
                "1",
                "--cluster-yes",
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )
        import redis

        def ok() -> bool:
            return all(
                redis.Redis(port=n.port).cluster("info")["cluster_state"] == "ok" for n in nodes
            )

        wait_for(ok, 30, what="redis cluster", retry_on=(Exception,))
        yield nodes
    finally:
        for node in nodes:
            node.stop()
        shutil.rmtree(root, ignore_errors=True)


# -- RabbitMQ ----------------------------------------------------------------------------


@dataclass
class RabbitMQ:
    port: int
    root: Path
    env: dict[str, str]
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/%2F"

    def start(self) -> None:
        import pika

        def up() -> bool:
            pika.BlockingConnection(pika.URLParameters(self.url)).close()
            return True

        self.proc = launch(
            ["/usr/lib/rabbitmq/bin/rabbitmq-server"],
            self.root / "server.log",
            f"rabbitmq on {self.port}",
            up,
            120,
            env=self.env,
            cwd=self.root,
            user="rabbitmq",
            group="rabbitmq",
        )

    def stop(self) -> None:
        if self.proc is not None:
            # The start script turns SIGTERM into a clean `rabbitmqctl stop`.
            stop_process(self.proc, signal.SIGTERM, grace=60)
            self.proc = None

    def ctl(self, *args: str) -> str:
        """rabbitmqctl against this node (as the rabbitmq user, who owns its cookie)."""
        done = subprocess.run(
            ["/usr/lib/rabbitmq/bin/rabbitmqctl", "-n", self.env["RABBITMQ_NODENAME"], *args],
            env=self.env,
            cwd=self.root,
            user="rabbitmq",
            group="rabbitmq",
            capture_output=True,
            text=True,
            timeout=60,
        )
        if done.returncode != 0:
            raise RuntimeError(f"rabbitmqctl {' '.join(args)} failed: {done.stderr[-2000:]}")
        return done.stdout

    def purge(self) -> None:
        import pika

        from sample_app.queue import DLQ, JOBS, RETRY

        conn = pika.BlockingConnection(pika.URLParameters(self.url))
        try:
            channel = conn.channel()
            for q in (JOBS, RETRY, DLQ):
                channel.queue_delete(queue=q)
        finally:
            conn.close()


@pytest.fixture(scope="session")
def rabbitmq() -> Iterator[RabbitMQ]:
    if not Path("/usr/lib/rabbitmq/bin/rabbitmq-server").exists():
        pytest.fail("rabbitmq-server is not installed (apt-get install rabbitmq-server)")
    root = owned_tempdir("phaseshift-rabbit-", "rabbitmq")
    os.chmod(root, 0o755)
    port = free_port()
    epmd_port = free_port()
    (root / "enabled_plugins").write_text("[].\n")
    pw = pwd.getpwnam("rabbitmq")
    os.chown(root / "enabled_plugins", pw.pw_uid, pw.pw_gid)
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(root),
        "LANG": "C.UTF-8",
        "RABBITMQ_NODENAME": f"phaseshift-{port}@localhost",
        "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
        "RABBITMQ_NODE_PORT": str(port),
        "RABBITMQ_DIST_PORT": str(free_port()),
        "RABBITMQ_MNESIA_BASE": str(root / "mnesia"),
        "RABBITMQ_LOG_BASE": str(root / "log"),
        "RABBITMQ_PID_FILE": str(root / "rabbit.pid"),
        "RABBITMQ_ENABLED_PLUGINS_FILE": str(root / "enabled_plugins"),
        "RABBITMQ_CONFIG_FILE": str(root / "rabbitmq"),
        "RABBITMQ_ADVANCED_CONFIG_FILE": str(root / "advanced.config"),
        "RABBITMQ_CONF_ENV_FILE": str(root / "rabbitmq-env.conf"),
        "ERL_EPMD_ADDRESS": "127.0.0.1",
        "ERL_EPMD_PORT": str(epmd_port),
    }
    server = RabbitMQ(port, root, env)
    try:
        server.start()
        yield server
    finally:
        server.stop()
        # The broker started a private epmd on its own port (even when it then failed to
        # start); stop just that one.
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            subprocess.run(
                ["epmd", "-port", str(epmd_port), "-kill"], capture_output=True, timeout=10
            )
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def amqp_url(rabbitmq: RabbitMQ) -> Iterator[str]:
    rabbitmq.purge()
    yield rabbitmq.url


# -- Kafka --------------------------------------------------------------------------------


@dataclass
class KafkaBroker:
    """One KRaft node (broker and controller in one JVM) on loopback, from the jars
    tools/kafka.sh resolved. Its data survives stop()/start(), as a broker's does."""

    port: int
    root: Path
    home: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _java(self, main: str, *args: str) -> list[str]:
        # Small and quick to start: a test broker holds a few hundred events.
        flags = ["-Xms128m", "-Xmx384m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1"]
        return [need("java"), *flags, "-cp", str(self.home / "lib" / "*"), main, *args]

    def _configure(self) -> Path:
        controller = self.port + 10000
        config = self.root / "server.properties"
        config.write_text(
            "\n".join(
                [
                    "process.roles=broker,controller",
                    "node.id=1",
                    f"controller.quorum.voters=1@127.0.0.1:{controller}",
                    f"listeners=PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{controller}",
                    f"advertised.listeners=PLAINTEXT://127.0.0.1:{self.port}",
                    "controller.listener.names=CONTROLLER",
                    "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
                    f"log.dirs={self.root / 'data'}",
                    "num.partitions=3",  # as the operator's phase-4 topic has
                    "offsets.topic.replication.factor=1",
                    "offsets.topic.num.partitions=3",
                    "transaction.state.log.replication.factor=1",
                    "transaction.state.log.min.isr=1",
                    "share.coordinator.state.topic.replication.factor=1",
                    "share.coordinator.state.topic.min.isr=1",
                    "group.initial.rebalance.delay.ms=0",
                ]
            )
            + "\n"
        )
        if not (self.root / "data" / "meta.properties").exists():
            formatted = subprocess.run(
                self._java(
                    "kafka.tools.StorageTool", "format", "-t", uuid_for_kafka(), "-c", str(config)
                ),
                capture_output=True,
                text=True,
            )
            if formatted.returncode != 0:
                raise RuntimeError(f"formatting Kafka's storage failed: {formatted.stderr[-2000:]}")
        return config

    def start(self) -> None:
        from kafka import KafkaAdminClient

        def up() -> bool:
            admin = KafkaAdminClient(bootstrap_servers=self.bootstrap, request_timeout_ms=2000)
            try:
                admin.list_topics()
            finally:
                admin.close()
            return True

        config = self._configure()
        self.proc = launch(
            self._java("kafka.Kafka", str(config)),
            self.root / "broker.log",
            f"kafka on {self.port}",
            up,
            90,
        )

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc, signal.SIGTERM, grace=30)
            self.proc = None


def uuid_for_kafka() -> str:
    """A cluster id as Kafka wants it: 16 random bytes, URL-safe base64, no padding, and
    (as Kafka's own Uuid.randomUuid ensures) not starting with "-", which the format
    command would take for an option."""
    import base64

    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


@pytest.fixture
def kafka_broker() -> Iterator[KafkaBroker]:
    """A broker of this test's own: the app's topic and consumer group are fixed names."""
    from phaseshift.lab.binaries import BinariesMissing, ensure_kafka

    try:
        home = ensure_kafka()
    except BinariesMissing as e:
        pytest.fail(str(e))  # .ci/run provides a JRE and Maven: a missing one is a defect
    root = Path(tempfile.mkdtemp(prefix="phaseshift-kafka-"))
    broker = KafkaBroker(free_port(), root, home)
    try:
        broker.start()
        yield broker
    finally:
        broker.stop()
        shutil.rmtree(root, ignore_errors=True)


# -- Cassandra ------------------------------------------------------------------------


@dataclass
class CassandraNode:
    """One Cassandra node on loopback, run by the cassandra image's own bin/cassandra and
    conf/ (tools/images/cassandra) on the jars `phaseshift images` stages for it. Its
    data survives stop()/start(), as a node's does."""

    port: int  # CQL; the node's storage port is port + 10000 (free_port keeps it free)
    jmx_port: int
    root: Path
    lib: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def contact_points(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _layout(self) -> tuple[Path, Path]:
        """CASSANDRA_HOME (bin/ and lib/ linked in) and CASSANDRA_CONF of this node."""
        image = Path(__file__).resolve().parents[2] / "tools" / "images" / "cassandra"
        home, conf, data = self.root / "home", self.root / "conf", self.root / "data"
        for path in (home, conf, data):
            path.mkdir(exist_ok=True)
        for name, target in (("bin", image / "bin"), ("lib", self.lib)):
            if not (home / name).exists():
                (home / name).symlink_to(target)
        for name in ("logback.xml", "jvm-server.options"):
            shutil.copy(image / "conf" / name, conf / name)
        # One token and no vnode allocation, hints and triggers off: a test node holds a
        # few rows and should start quickly.
        (conf / "cassandra.yaml").write_text(
            f"""cluster_name: "phaseshift-test"
num_tokens: 1
initial_token: 0
partitioner: org.apache.cassandra.dht.Murmur3Partitioner
endpoint_snitch: SimpleSnitch
seed_provider:
  - class_name: org.apache.cassandra.locator.SimpleSeedProvider
    parameters:
      - seeds: "127.0.0.1:{self.port + 10000}"
listen_address: 127.0.0.1
rpc_address: 127.0.0.1
storage_port: {self.port + 10000}
native_transport_port: {self.port}
data_file_directories:
  - {data}/data
commitlog_directory: {data}/commitlog
saved_caches_directory: {data}/saved_caches
hints_directory: {data}/hints
cdc_raw_directory: {data}/cdc_raw
commitlog_sync: periodic
commitlog_sync_period: 10000ms
hinted_handoff_enabled: false
"""
        )
        return home, conf

    def start(self) -> None:
        from cassandra.cluster import Cluster

        def up() -> bool:
            # The CQL port opens last, once the node serves queries.
            with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                pass
            cluster = Cluster([("127.0.0.1", self.port)], protocol_version=5)
            try:
                cluster.connect().execute("SELECT release_version FROM system.local")
            finally:
                cluster.shutdown()
            return True

        home, conf = self._layout()
        env = {
            **os.environ,
            "CASSANDRA_CONF": str(conf),
            "CASSANDRA_LOG_DIR": str(self.root / "logs"),
            "MAX_HEAP_SIZE": "512M",
            # After bin/cassandra's own options, so these win: a smaller initial heap, JMX
            # on a port of this node's own (not 7199), no waits a single node never needs.
            "JVM_EXTRA_OPTS": " ".join(
                [
                    "-Xms256m",
                    f"-Dcassandra.jmx.local.port={self.jmx_port}",
                    "-Dcassandra.skip_wait_for_gossip_to_settle=0",
                    "-Dcassandra.ring_delay_ms=1000",
                    "-Dcassandra.superuser_setup_delay_ms=0",
                ]
            ),
        }
        self.proc = launch(
            [str(home / "bin" / "cassandra"), "-f"],
            self.root / "node.log",
            f"cassandra on {self.port}",
            up,
            180,
            env=env,
        )

    def stop(self) -> None:
        if self.proc is not None:
            # bin/cassandra execs java: this is the node's own PID.
            stop_process(self.proc, signal.SIGTERM, grace=60)
            self.proc = None


@pytest.fixture(scope="session")
def cassandra_node() -> Iterator[CassandraNode]:
    """One node for the session; tests keep apart by keyspace (cassandra_keyspace)."""
    from phaseshift.lab.images import CASSANDRA_VERSION, resolve_jars

    if shutil.which("java") is None:
        pytest.skip("no java on this machine: the Cassandra tests need a JRE >= 17")
    try:
        lib = resolve_jars("cassandra", CASSANDRA_VERSION, prepare=True)
    except Exception as e:  # no Maven, or Maven Central unreachable
        pytest.fail(f"resolving Cassandra {CASSANDRA_VERSION}'s jars failed: {e}")
    root = Path(tempfile.mkdtemp(prefix="phaseshift-cassandra-"))
    node = CassandraNode(free_port(), free_port(), root, lib)
    try:
        started = time.monotonic()
        node.start()
        print(f"cassandra {CASSANDRA_VERSION} ready in {time.monotonic() - started:.1f}s")
        yield node
    finally:
        node.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def cassandra(cassandra_node: CassandraNode) -> CassandraNode:
    """The session's node, running (a test that stopped it may have failed first)."""
    if cassandra_node.proc is None:
        cassandra_node.start()
    return cassandra_node


@pytest.fixture
def cassandra_keyspace() -> str:
    return f"feed_{uuid.uuid4().hex[:16]}"
