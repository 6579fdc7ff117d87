"""PostgreSQL: SQLite in phase 1, a primary with streaming replicas from phase 2, shards."""

from __future__ import annotations

import base64
import inspect
import os
import re
import subprocess

import yaml
from render_helpers import containers, env_of, find, names

from phaseshift.render import postgres


def test_phase1_keeps_sqlite_on_a_claim_nobody_owns(render) -> None:
    objects = render(1)
    claim = find(objects, "PersistentVolumeClaim", "shop-sqlite")
    assert "ownerReferences" not in claim["metadata"]
    assert claim["metadata"]["annotations"]["phaseshift.dev/stateful"] == "true"
    assert names(objects, "StatefulSet") == []


def test_phase2_primary_and_replicas_stream_from_it(render) -> None:
    objects = render(2)
    primary = find(objects, "StatefulSet", "shop-postgres")
    replica = find(objects, "StatefulSet", "shop-postgres-replica")
    assert primary["spec"]["replicas"] == 1
    assert replica["spec"]["replicas"] == 2
    [clone] = replica["spec"]["template"]["spec"]["initContainers"]
    script = clone["command"][-1]
    assert "pg_basebackup" in script and "--write-recovery-conf" in script
    assert env_of(clone)["PRIMARY_HOST"] == "shop-postgres-rw"
    # The primary builds its own database: initdb, the app's database, the replication role.
    [initdb] = primary["spec"]["template"]["spec"]["initContainers"]
    script = initdb["command"][-1]
    assert "initdb " in script and "CREATE DATABASE app" in script
    assert "CREATE ROLE replicator WITH REPLICATION" in script
    hba = find(objects, "ConfigMap", "shop-postgres-config")["data"]["pg_hba.conf"]
    assert re.search(r"^host +replication +replicator +all +scram-sha-256$", hba, re.M)


def test_postgres_runs_its_own_command_on_its_own_config(render) -> None:
    objects = render(2)
    config = find(objects, "ConfigMap", "shop-postgres-config")["data"]
    for name in ("shop-postgres", "shop-postgres-replica"):
        sts = find(objects, "StatefulSet", name)
        postgres, exporter = sts["spec"]["template"]["spec"]["containers"]
        command = postgres["command"]
        assert command[:3] == ["postgres", "-D", "/var/lib/postgresql/data/pgdata"]
        assert "config_file=/etc/phaseshift/postgres/postgresql.conf" in command
        assert "hba_file=/etc/phaseshift/postgres/pg_hba.conf" in command
        # Below the mount point, where a fresh volume's lost+found is not.
        mounts = {m["name"]: m["mountPath"] for m in postgres["volumeMounts"]}
        assert command[2].startswith(mounts["data"] + "/")
        assert mounts["config"] == "/etc/phaseshift/postgres"
        assert "env" not in postgres  # nothing for an image's entrypoint to read
        assert exporter["command"] == ["/bin/postgres_exporter"]
        annotations = sts["spec"]["template"]["metadata"]["annotations"]
        assert annotations["phaseshift.dev/config-hash"]
    assert "listen_addresses = '*'" in config["postgresql.conf"]
    assert "wal_level = replica" in config["postgresql.conf"]


def test_rw_and_ro_services_select_primary_and_replicas(render) -> None:
    objects = render(2)
    for service, statefulset in (
        ("shop-postgres-rw", "shop-postgres"),
        ("shop-postgres-ro", "shop-postgres-replica"),
    ):
        selector = find(objects, "Service", service)["spec"]["selector"]
        pods = find(objects, "StatefulSet", statefulset)["spec"]["template"]["metadata"]["labels"]
        assert selector.items() <= pods.items()
        other = "shop-postgres-replica" if statefulset == "shop-postgres" else "shop-postgres"
        other_pods = find(objects, "StatefulSet", other)["spec"]["template"]["metadata"]["labels"]
        assert not selector.items() <= other_pods.items()


def test_stateful_sets_keep_their_volumes_and_are_marked_stateful(render) -> None:
    for name in ("shop-postgres", "shop-postgres-replica"):
        sts = find(render(2), "StatefulSet", name)
        assert sts["spec"]["persistentVolumeClaimRetentionPolicy"] == {
            "whenDeleted": "Retain",
            "whenScaled": "Retain",
        }
        assert sts["metadata"]["annotations"]["phaseshift.dev/stateful"] == "true"


def test_password_comes_from_the_context_via_the_credentials_secret(render) -> None:
    objects = render(2, db_password="hunter2")
    secret = find(objects, "Secret", "shop-credentials")
    assert base64.b64decode(secret["data"]["postgres-password"]).decode() == "hunter2"
    assert "ownerReferences" not in secret["metadata"]
    initdb, _, exporter = containers(find(objects, "StatefulSet", "shop-postgres"))
    for container, variable in ((initdb, "SUPERUSER_PASSWORD"), (exporter, "DATA_SOURCE_PASS")):
        ref = env_of(container)[variable]["secretKeyRef"]
        assert ref == {"name": "shop-credentials", "key": "postgres-password"}
    decoded = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
    # Each service has its own password, none equal to the database's.
    others = [
        decoded["replication-password"],
        decoded["rabbitmq-password"],
        decoded["erlang-cookie"],
    ]
    assert len(set(others)) == 3 and "hunter2" not in others


