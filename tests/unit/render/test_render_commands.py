"""Pods use an image only for its binaries: every container has its own command, and no
backing service relies on an image's entrypoint conventions."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from render_helpers import find, pod_templates

from phaseshift.render import kafka, rabbitmq

PHASES = (1, 2, 3, 4)
# Environment an official image's entrypoint translates into configuration; a pod that
# sets it depends on that image.
ENTRYPOINT_CONVENTIONS = (
    "POSTGRES_",
    "RABBITMQ_DEFAULT_",
    "RABBITMQ_ERLANG_COOKIE",
    "CASSANDRA_SEEDS",
    "CASSANDRA_CLUSTER_NAME",
    "CASSANDRA_DC",
    "CASSANDRA_ENDPOINT_SNITCH",
    "KAFKA_PROCESS_ROLES",
    "KAFKA_NODE_ID",
    "KAFKA_LISTENERS",
    "KAFKA_LOG_DIRS",
    "REDIS_PASSWORD",
)


def _containers(render, phase: int) -> list[tuple[str, dict]]:
    result = []
    for name, template in pod_templates(render(phase)):
        spec = template["spec"]
        for container in [*spec.get("initContainers", []), *spec["containers"]]:
            result.append((f"{name}/{container['name']}", container))
    return result


@pytest.mark.parametrize("phase", PHASES)
def test_every_container_runs_its_own_command(render, phase: int) -> None:
    for where, container in _containers(render, phase):
        assert container.get("command"), f"{where} relies on its image's entrypoint"
        names = [e["name"] for e in container.get("env", [])]
        assert not [n for n in names if n.startswith(ENTRYPOINT_CONVENTIONS)], where


@pytest.mark.parametrize("phase", PHASES)
def test_every_script_is_posix_sh(render, phase: int) -> None:
    for where, container in _containers(render, phase):
        command = container["command"]
        if command[:2] == ["sh", "-c"]:
            checked = subprocess.run(["sh", "-n", "-c", command[2]], capture_output=True)
            assert checked.returncode == 0, f"{where}: {checked.stderr.decode()}"


def test_the_app_runs_the_sample_app(render) -> None:
    for where, container in _containers(render, 4):
        if container["name"] == "app":
            assert container["command"][:3] == ["python", "-m", "sample_app"], where


def test_redis_runs_with_every_setting_on_its_command_line(render) -> None:
    redis = dict(_containers(render, 2))["shop-redis/redis"]
    assert redis["command"] == ["redis-server"]
    args = redis["args"]
    # Debian's redis-server keeps protected mode on, which refuses every remote client.
    assert args[args.index("--protected-mode") + 1] == "no"
    conf = find(render(3), "ConfigMap", "shop-redis-cluster-config")["data"]["redis.conf"]
    assert "protected-mode no" in conf.splitlines()
    cluster = dict(_containers(render, 3))["shop-redis-cluster/redis"]
    assert cluster["command"][:2] == ["sh", "-c"]
    assert "exec redis-server /etc/redis/redis.conf" in cluster["command"][2]
    assert dict(_containers(render, 3))["shop-redis-cluster/exporter"]["command"] == [
        "/redis_exporter"
    ]


def test_kafka_keeps_its_logs_below_the_mount_point(render) -> None:
    # A fresh volume's lost+found at the mount point is no partition directory.
    objects = render(4)
    text = find(objects, "ConfigMap", "shop-kafka-config")["data"]["server.properties"]
    props = dict(line.split("=", 1) for line in text.splitlines())
    [container] = find(objects, "StatefulSet", "shop-kafka")["spec"]["template"]["spec"][
        "containers"
    ]
    mount = next(m["mountPath"] for m in container["volumeMounts"] if m["name"] == "data")
    assert props["log.dirs"] == kafka.LOG_DIRS
    assert props["log.dirs"].startswith(mount + "/")


def test_rabbitmq_starts_from_files_its_setup_wrote(render) -> None:
    containers = dict(_containers(render, 3))
    server, setup = containers["shop-rabbitmq/rabbitmq"], containers["shop-rabbitmq/setup"]
    assert server["command"] == ["sh", "-c", rabbitmq.start_script()]
    # The server is the container's process; the quorum-queue membership step runs beside it.
    assert rabbitmq.start_script().rstrip().endswith("exec rabbitmq-server")
    assert 'rabbitmq-queues grow "$RABBITMQ_NODENAME" all' in rabbitmq.start_script()
    env = {e["name"]: e.get("value") for e in server["env"]}
    assert env["RABBITMQ_CONFIG_FILE"] == "/etc/rabbitmq/rabbitmq.conf"
    assert env["HOME"] == "/var/lib/rabbitmq"
    assert setup["command"] == ["sh", "-c", rabbitmq.setup_script()]


# Root may write over a read-only file, so the pod's unprivileged user is stood in for.
NOBODY = 65534


@pytest.fixture
def volume_root() -> Iterator[Path]:
    """A directory the setup script's user may use (pytest's tmp_path is private to
    root when the tests run as root)."""
    root = Path(tempfile.mkdtemp(prefix="phaseshift-rabbitmq-"))
    root.chmod(0o755)
    try:
        yield root
    finally:
        shutil.rmtree(root)


def _run_setup(root: Path, password: str) -> None:
    script = (
        rabbitmq.setup_script()
        .replace(rabbitmq.HOME, str(root / "data"))
        .replace(rabbitmq.CONF_DIR, str(root / "etc"))
        .replace("/secret/", f"{root}/secret/")
        .replace("/config/", f"{root}/config/")
    )
    as_user = {"user": NOBODY, "group": NOBODY} if os.geteuid() == 0 else {}
    if as_user:
        for path in [root, *root.rglob("*")]:
            os.chown(path, NOBODY, NOBODY)
    subprocess.run(
        ["sh", "-c", script],
        env={**os.environ, "RABBITMQ_PASSWORD": password},
        check=True,
        **as_user,  # type: ignore[call-overload]
    )


def test_rabbitmq_setup_runs_again_on_a_volume_that_has_its_cookie(render, volume_root) -> None:
    """The cookie is read-only (0400) on a volume that outlives the pod: a second start
    must replace it, not fail to write over it."""
    tmp_path = volume_root
    config = find(render(3), "ConfigMap", "shop-rabbitmq-config")["data"]
    for part in ("data", "etc", "secret", "config"):
        (tmp_path / part).mkdir()
    (tmp_path / "secret" / "erlang-cookie").write_text("cookie-1")
    for name, text in config.items():
        (tmp_path / "config" / name).write_text(text)
    _run_setup(tmp_path, "pw-1")
    (tmp_path / "secret" / "erlang-cookie").write_text("cookie-2")
    _run_setup(tmp_path, "pw-2")  # the pod's next start, on the same volume
    cookie = tmp_path / "data" / ".erlang.cookie"
    assert cookie.read_text() == "cookie-2"
    assert stat.S_IMODE(cookie.stat().st_mode) == 0o400
    conf = (tmp_path / "etc" / "rabbitmq.conf").read_text()
    assert conf.startswith(config["rabbitmq.conf"]) and conf.endswith("default_pass = pw-2\n")
    assert (tmp_path / "etc" / "enabled_plugins").read_text() == config["enabled_plugins"]
