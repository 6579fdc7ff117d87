"""The rendered commands of the backing services, run on Debian's own binaries (the ones
the local images are built from): PostgreSQL's initdb step, server command and replica
clone, and Redis' command line. Every server listens on 127.0.0.1 only."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from phaseshift.api import parse_plan
from phaseshift.lab.prometheus import free_port
from phaseshift.lab.wait import wait_for
from phaseshift.render import RenderContext, postgres, render_phase

pytestmark = pytest.mark.integration

PG_BIN = Path("/usr/lib/postgresql/15/bin")
PASSWORD = "s3cret-pw"


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
    for tool in ("initdb", "postgres", "pg_ctl", "pg_basebackup", "psql"):
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
        for proc in self.procs:
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


def test_postgres_initializes_serves_and_clones_from_its_rendered_commands(
    pg_root: Path, servers: _Servers
) -> None:
    objects = _objects(2)
    primary = _find(objects, "StatefulSet", "shop-postgres")["spec"]["template"]["spec"]
    replica = _find(objects, "StatefulSet", "shop-postgres-replica")["spec"]["template"]["spec"]
    config = _find(objects, "ConfigMap", "shop-postgres-config")["data"]
    user = _as("postgres")
    for part in ("config", "primary", "replica", "run"):
        (pg_root / part).mkdir()
        if user:
            shutil.chown(pg_root / part, "postgres", "postgres")
    for name, text in config.items():
        (pg_root / "config" / name).write_text(text)

    # The primary's first start, then a restart on the same volume.
    port = free_port()
    pgdata = pg_root / "primary" / "pgdata"
    initdb = primary["initContainers"][0]
    env = _env(
        PGDATA=str(pgdata),
        PGPORT=str(port),
        SUPERUSER_PASSWORD=PASSWORD,
        REPLICATION_PASSWORD="replication-pw",
    )
    for _ in range(2):
        subprocess.run(["sh", "-c", _script(initdb)], env=env, check=True, **user)
    assert not (pg_root / "primary" / "pgdata.new").exists()

    server = _postgres_command(
        primary["containers"][0], pgdata, pg_root / "config", port, pg_root / "run"
    )
    servers.start(server, pg_root / "primary.log", env=_env(), **user)
    wait_for(lambda: _ready(port), 30, "the primary")
    assert _sql(port, "select current_database(), current_user") == "app|app"
    with pytest.raises(AssertionError, match="password authentication failed"):
        _sql(port, "select 1", password="wrong")

    # A replica clones the primary and streams from it.
    replica_port = free_port()
    replica_data = pg_root / "replica" / "pgdata"
    clone = replica["initContainers"][0]
    clone_env = _env(
        PGDATA=str(replica_data),
        PRIMARY_HOST="127.0.0.1",
        PGPORT=str(port),
        PGPASSWORD="replication-pw",
    )
    subprocess.run(["sh", "-c", _script(clone)], env=clone_env, check=True, **user)
    assert (replica_data / "standby.signal").exists()
    replica_server = _postgres_command(
        replica["containers"][0], replica_data, pg_root / "config", replica_port, pg_root / "run"
    )
    servers.start(replica_server, pg_root / "replica.log", env=_env(), **user)
    wait_for(lambda: _ready(replica_port), 30, "the replica")
    _sql(port, "create table t (x int); insert into t values (42)")
    wait_for(
        lambda: _sql(replica_port, "select count(*) from pg_tables where tablename = 't'") == "1",
        30,
        "replication",
    )
    assert _sql(replica_port, "select pg_is_in_recovery(), (select x from t)") == "t|42"

    # The preStop hook: a fast shutdown.
    stop = primary["containers"][0]["lifecycle"]["preStop"]["exec"]["command"]
    stop = [str(PG_BIN / "pg_ctl")] + [
        part.replace(postgres.PGDATA, str(pgdata)) for part in stop[1:]
    ]
    subprocess.run(stop, env=_env(), check=True, capture_output=True, **user)
    assert not _ready(port)


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