def test_phase3_adds_replicas_and_shards_on_request(render, make_plan) -> None:
    assert find(render(3), "StatefulSet", "shop-postgres-replica")["spec"]["replicas"] == 3
    assert "shop-postgres-shard" not in names(render(3), "StatefulSet")
    plan = make_plan(overrides=[{"phase": 3, "shards": 4, "readReplicas": 1}])
    objects = render(3, plan)
    shards = find(objects, "StatefulSet", "shop-postgres-shard")
    assert shards["spec"]["replicas"] == 4
    assert shards["spec"]["serviceName"] == "shop-postgres-shard"
    assert find(objects, "Service", "shop-postgres-shard")["spec"]["clusterIP"] == "None"
    assert find(objects, "StatefulSet", "shop-postgres-replica")["spec"]["replicas"] == 1


def test_shards_are_a_horizontal_choice(render, make_plan) -> None:
    plan = make_plan(overrides=[{"phase": 2, "shards": 4}])
    assert "shop-postgres-shard" not in names(render(2, plan), "StatefulSet")


def test_phase4_adds_cassandra_beside_postgres(render) -> None:
    objects = render(4)
    cassandra = find(objects, "StatefulSet", "shop-cassandra")
    assert cassandra["spec"]["replicas"] == 3
    assert cassandra["metadata"]["annotations"]["phaseshift.dev/stateful"] == "true"
    conf = yaml.safe_load(
        find(objects, "ConfigMap", "shop-cassandra-config")["data"]["cassandra.yaml"]
    )
    seeds = conf["seed_provider"][0]["parameters"][0]["seeds"]
    assert seeds.startswith("shop-cassandra-0.shop-cassandra-hl")
    assert conf["cluster_name"] == "shop"
    assert conf["data_file_directories"] == ["/var/lib/cassandra/data"]
    [container] = containers(cassandra)
    assert container["command"][:2] == ["sh", "-c"]
    assert "exec /opt/cassandra/bin/cassandra -f" in container["command"][-1]
    assert env_of(container)["CASSANDRA_CONF"] == "/etc/phaseshift/cassandra"
    assert "shop-postgres" in names(objects, "StatefulSet")


def test_images_are_overridable_per_component(render, make_plan) -> None:
    plan = make_plan(
        overrides=[{"phase": 2, "images": {"postgres": "postgres:17.0", "redis": "valkey:8"}}]
    )
    objects = render(2, plan)
    assert containers(find(objects, "StatefulSet", "shop-postgres"))[0]["image"] == "postgres:17.0"
    assert containers(find(objects, "Deployment", "shop-redis"))[0]["image"] == "valkey:8"
    assert (
        containers(find(render(2), "StatefulSet", "shop-postgres"))[0]["image"] == "postgres:15.10"
    )


def _conf(objects: list[dict]) -> dict[str, str]:
    text = find(objects, "ConfigMap", "shop-postgres-config")["data"]["postgresql.conf"]
    pairs = (line.split(" = ", 1) for line in text.splitlines() if " = " in line)
    return {key: value for key, value in pairs if not key.startswith("#")}


def test_the_pool_size_is_the_sample_apps() -> None:
    from sample_app.storage.postgres import PostgresStore

    default = inspect.signature(PostgresStore.__init__).parameters["pool_size"].default
    assert default == postgres.APP_POOL_SIZE


def test_max_connections_cover_every_pool_the_plan_may_open(render, make_plan) -> None:
    # Phase 4 by default: user-service and data-service each at their HPA's maximum (30)
    # with as many canaries, and 3 workers with a rolling surge of 1.
    expected = (2 * 2 * 30 + 3 + 1) * postgres.APP_POOL_SIZE + postgres.CONNECTION_HEADROOM
    for phase in (2, 3, 4):
        assert _conf(render(phase))["max_connections"] == str(expected)
    # The HPA's ceiling moves it; it is the same in every phase, so no transition
    # restarts the database for it.
    plan = make_plan(overrides=[{"phase": 3, "hpa": {"maxReplicas": 200}}])
    phase3 = (200 + 50 + 2 + 1) * postgres.APP_POOL_SIZE + postgres.CONNECTION_HEADROOM
    assert phase3 > expected
    assert {_conf(render(p, plan))["max_connections"] for p in (2, 3, 4)} == {str(phase3)}


def test_a_lower_max_phase_changes_no_setting_a_restart_would_apply(render, make_plan) -> None:
    """max_connections and the WAL senders are sized for every phase, whatever maxPhase
    says: lowering it during a demotion restarts primary and replica in no set order, and
    a standby refuses to replay a primary whose value is higher than its own."""
    keys = ("max_connections", "max_wal_senders", "max_replication_slots")
    for phase in (2, 3):
        everything = _conf(render(phase))
        capped = _conf(render(phase, make_plan(policy={"maxPhase": phase})))
        assert {k: capped[k] for k in keys} == {k: everything[k] for k in keys}
    assert int(everything["max_connections"]) >= postgres.MIN_CONNECTIONS


