"""The rendered commands of the backing services, run on Debian's own binaries (the ones
the local images are built from): PostgreSQL's initdb step, server command, replica clone
(its slot, resuming and cloning again) and exporter, and Redis' command line. Every server
listens on 127.0.0.1 only."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from phaseshift.api import parse_plan
from phaseshift.lab import binaries
from phaseshift.lab.ports import free_port
from phaseshift.lab.wait import wait_for
from phaseshift.render import RenderContext, postgres, render_phase

pytestmark = pytest.mark.integration

PG_BIN = binaries.postgres_bin_dir()
PASSWORD = "s3cret-pw"
REPLICATION_PASSWORD = "replication-pw"
REPLICA_POD = "shop-postgres-replica-0"
EXPORTER = Path("/usr/bin/prometheus-postgres-exporter")


def _objects(phase: int) -> list[dict[str, Any]]:
    plan = parse_plan({"metadata": {"name": "shop", "namespace": "a", "uid": "u"}})
    return render_phase(plan, phase, RenderContext(db_password=PASSWORD))


def _find(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    return next(o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name)


def _as(user: str) -> dict[str, Any]:
    """Run as `user` when the tests run as root (initdb refuses root)."""
    if os.geteuid() != 0:
        return {}
    return {"user": user, "group": pwd.getpwnam(user).pw_gid}


@pytest.fixture
def pg_root() -> Iterator[Path]:
    for tool in ("initdb", "postgres", "pg_ctl", "pg_basebackup", "psql", "pg_controldata"):
        if not (PG_BIN / tool).exists():
            pytest.fail(f"{PG_BIN / tool} missing: apt-get install postgresql")
    root = Path(tempfile.mkdtemp(prefix="phaseshift-pgcmd-"))
    root.chmod(0o755)
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


class _Servers:
    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, cmd: list[str], log: Path, **popen: Any) -> subprocess.Popen[bytes]:
        with open(log, "ab") as out:
            proc = subprocess.Popen(cmd, stdout=out, stderr=out, stdin=subprocess.DEVNULL, **popen)
        self.procs.append(proc)
        return proc

    def stop(self) -> None:
        # The last started first: an exporter's connection would hold up a smart shutdown.
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


@pytest.fixture
def servers() -> Iterator[_Servers]:
    started = _Servers()
    yield started
    started.stop()


def _env(**extra: str) -> dict[str, str]:
    return {"PATH": f"{PG_BIN}:{os.environ['PATH']}", "LC_ALL": "C", **extra}


def _script(container: dict[str, Any]) -> str:
    assert container["command"][:2] == ["sh", "-c"]
    script: str = container["command"][2]
    return script


def _sql(port: int, query: str, password: str = PASSWORD) -> str:
    result = subprocess.run(
        [str(PG_BIN / "psql"), *f"-h 127.0.0.1 -p {port} -U app -d app -Atc".split(), query],
        env=_env(PGPASSWORD=password),
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def _ready(port: int) -> bool:
    return (
        subprocess.run(
            [str(PG_BIN / "pg_isready"), "-h", "127.0.0.1", "-p", str(port)],
            capture_output=True,
        ).returncode
        == 0
    )


def _postgres_command(
    container: dict[str, Any], pgdata: Path, config: Path, port: int, sockets: Path
) -> list[str]:
    """The rendered server command, with this test's paths, address, port and sockets."""
    command = [str(PG_BIN / "postgres")] + [
        part.replace(postgres.PGDATA, str(pgdata)).replace(postgres.CONFIG_DIR, str(config))
        for part in container["command"][1:]
    ]
    overrides = ["listen_addresses=127.0.0.1", f"port={port}", f"unix_socket_directories={sockets}"]
    return command + [arg for setting in overrides for arg in ("-c", setting)]


