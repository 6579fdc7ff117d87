"""The app's environment: exactly the variables sample_app reads, secrets in the Secret."""

from __future__ import annotations

import base64

import pytest
from render_helpers import containers, env_of, find

from phaseshift.render import RenderContext, render_phase
from phaseshift.render.workload import ANNOTATION_CONFIG_HASH
from sample_app.config import Settings

READ_BY_APP = {
    "DATABASE_URL", "READ_REPLICA_URLS", "DATABASE_SHARD_URLS", "REDIS_URL", "REDIS_CLUSTER",
    "QUEUE_URL", "KAFKA_BOOTSTRAP", "PHASESHIFT_PLAN", "APP_ROLE", "USER_SERVICE_URL",
    "DATA_SERVICE_URL", "PORT", "CASSANDRA_CONTACT_POINTS", "CASSANDRA_KEYSPACE",
    "CASSANDRA_REPLICATION_FACTOR",
}  # fmt: skip
FEED_VARIABLES = {"CASSANDRA_CONTACT_POINTS", "CASSANDRA_KEYSPACE", "CASSANDRA_REPLICATION_FACTOR"}
CREDENTIAL_BEARING = {"DATABASE_URL", "READ_REPLICA_URLS", "DATABASE_SHARD_URLS", "QUEUE_URL"}


def _environment(objects) -> tuple[dict[str, str], dict[str, str]]:
    config = find(objects, "ConfigMap", "shop-app-config")["data"]
    secret = {
        k: base64.b64decode(v).decode()
        for k, v in find(objects, "Secret", "shop-app-secret")["data"].items()
    }
    return config, secret


def test_every_phase_sets_only_variables_the_app_reads(render) -> None:
    for phase in (1, 2, 3, 4):
        config, secret = _environment(render(phase))
        assert set(config) | set(secret) <= READ_BY_APP
        assert not set(config) & CREDENTIAL_BEARING


def test_each_phase_configures_its_services(render, make_plan) -> None:
    plan = make_plan(overrides=[{"phase": 3, "shards": 4}])
    expected = {
        1: {"DATABASE_URL", "PHASESHIFT_PLAN", "PORT"},
        2: {"DATABASE_URL", "READ_REPLICA_URLS", "REDIS_URL", "REDIS_CLUSTER", "PHASESHIFT_PLAN", "PORT"},
        3: {
            "DATABASE_URL", "READ_REPLICA_URLS", "DATABASE_SHARD_URLS", "REDIS_URL",
            "REDIS_CLUSTER", "QUEUE_URL", "PHASESHIFT_PLAN", "PORT",
        },
        4: {
            "DATABASE_URL", "READ_REPLICA_URLS", "REDIS_URL", "REDIS_CLUSTER", "QUEUE_URL",
            "KAFKA_BOOTSTRAP", "USER_SERVICE_URL", "DATA_SERVICE_URL", "PHASESHIFT_PLAN", "PORT",
        },
    }  # fmt: skip
    for phase, keys in expected.items():
        config, secret = _environment(render(phase, plan))
        assert set(config) | set(secret) == keys, phase


def _app_containers(objects) -> dict[str, dict[str, str]]:
    """Each app Deployment's own env (APP_ROLE, PORT, role variables), by Deployment."""
    return {
        obj["metadata"]["name"]: env
        for obj in objects
        if obj["kind"] == "Deployment"
        for container in containers(obj)
        for env in [env_of(container)]
        if "APP_ROLE" in env
    }


def test_the_app_accepts_every_phase_environment(render) -> None:
    """sample_app's own parser accepts what each rendered app Deployment would run with."""
    for phase in (1, 2, 3, 4):
        objects = render(phase)
        config, secret = _environment(objects)
        own = _app_containers(objects)
        assert own, phase
        for env in own.values():
            assert set(env) <= READ_BY_APP
            settings = Settings.from_env({**config, **secret, **env})
            assert (settings.plan, settings.role) == ("shop", env["APP_ROLE"])
            assert settings.uses_sqlite == (phase == 1)
            if env["APP_ROLE"] in {"consumer", "data-service"} and phase == 4:
                assert settings.cassandra_contact_points == (("shop-cassandra", 9042),)
                assert settings.cassandra_keyspace == "phaseshift"
                assert settings.cassandra_replication_factor == 3


def test_only_the_feeds_writer_and_reader_reach_cassandra(render) -> None:
    """The activity feed's variables: on the consumer (which writes it) and the
    data-service (which serves it), in the phase that has Cassandra, nowhere else."""
    for phase in (1, 2, 3, 4):
        objects = render(phase)
        config, secret = _environment(objects)
        assert not (set(config) | set(secret)) & FEED_VARIABLES
        with_feed = {
            name for name, env in _app_containers(objects).items() if set(env) >= FEED_VARIABLES
        }
        expected = (
            {"shop-event-consumer", "shop-data-service", "shop-data-service-canary"}
            if phase == 4
            else set()
        )
        assert with_feed == expected, phase


@pytest.mark.parametrize(("nodes", "replicas"), [(1, "1"), (2, "2"), (3, "3"), (5, "3")])
def test_the_feeds_replication_follows_the_ring_up_to_three(
    render, make_plan, nodes, replicas
) -> None:
    plan = make_plan(overrides=[{"phase": 4, "components": {"cassandra": {"nodes": nodes}}}])
    env = env_of(containers(find(render(4, plan), "Deployment", "shop-event-consumer"))[0])
    assert env["CASSANDRA_REPLICATION_FACTOR"] == replicas


def test_urls_carry_the_generated_password_url_encoded(render) -> None:
    _, secret = _environment(render(2, db_password="p@ss/word"))
    assert "p%40ss%2Fword@shop-postgres-rw:5432" in secret["DATABASE_URL"]


def test_a_config_change_rolls_the_app(make_plan) -> None:
    plan = make_plan()

    def config_hash(password: str) -> str:
        objects = render_phase(plan, 2, RenderContext(db_password=password))
        blue = find(objects, "Deployment", "shop-app-blue")
        return blue["spec"]["template"]["metadata"]["annotations"][ANNOTATION_CONFIG_HASH]

    assert config_hash("one") == config_hash("one")
    assert config_hash("one") != config_hash("two")