def test_shared_buffers_follow_a_small_memory_request(render, make_plan) -> None:
    assert _conf(render(2))["shared_buffers"] == "128MB"
    small = {"requests": {"cpu": "100m", "memory": "256Mi"}}
    plan = make_plan(overrides=[{"phase": 2, "components": {"postgres": {"resources": small}}}])
    assert _conf(render(2, plan))["shared_buffers"] == "64MB"


def test_replicas_stream_through_a_slot_named_after_their_pod(render) -> None:
    replica = find(render(2), "StatefulSet", "shop-postgres-replica")
    [clone] = replica["spec"]["template"]["spec"]["initContainers"]
    assert env_of(clone)["POD_NAME"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    script = clone["command"][-1]
    assert script == postgres.clone_script()
    assert '--slot="$slot" --write-recovery-conf' in script
    assert "pg_create_physical_replication_slot('$slot', true)" in script
    # The name the script gives a pod's slot is the one slot_name gives it.
    for pod in ("shop-postgres-replica-0", "a.b-c-12", "x" * 70):
        line = next(x for x in script.splitlines() if x.startswith("slot="))
        named = subprocess.run(
            ["sh", "-c", f'{line}; printf %s "$slot"'],
            env={"POD_NAME": pod, "PATH": os.environ["PATH"]},
            capture_output=True,
            text=True,
            check=True,
        )
        assert named.stdout == postgres.slot_name(pod)
    assert postgres.slot_name("shop-postgres-replica-0") == "shop_postgres_replica_0"


def test_the_clone_script_resumes_only_what_can_resume(render) -> None:
    script = postgres.clone_script()
    assert subprocess.run(["sh", "-n", "-c", script]).returncode == 0
    # Resuming needs the primary's system and a slot that still has its WAL ...
    assert "FROM pg_control_system()" in script
    assert "pg_controldata" in script
    assert '[ "$wal" != missing ] && [ "$wal" != lost ]' in script
    # ... an unreachable primary (psql's status 2) starts the standby on its data ...
    assert '[ "$status" -eq 2 ]' in script
    # ... and a new clone is built aside, through a new slot.
    clone = script[script.index('new="$PGDATA.new"') :]
    assert clone.index("pg_drop_replication_slot") < clone.index("pg_create_physical")
    assert clone.index("pg_create_physical") < clone.index("pg_basebackup")
    assert clone.rstrip().endswith('mv "$new" "$PGDATA"')


def test_slots_have_room_and_a_cap_on_the_wal_they_keep(render, make_plan) -> None:
    conf = _conf(render(2))
    assert "wal_keep_size" not in conf
    # A quarter of the 20Gi volume.
    assert conf["max_slot_wal_keep_size"] == "5120MB"
    assert conf["max_replication_slots"] == conf["max_wal_senders"] == "10"
    plan = make_plan(
        overrides=[
            {"phase": 2, "components": {"postgres": {"storage": "8Gi"}}},
            {"phase": 3, "readReplicas": 12},
        ]
    )
    # Every phase the plan may reach: twice the most replicas, in phase 2 as in 3.
    for phase in (2, 3):
        conf = _conf(render(phase, plan))
        assert conf["max_slot_wal_keep_size"] == "2048MB"
        assert conf["max_replication_slots"] == conf["max_wal_senders"] == "24"


def test_every_postgres_exporter_reports_a_standbys_lag(render, make_plan) -> None:
    plan = make_plan(overrides=[{"phase": 3, "shards": 2}])
    objects = render(3, plan)
    config = find(objects, "ConfigMap", "shop-postgres-config")["data"]
    queries = yaml.safe_load(config[postgres.EXPORTER_QUERIES])
    metrics = {name for m in queries["pg_standby"]["metrics"] for name in m}
    assert metrics == {"is_replica", "lag_seconds", "replay_lag_bytes", "streaming"}
    for name in ("shop-postgres", "shop-postgres-replica", "shop-postgres-shard"):
        exporter = containers(find(objects, "StatefulSet", name))[-1]
        path = f"/etc/phaseshift/postgres/{postgres.EXPORTER_QUERIES}"
        assert f"--extend.query-path={path}" in exporter["args"]
        assert exporter["volumeMounts"] == [
            {"name": "config", "mountPath": "/etc/phaseshift/postgres", "readOnly": True}
        ]


def test_the_config_hash_follows_the_exporter_queries(render, monkeypatch) -> None:
    def config_hash() -> str:
        sts = find(render(2), "StatefulSet", "shop-postgres-replica")
        return str(sts["spec"]["template"]["metadata"]["annotations"]["phaseshift.dev/config-hash"])

    before = config_hash()
    monkeypatch.setattr(postgres, "EXPORTER_QUERIES_YAML", postgres.EXPORTER_QUERIES_YAML + "\n")
    assert config_hash() != before