class _Replication:
    """A primary and one replica from the rendered phase-2 objects, on loopback ports:
    the primary's initdb step and server, the replica's clone script and server."""

    def __init__(self, root: Path, servers: _Servers, **primary_settings: str) -> None:
        objects = _objects(2)
        self.primary = _find(objects, "StatefulSet", "shop-postgres")["spec"]["template"]["spec"]
        self.replica = _find(objects, "StatefulSet", "shop-postgres-replica")["spec"]["template"][
            "spec"
        ]
        self.config = _find(objects, "ConfigMap", "shop-postgres-config")["data"]
        self.root = root
        self.servers = servers
        self.user = _as("postgres")
        for part in ("config", "primary", "replica", "run"):
            (root / part).mkdir()
            if self.user:
                shutil.chown(root / part, "postgres", "postgres")
        for name, text in self.config.items():
            (root / "config" / name).write_text(text)
        self.port = free_port()
        self.replica_port = free_port()
        self.pgdata = root / "primary" / "pgdata"
        self.replica_data = root / "replica" / "pgdata"
        self.primary_settings = primary_settings
        self.replica_server: subprocess.Popen[bytes] | None = None

    def start_primary(self) -> None:
        env = _env(
            PGDATA=str(self.pgdata),
            PGPORT=str(self.port),
            SUPERUSER_PASSWORD=PASSWORD,
            REPLICATION_PASSWORD=REPLICATION_PASSWORD,
        )
        initdb = self.primary["initContainers"][0]
        subprocess.run(["sh", "-c", _script(initdb)], env=env, check=True, **self.user)
        command = _postgres_command(
            self.primary["containers"][0],
            self.pgdata,
            self.root / "config",
            self.port,
            self.root / "run",
        )
        for setting in self.primary_settings.items():
            command += ["-c", "=".join(setting)]
        self.servers.start(command, self.root / "primary.log", env=_env(), **self.user)
        wait_for(lambda: _ready(self.port), 30, "the primary")

    def clone(self) -> str:
        """The replica's init container: its output."""
        env = _env(
            PGDATA=str(self.replica_data),
            PRIMARY_HOST="127.0.0.1",
            PGPORT=str(self.port),
            PGPASSWORD=REPLICATION_PASSWORD,
            POD_NAME=REPLICA_POD,
        )
        result = subprocess.run(
            ["sh", "-c", _script(self.replica["initContainers"][0])],
            env=env,
            capture_output=True,
            text=True,
            **self.user,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        return result.stdout

    def start_replica(self) -> None:
        command = _postgres_command(
            self.replica["containers"][0],
            self.replica_data,
            self.root / "config",
            self.replica_port,
            self.root / "run",
        )
        self.replica_server = self.servers.start(
            command, self.root / "replica.log", env=_env(), **self.user
        )
        wait_for(lambda: _ready(self.replica_port), 30, "the replica")

    def stop_replica(self) -> None:
        assert self.replica_server is not None
        stop = [str(PG_BIN / "pg_ctl"), "stop", "-D", str(self.replica_data), "-m", "fast", "-w"]
        subprocess.run(stop, env=_env(), check=True, capture_output=True, **self.user)
        self.replica_server.wait(30)

    def slot(self) -> str:
        """The replica's slot on the primary: active|wal_status, or empty."""
        name = postgres.slot_name(REPLICA_POD)
        return _sql(
            self.port,
            f"select active, wal_status from pg_replication_slots where slot_name = '{name}'",
        )

    def replicated(self, row: int) -> bool:
        query = f"select count(*) from t where x = {row}"
        return _sql(self.replica_port, query) == "1"


def test_postgres_initializes_serves_and_clones_from_its_rendered_commands(
    pg_root: Path, servers: _Servers
) -> None:
    pg = _Replication(pg_root, servers)
    # The primary's first start, then a restart on the same volume.
    pg.start_primary()
    env = _env(PGDATA=str(pg.pgdata), SUPERUSER_PASSWORD=PASSWORD, REPLICATION_PASSWORD="x")
    initdb = pg.primary["initContainers"][0]
    subprocess.run(["sh", "-c", _script(initdb)], env=env, check=True, **pg.user)
    assert not (pg_root / "primary" / "pgdata.new").exists()
    assert _sql(pg.port, "select current_database(), current_user") == "app|app"
    with pytest.raises(AssertionError, match="password authentication failed"):
        _sql(pg.port, "select 1", password="wrong")

    # A replica clones the primary and streams from it.
    pg.clone()
    assert (pg.replica_data / "standby.signal").exists()
    pg.start_replica()
    _sql(pg.port, "create table t (x int); insert into t values (42)")
    wait_for(
        lambda: (
            _sql(pg.replica_port, "select count(*) from pg_tables where tablename = 't'") == "1"
        ),
        30,
        "replication",
    )
    assert _sql(pg.replica_port, "select pg_is_in_recovery(), (select x from t)") == "t|42"

    # The preStop hook: a fast shutdown.
    stop = pg.primary["containers"][0]["lifecycle"]["preStop"]["exec"]["command"]
    stop = [str(PG_BIN / "pg_ctl")] + [
        part.replace(postgres.PGDATA, str(pg.pgdata)) for part in stop[1:]
    ]
    subprocess.run(stop, env=_env(), check=True, capture_output=True, **pg.user)
    assert not _ready(pg.port)


def test_a_replica_streams_through_its_slot_and_clones_again_when_it_cannot_resume(
    pg_root: Path, servers: _Servers
) -> None:
    # A small cap, so a stopped replica's slot is lost after a little WAL.
    pg = _Replication(pg_root, servers, max_slot_wal_keep_size="32MB")
    pg.start_primary()
    _sql(pg.port, "create table t (x int); insert into t values (1)")

    # The first start clones through a new slot named after the pod, and streams through it.
    assert "cloning again" not in pg.clone()
    assert "primary_slot_name = 'shop_postgres_replica_0'" in (
        (pg.replica_data / "postgresql.auto.conf").read_text()
    )
    pg.start_replica()
    wait_for(lambda: pg.slot() == "t|reserved", 30, "the replica on its slot")
    _sql(pg.port, "insert into t values (2)")
    wait_for(lambda: pg.replicated(2), 30, "replication")

    # Stopped, then started on its data: it resumes from its slot and catches up.
    pg.stop_replica()
    _sql(pg.port, "insert into t values (3)")
    marker = pg.replica_data / "kept"
    marker.touch()
    assert "resuming as a standby on slot shop_postgres_replica_0 (reserved)" in pg.clone()
    assert marker.exists()
    pg.start_replica()
    wait_for(lambda: pg.replicated(3), 30, "the replica to catch up")

    # Stopped while the primary writes past the cap: its slot is lost, and so is the WAL
    # it needed. The next start clones again, and has what was written meanwhile.
    pg.stop_replica()
    for row in range(4, 8):
        _sql(
            pg.port,
            f"insert into t select {row} from generate_series(1, 1); select pg_switch_wal()",
        )
    _sql(pg.port, "insert into t values (8); checkpoint")
    assert pg.slot() == "f|lost"
    output = pg.clone()
    assert "slot shop_postgres_replica_0 lost); cloning again" in output
    assert not marker.exists()
    pg.start_replica()
    wait_for(lambda: pg.replicated(8), 30, "the new clone")
    wait_for(lambda: pg.slot() == "t|reserved", 30, "the new slot")
    assert _sql(pg.replica_port, "select pg_is_in_recovery(), count(*) from t") == "t|8"

    # A slot dropped on the primary: the same.
    pg.stop_replica()
    _sql(pg.port, f"select pg_drop_replication_slot('{postgres.slot_name(REPLICA_POD)}')")
    _sql(pg.port, "insert into t values (9)")
    marker.touch()
    assert "slot shop_postgres_replica_0 missing); cloning again" in pg.clone()
    assert not marker.exists()
    pg.start_replica()
    wait_for(lambda: pg.replicated(9), 30, "the clone after a dropped slot")
    assert pg.slot() == "t|reserved"

    # A primary that cannot be reached decides nothing: the standby starts on its data.
    pg.stop_replica()
    stop = [str(PG_BIN / "pg_ctl"), "stop", "-D", str(pg.pgdata), "-m", "fast", "-w"]
    subprocess.run(stop, env=_env(), check=True, capture_output=True, **pg.user)
    marker.touch()
    assert "primary unreachable; starting as a standby" in pg.clone()
    assert marker.exists()


def _metrics(port: int) -> dict[str, float]:
    """The unlabelled samples (and those of pg_stat_replication, by slot) of an exporter."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    samples: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            samples[name] = float(value)
    return samples


def _sample(samples: dict[str, float], name: str, *labels: str) -> float | None:
    """The value of the first sample named `name` with every one of `labels` (k="v")."""
    for key, value in samples.items():
        if key.split("{")[0] == name and all(label in key for label in labels):
            return value
    return None


def test_the_rendered_exporter_reports_a_standbys_lag(pg_root: Path, servers: _Servers) -> None:
    if not EXPORTER.exists():
        pytest.skip(f"{EXPORTER} missing: apt-get install prometheus-postgres-exporter")
    pg = _Replication(pg_root, servers)
    pg.start_primary()
    pg.clone()
    pg.start_replica()
    # A transaction replayed since the standby started dates its lag.
    _sql(pg.port, "create table t (x int); insert into t values (1)")
    wait_for(lambda: _sql(pg.replica_port, "select to_regclass('t') is not null") == "t", 30, "t")
    wait_for(lambda: pg.replicated(1), 30, "replication")

    def exporter(spec: dict[str, Any], db_port: int) -> int:
        container = spec["containers"][1]
        assert container["command"] == ["/bin/postgres_exporter"]
        port = free_port()
        args = [
            arg.replace(f":{postgres.EXPORTER_PORT}", f"127.0.0.1:{port}").replace(
                postgres.CONFIG_DIR, str(pg.root / "config")
            )
            for arg in container["args"]
        ]
        env = {e["name"]: e.get("value", PASSWORD) for e in container["env"]}
        env["DATA_SOURCE_URI"] = env["DATA_SOURCE_URI"].replace(":5432/", f":{db_port}/")
        servers.start([str(EXPORTER), *args], pg.root / f"exporter-{port}.log", env=env)
        wait_for(lambda: _metrics(port), 30, "the exporter", retry_on=(OSError,))
        return port

    replica = exporter(pg.replica, pg.replica_port)
    primary = exporter(pg.primary, pg.port)
    samples = _metrics(replica)
    assert _sample(samples, "pg_standby_is_replica") == 1
    assert _sample(samples, "pg_standby_streaming") == 1
    assert _sample(samples, "pg_standby_lag_seconds") == 0  # caught up
    assert _sample(_metrics(primary), "pg_standby_is_replica") == 0

    # Replay paused on the standby while the primary writes: the standby lags.
    _sql(pg.replica_port, "select pg_wal_replay_pause()")
    _sql(pg.port, "insert into t values (2)")

    def lagging() -> dict[str, float] | None:
        samples = _metrics(replica)
        ahead = _sample(samples, "pg_standby_replay_lag_bytes") or 0
        return samples if ahead > 0 else None

    samples = wait_for(lagging, 30, "the lag to show")
    assert (_sample(samples, "pg_standby_lag_seconds") or 0) > 0
    # The primary's view: the standby's slot, and the bytes it has not replayed.
    slot = f'slot_name="{postgres.slot_name(REPLICA_POD)}"'
    samples = _metrics(primary)
    assert _sample(samples, "pg_replication_slots_active", slot) == 1
    # The standby's byte lag as the primary sees it, by its slot's name (v0.11's slot_name
    # label of pg_stat_replication holds a process id).
    application = f'application_name="{postgres.slot_name(REPLICA_POD)}"'
    assert (_sample(samples, "pg_stat_replication_pg_wal_lsn_diff", application) or 0) > 0

    _sql(pg.replica_port, "select pg_wal_replay_resume()")
    wait_for(lambda: pg.replicated(2), 30, "replay to resume")
    wait_for(lambda: _sample(_metrics(replica), "pg_standby_replay_lag_bytes") == 0, 30, "no lag")


def test_redis_serves_from_its_rendered_command_line(servers: _Servers, tmp_path: Path) -> None:
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail("redis-server missing: apt-get install redis-server")
    deployment = _find(_objects(2), "Deployment", "shop-redis")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] == ["redis-server"]
    args = list(container["args"])
    port = free_port()
    args[args.index("--port") + 1] = str(port)
    args[args.index("--dir") + 1] = str(tmp_path)
    servers.start([binary, *args, "--bind", "127.0.0.1"], tmp_path / "redis.log")

    def cli(*command: str) -> str:
        result = subprocess.run(
            ["redis-cli", "-p", str(port), *command], capture_output=True, text=True
        )
        return result.stdout.strip()

    wait_for(lambda: cli("ping") == "PONG", 30, "redis")
    # Debian's build keeps protected mode on by default, which refuses remote clients.
    assert cli("config", "get", "protected-mode").split() == ["protected-mode", "no"]
    assert cli("config", "get", "maxmemory-policy").split()[1] == "allkeys-lru"
