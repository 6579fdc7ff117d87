"""The HTTP API on the phase-1 configuration (SQLite): behaviour, validation, metrics."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sampleapp_helpers import client, metric, new_user

from sample_app.config import ConfigError, Settings


@pytest.fixture
def app(tmp_path: Path) -> Any:
    with client(DATABASE_URL=f"sqlite:///{tmp_path}/app.db") as c:
        yield c


def test_users_and_items_round_trip(app: Any) -> None:
    r = app.post("/users", json={"name": " Grace ", "email": "Grace@Example.com"})
    assert r.status_code == 201
    user = r.json()
    assert user["name"] == "Grace" and user["email"] == "grace@example.com"
    assert app.get(f"/users/{user['id']}").json()["item_count"] == 0

    item = app.post("/items", json={"owner": user["id"], "name": "lamp", "price_cents": 1999})
    assert item.status_code == 201
    assert item.json()["owner"] == user["id"]
    assert app.get(f"/items/{item.json()['id']}").json() == item.json()
    listed = app.get("/items", params={"owner": user["id"]}).json()["items"]
    assert [i["id"] for i in listed] == [item.json()["id"]]
    assert app.get(f"/users/{user['id']}").json()["item_count"] == 1
    assert user["id"] in [u["id"] for u in app.get("/users").json()["users"]]
    assert app.get("/items").json()["items"][0]["id"] == item.json()["id"]


def test_items_listing_respects_limit_and_order(app: Any) -> None:
    owner = new_user(app)
    ids = [
        app.post("/items", json={"owner": owner, "name": f"n{i}"}).json()["id"] for i in range(5)
    ]
    page = app.get("/items", params={"owner": owner, "limit": 3}).json()["items"]
    assert len(page) == 3
    assert {i["id"] for i in page} <= set(ids)


BAD_REQUESTS = [
    ("POST", "/users", b"{not json", 400),
    ("POST", "/users", b"[]", 400),
    ("POST", "/users", b"", 400),
    ("POST", "/users", b'{"name": "x"}', 422),
    ("POST", "/users", b'{"name": "x", "email": "nope"}', 422),
    ("POST", "/users", b'{"name": "", "email": "a@b.co"}', 422),
    ("POST", "/users", b'{"name": 5, "email": "a@b.co"}', 422),
    ("POST", "/users", b'{"name": "x", "email": "a@b.co", "admin": true}', 422),
    ("POST", "/users", ('{"name": "' + "x" * 101 + '", "email": "a@b.co"}').encode(), 422),
    ("POST", "/items", b'{"owner": "../etc", "name": "x"}', 422),
    ("POST", "/items", b'{"owner": "0123456789abcdef0123456789abcdef", "name": "x"}', 422),
    ("POST", "/items", b'{"name": "x"}', 422),
    (
        "POST",
        "/items",
        b'{"owner": "0123456789abcdef0123456789abcdef", "name": "x", "price_cents": -1}',
        422,
    ),
    (
        "POST",
        "/items",
        b'{"owner": "0123456789abcdef0123456789abcdef", "name": "x", "price_cents": true}',
        422,
    ),
    (
        "POST",
        "/items",
        b'{"owner": "0123456789abcdef0123456789abcdef", "name": "x", "price_cents": 1.5}',
        422,
    ),
    ("POST", "/users", b'{"name": "x", "email": "a@b.co", "pad": "' + b"x" * 70000 + b'"}', 413),
    ("GET", "/users?limit=0", b"", 400),
    ("GET", "/users?limit=abc", b"", 400),
    ("GET", "/users?offset=-1", b"", 400),
    ("GET", "/items?owner=", b"", 400),
    ("GET", "/items?owner=not-an-id", b"", 422),
    ("GET", "/items?limit=1000", b"", 400),
    ("GET", "/users/does-not-exist", b"", 404),
    ("GET", "/users/0123456789abcdef0123456789abcdef", b"", 404),
    ("GET", "/items/0123456789abcdef0123456789abcdef", b"", 404),
    ("DELETE", "/users", b"", 405),
    ("GET", "/no/such/route", b"", 404),
    ("GET", "/static/../pyproject.toml", b"", 404),
]


@pytest.mark.parametrize(("method", "path", "body", "status"), BAD_REQUESTS)
def test_bad_requests_get_a_json_4xx(
    app: Any, method: str, path: str, body: bytes, status: int
) -> None:
    r = app.request(
        method, path, content=body or None, headers={"content-type": "application/json"}
    )
    assert r.status_code == status, r.text
    if not path.startswith("/static"):
        assert r.headers["content-type"].startswith("application/json")
        assert "error" in r.json()


def test_duplicate_email_is_a_conflict(app: Any) -> None:
    body = {"name": "a", "email": "same@example.com"}
    assert app.post("/users", json=body).status_code == 201
    r = app.post("/users", json=body)
    assert r.status_code == 409 and r.json()["error"] == "conflict"


def test_metrics_carry_plan_and_route_templates(app: Any) -> None:
    user = new_user(app)
    app.get(f"/users/{user}", headers={"x-user-id": user})
    app.get("/users/0123456789abcdef0123456789abcdef")
    app.get("/nowhere")
    text = app.get("/metrics").text
    for name in (
        "http_requests_total",
        "http_request_duration_seconds_bucket",
        "app_active_users",
        "cache_hits_total",
        "cache_misses_total",
        "queue_depth",
    ):
        assert name in text, name
    series = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert series and all('plan="test"' in line for line in series)
    assert metric(app, "http_requests_total", route="/users/{id}", method="GET", code="200") == 1
    assert metric(app, "http_requests_total", route="/users/{id}", code="404") == 1
    assert metric(app, "http_requests_total", route="unmatched") == 1
    assert user not in text  # raw paths never become labels
    assert metric(app, "http_request_duration_seconds_count", route="/users") == 1
    assert metric(app, "app_active_users") == 1


def test_active_users_count_distinct_users(app: Any) -> None:
    for name in ("u1", "u2", "u1", "u3"):
        app.get("/healthz", headers={"x-user-id": name})
    assert metric(app, "app_active_users") == 3


def test_static_health_and_readiness(app: Any) -> None:
    r = app.get("/static/index.html")
    assert r.status_code == 200 and "phaseshift" in r.text
    assert "max-age" in r.headers["cache-control"]
    assert app.get("/static/app.js").status_code == 200
    assert metric(app, "http_requests_total", route="/static/{path}") == 2
    assert app.get("/healthz").json()["status"] == "ok"
    ready = app.get("/readyz")
    assert ready.status_code == 200 and ready.json()["checks"]["database"] == "ok"


def test_unreachable_database_is_503_not_500(tmp_path: Path) -> None:
    with client(DATABASE_URL="postgresql://nobody@127.0.0.1:1/none") as c:
        assert c.get("/readyz").status_code == 503
        r = c.post("/users", json={"name": "a", "email": "a@b.co"})
        assert r.status_code == 503 and r.json()["error"] == "unavailable"
        assert metric(c, "db_errors_total") == 1
        assert c.get("/healthz").status_code == 200


def test_settings_from_env() -> None:
    s = Settings.from_env(
        {
            "PHASESHIFT_PLAN": "shop",
            "APP_ROLE": "data-service",
            "DATABASE_URL": "postgresql://u:p@db:5432/app",
            "READ_REPLICA_URLS": "postgresql://u:p@r1:5432/app, postgresql://u:p@r2:5432/app",
            "REDIS_URL": "redis://cache:6379/0",
            "REDIS_CLUSTER": "true",
            "CACHE_TTL_SECONDS": "5",
            "QUEUE_URL": "amqp://g:g@mq:5672/%2F",
            "KAFKA_BOOTSTRAP": "k1:9092,k2:9092",
            "PORT": "9000",
        }
    )
    assert s.plan == "shop" and s.role == "data-service" and s.port == 9000
    assert len(s.read_replica_urls) == 2 and s.redis_cluster and s.cache_ttl_seconds == 5
    assert s.kafka_bootstrap == ("k1:9092", "k2:9092")
    defaults = Settings.from_env({})
    assert defaults.role == "monolith" and defaults.uses_sqlite and defaults.port == 8080
    assert defaults.static_dir.joinpath("index.html").exists()


def test_the_cache_in_process_level_is_configured_by_the_environment() -> None:
    defaults = Settings.from_env({})
    assert defaults.cache_local_ttl_seconds == 1.0
    assert defaults.cache_local_max_entries == 10_000
    assert defaults.cache_local_max_bytes == 32 * 1024 * 1024
    s = Settings.from_env(
        {
            "CACHE_LOCAL_TTL_SECONDS": "0.25",
            "CACHE_LOCAL_MAX_ENTRIES": "500",
            "CACHE_LOCAL_MAX_BYTES": "1048576",
        }
    )
    assert s.cache_local_ttl_seconds == 0.25
    assert s.cache_local_max_entries == 500 and s.cache_local_max_bytes == 1 << 20
    off = Settings.from_env({"CACHE_LOCAL_TTL_SECONDS": "0", "CACHE_LOCAL_MAX_ENTRIES": ""})
    assert off.cache_local_ttl_seconds == 0 and off.cache_local_max_entries == 10_000


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("CACHE_LOCAL_TTL_SECONDS", "soon", "must be a number"),
        ("CACHE_LOCAL_TTL_SECONDS", "-1", "must not be negative"),
        ("CACHE_LOCAL_TTL_SECONDS", "nan", "must be a finite number"),
        ("CACHE_LOCAL_TTL_SECONDS", "inf", "must be a finite number"),
        ("CACHE_LOCAL_MAX_ENTRIES", "1.5", "must be an integer"),
        ("CACHE_LOCAL_MAX_ENTRIES", "-1", "must not be negative"),
        ("CACHE_LOCAL_MAX_BYTES", "32MiB", "must be an integer"),
        ("CACHE_LOCAL_MAX_BYTES", "-5", "must not be negative"),
    ],
)
def test_bad_cache_local_settings_name_the_variable(name: str, value: str, message: str) -> None:
    with pytest.raises(ConfigError, match=f"{name} {message}, got '{value}'"):
        Settings.from_env({name: value})


@pytest.mark.parametrize(
    "env",
    [
        {"APP_ROLE": "king"},
        {"DATABASE_URL": "mysql://x"},
        {"PORT": "eighty"},
        {"CACHE_TTL_SECONDS": "-1"},
        {"READ_REPLICA_URLS": "postgresql://r/x"},  # replicas of a SQLite file make no sense
        {"APP_ROLE": "gateway"},
    ],
)
def test_bad_settings_are_rejected(env: dict[str, str]) -> None:
    with pytest.raises(ConfigError):
        Settings.from_env(env)
