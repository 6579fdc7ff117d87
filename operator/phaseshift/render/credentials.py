"""The plan's credentials Secret and the connection URLs built from it.

The shell generates one random password (RenderContext.db_password) and keeps it under
PASSWORD_KEY; every other service's password is an HMAC of it, so render stays pure
and each service still gets its own secret.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any
from urllib.parse import quote

from phaseshift.render.encoding import secret_data
from phaseshift.render.scope import Scope

SUFFIX = "credentials"
PASSWORD_KEY = "postgres-password"
REPLICATION_KEY = "replication-password"
RABBITMQ_KEY = "rabbitmq-password"
ERLANG_COOKIE_KEY = "erlang-cookie"
PRIMARY_URL_KEY = "postgres-primary-url"
POSTGRES_USER = "app"
POSTGRES_DB = "app"
REPLICATION_USER = "replicator"
RABBITMQ_USER = "phaseshift"


def derived(password: str, purpose: str) -> str:
    return hmac.new(password.encode(), purpose.encode(), hashlib.sha256).hexdigest()[:32]


def secret_name(scope: Scope) -> str:
    return scope.name(SUFFIX)


def postgres_url(scope: Scope, host: str) -> str:
    password = quote(scope.ctx.db_password, safe="")
    return f"postgresql://{POSTGRES_USER}:{password}@{host}:5432/{POSTGRES_DB}"


def amqp_url(scope: Scope, host: str) -> str:
    password = derived(scope.ctx.db_password, "rabbitmq")
    return f"amqp://{RABBITMQ_USER}:{password}@{host}:5672/%2F"


def credentials_secret(scope: Scope, primary_host: str) -> dict[str, Any]:
    """Owned by nobody, like the data PVCs: retained data is useless without its keys."""
    password = scope.ctx.db_password
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": scope.metadata(SUFFIX, "database", stateful=True, owned=False),
        "type": "Opaque",
        "data": secret_data(
            {
                PASSWORD_KEY: password,
                REPLICATION_KEY: derived(password, "replication"),
                RABBITMQ_KEY: derived(password, "rabbitmq"),
                ERLANG_COOKIE_KEY: derived(password, "erlang-cookie"),
                PRIMARY_URL_KEY: postgres_url(scope, primary_host),
            }
        ),
    }
