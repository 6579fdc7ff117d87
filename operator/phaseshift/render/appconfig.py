"""The application's configuration: a ConfigMap and a Secret of environment variables.

These are exactly the variables sample_app.config reads. A variable is present only in
the phases that have its service, so the app's behaviour follows from its environment.
URLs that carry a password go in the Secret. Variables only some roles read are set on
those roles' containers instead (role_values).
"""

from __future__ import annotations

from typing import Any

from phaseshift.catalog import Database, Queue, Stream
from phaseshift.render import cassandra, components, kafka, postgres, rabbitmq, redis, sqlite
from phaseshift.render import credentials as cred
from phaseshift.render.encoding import content_hash, secret_data
from phaseshift.render.scope import Scope
from phaseshift.render.sizing import read_replicas

COMPONENT = "config"
# The roles that use the activity feed in Cassandra: the consumer writes it, the
# data-service serves it. No other role connects to Cassandra.
FEED_ROLES = frozenset({"consumer", "data-service"})
CONFIG = "app-config"
SECRET = "app-secret"


def config_values(scope: Scope) -> dict[str, str]:
    values = {"PHASESHIFT_PLAN": scope.plan.name, "PORT": str(scope.plan.spec.app.port)}
    if scope.catalog.cache.redis:
        values["REDIS_URL"] = redis.url(scope)
        values["REDIS_CLUSTER"] = "true" if scope.catalog.cache.redis_cluster else "false"
    if scope.catalog.stream is Stream.KAFKA:
        values["KAFKA_BOOTSTRAP"] = ",".join(kafka.broker_hosts(scope))
        values["USER_SERVICE_URL"] = f"http://{scope.name('user-service')}"
        values["DATA_SERVICE_URL"] = f"http://{scope.name('data-service')}"
    return values


def role_values(scope: Scope, role: str) -> dict[str, str]:
    """The variables of one role's containers beside the shared ConfigMap."""
    if scope.catalog.database.cassandra and role in FEED_ROLES:
        return {
            "CASSANDRA_CONTACT_POINTS": cassandra.contact_point(scope),
            "CASSANDRA_KEYSPACE": cassandra.APP_KEYSPACE,
            "CASSANDRA_REPLICATION_FACTOR": str(components.cassandra_replication_factor(scope)),
        }
    return {}


def secret_values(scope: Scope) -> dict[str, str]:
    if scope.catalog.database is Database.SQLITE:
        return {"DATABASE_URL": sqlite.DATABASE_URL}
    values = {"DATABASE_URL": cred.postgres_url(scope, postgres.rw_host(scope))}
    if read_replicas(scope):
        values["READ_REPLICA_URLS"] = cred.postgres_url(scope, postgres.ro_host(scope))
    shard_hosts = postgres.shard_hosts(scope)
    if shard_hosts:
        values["DATABASE_SHARD_URLS"] = ",".join(cred.postgres_url(scope, h) for h in shard_hosts)
    if scope.catalog.queue is Queue.RABBITMQ:
        values["QUEUE_URL"] = cred.amqp_url(scope, rabbitmq.host(scope))
    return values


def config_hash(scope: Scope) -> str:
    """Changes whenever the app's environment does, so its pods roll to pick it up."""
    return content_hash(config_values(scope), secret_values(scope))


def env_from(scope: Scope) -> list[dict[str, Any]]:
    return [
        {"configMapRef": {"name": scope.name(CONFIG)}},
        {"secretRef": {"name": scope.name(SECRET)}},
    ]


def objects(scope: Scope) -> list[dict[str, Any]]:
    return [
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": scope.metadata(SECRET, COMPONENT),
            "type": "Opaque",
            "data": secret_data(secret_values(scope)),
        },
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": scope.metadata(CONFIG, COMPONENT),
            "data": config_values(scope),
        },
    ]
