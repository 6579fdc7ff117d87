"""Phase 4 roles (user-service, data-service, gateway), the Kafka path, the CLI, loadgen."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import httpx
from conftest import free_port
from sampleapp_helpers import ServerThread, client, metric, settings

from phaseshift.lab.wait import wait_for
from sample_app.app import create_app
from sample_app.events import producer_config
from sample_app.loadgen import run_load


def test_gateway_routes_to_user_and_data_services(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path}/shared.db"
    users_app = create_app(settings(APP_ROLE="user-service", DATABASE_URL=db))
    data_app = create_app(settings(APP_ROLE="data-service", DATABASE_URL=db))
    with ServerThread(users_app, free_port()) as us, ServerThread(data_app, free_port()) as ds:
        # Each service serves only its own routes.
        assert httpx.get(f"{us.url}/items").status_code == 404
        assert httpx.get(f"{ds.url}/users").status_code == 404
        with client(APP_ROLE="gateway", USER_SERVICE_URL=us.url, DATA_SERVICE_URL=ds.url) as gw:
            assert gw.get("/readyz").status_code == 200
            r = gw.post(
                "/users", json={"name": "a", "email": "a@b.co"}, headers={"x-user-id": "someone"}
            )
            assert r.status_code == 201
            owner = r.json()["id"]
            item = gw.post("/items", json={"owner": owner, "name": "x"})
            assert item.status_code == 201
            listed = gw.get("/items", params={"owner": owner}).json()["items"]
            assert [i["id"] for i in listed] == [item.json()["id"]]
            assert gw.get(f"/users/{owner}").json()["item_count"] == 1
            assert gw.post("/items", content=b"{bad").status_code == 400
            assert gw.get("/static/index.html").status_code == 200
            assert metric(gw, "http_requests_total", route="/items", method="POST") == 2
    # With the services gone, the gateway answers 502, not 500.
    with client(APP_ROLE="gateway", USER_SERVICE_URL=us.url, DATA_SERVICE_URL=ds.url) as gw:
        r = gw.get("/users")
        assert r.status_code == 502 and r.json()["error"] == "bad_gateway"
        assert gw.get("/readyz").status_code == 503
        assert metric(gw, "gateway_upstream_errors_total", service="user-service") == 1


def test_events_to_kafka_never_block_or_fail_a_request(tmp_path: Path) -> None:
    # No broker listens here: delivery fails, and the failure is only counted.
    dead = f"127.0.0.1:{free_port()}"
    with client(DATABASE_URL=f"sqlite:///{tmp_path}/a.db", KAFKA_BOOTSTRAP=dead) as c:
        r = c.post("/users", json={"name": "a", "email": "a@b.co"})
        assert r.status_code == 201
        assert c.post("/items", json={"owner": r.json()["id"], "name": "x"}).status_code == 201
        wait_for(lambda: metric(c, "events_publish_errors_total") >= 1, timeout=30)
        assert metric(c, "events_published_total") == 0
    config = producer_config([dead])
    assert config["bootstrap_servers"] == [dead] and config["acks"] == "all"


def test_serve_command_runs_the_service_from_the_environment(tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{tmp_path}/cli.db", "PHASESHIFT_PLAN": "cli"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "sample_app", "serve", "--port", str(port), "--host", "127.0.0.1"],
        env=env,
    )
    try:

        def up() -> bool:
            try:
                return httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(up, timeout=30)
        assert 'plan="cli"' in httpx.get(f"http://127.0.0.1:{port}/metrics").text
    finally:
        proc.terminate()
        proc.wait(20)
    bad = subprocess.run(
        [sys.executable, "-m", "sample_app", "serve"],
        capture_output=True,
        text=True,
        env={**env, "APP_ROLE": "nope"},
        timeout=60,
    )
    assert bad.returncode == 2 and "APP_ROLE" in bad.stderr


def test_loadgen_drives_a_read_heavy_mix(tmp_path: Path) -> None:
    app = create_app(settings(DATABASE_URL=f"sqlite:///{tmp_path}/load.db"))
    with ServerThread(app, free_port()) as server:
        summary = asyncio.run(run_load(server.url, users=4, duration=1.5, ramp=0.2))
        assert summary["requests"] > 0 and summary["errors"] == 0
        mix = summary["mix"]
        reads = sum(v for k, v in mix.items() if not k.startswith("create"))
        assert reads > mix.get("create_item", 0)
        assert summary["p50_ms"] <= summary["p95_ms"] <= summary["p99_ms"]
        out = subprocess.run(
            [
                sys.executable,
                "-m",
                "sample_app",
                "loadgen",
                "--users",
                "2",
                "--duration",
                "1",
                "--target",
                server.url,
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert out.returncode == 0 and "req/s" in out.stdout and "p99" in out.stdout
        # The load side does not log each of its requests.
        assert "HTTP Request" not in out.stderr, out.stderr[:500]
