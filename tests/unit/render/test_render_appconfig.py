"""The app's environment: exactly the variables sample_app reads, secrets in the Secret."""

from __future__ import annotations

import base64

from render_helpers import containers, find

from phaseshift.render import RenderContext, render_phase
from phaseshift.render.workload import ANNOTATION_CONFIG_HASH
from sample_app.config import Settings

READ_BY_APP = {
    "DATABASE_URL", "READ_REPLICA_URLS", "DATABASE_SHARD_URLS", "REDIS_URL", "REDIS_CLUSTER",
    "QUEUE_URL", "KAFKA_BOOTSTRAP", "PHASESHIFT_PLAN", "APP_ROLE", "USER_SERVICE_URL",
    "DATA_SERVICE_URL", "PORT",
}  # fmt: skip
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


def test_the_app_accepts_every_phase_environment(render) -> None:
    """sample_app's own parser accepts what each rendered app Deployment would run with."""
    for phase in (1, 2, 3, 4):
        objects = render(phase)
        config, secret = _environment(objects)
        roles = {
            env["value"]
            for obj in objects
            if obj["kind"] == "Deployment"
            for container in containers(obj)
            for env in container.get("env", [])
            if env["name"] == "APP_ROLE"
        }
        assert roles, phase
        for role in roles:
            settings = Settings.from_env({**config, **secret, "APP_ROLE": role})
            assert (settings.plan, settings.role) == ("shop", role)
            assert settings.uses_sqlite == (phase == 1)


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
