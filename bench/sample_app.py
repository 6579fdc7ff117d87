"""Benchmark: the sample app's read-heavy mix, phase 1 vs phase 2, side by side.

    .venv/bin/python bench/sample_app.py [--users 32] [--duration 20]

Starts, on 127.0.0.1 only, a PostgreSQL primary with a streaming replica and a
Redis server (the same launchers the tests use), then serves the app in a separate
process for each configuration and drives the same load at it:

  phase-1           SQLite
  phase-2-nocache   PostgreSQL primary + read replica
  phase-2           PostgreSQL primary + read replica + Redis cache-aside

It prints RPS and p50/p95/p99 per configuration, then the read path alone (the
service's cached reads vs the same reads without the cache, same data, same
process) and the speed-up the cache gives it. It prints figures; it asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sample_app.cache import Cache  # noqa: E402
from sample_app.config import Settings  # noqa: E402
from sample_app.loadgen import run_load  # noqa: E402
from sample_app.metrics import Metrics  # noqa: E402
from sample_app.service import DataService  # noqa: E402
from sample_app.storage import open_store  # noqa: E402


def _launchers() -> Any:
    spec = importlib.util.spec_from_file_location(
        "sample_app_services", ROOT / "tests" / "sample_app" / "conftest.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def serve(env: dict[str, str], port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "sample_app", "serve", "--port", str(port), "--host", "127.0.0.1"],
        env={**os.environ, **env, "LOG_LEVEL": "WARNING"},
        cwd=ROOT,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz").status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise RuntimeError(f"the app did not become ready with {env}")


def seed_catalogue(url: str, owners: int, items_each: int) -> list[str]:
    import uuid

    import psycopg

    now = int(time.time() * 1000)
    ids = [uuid.uuid4().hex for _ in range(owners)]
    with psycopg.connect(url) as db, db.cursor() as cur:
        with cur.copy("COPY users (id, name, email, created_at) FROM STDIN") as cp:
            for i, uid in enumerate(ids):
                cp.write_row((uid, f"seller {i}", f"seller-{uid}@example.com", now))
        with cur.copy("COPY items (id, owner_id, name, price_cents, created_at) FROM STDIN") as cp:
            for uid in ids:
                for n in range(items_each):
                    cp.write_row(
                        (uuid.uuid4().hex, uid, f"product {n} of {uid[:6]}", 100 + n, now + n)
                    )
        cur.execute(
            "INSERT INTO user_stats SELECT owner_id, count(*), %s FROM items "
            "GROUP BY owner_id ON CONFLICT (user_id) DO UPDATE "
            "SET item_count = excluded.item_count",
            [now],
        )
    return ids


def read_paths(
    base: Settings, cached: Settings, owners: list[str], rounds: int
) -> tuple[float, float]:
    """Median seconds per read (an owner's items, then the owner), without and with cache.

    The two services are timed in alternating rounds so that background load on the
    machine hits both alike.
    """
    services = []
    for settings in (base, cached):
        metrics = Metrics(settings.plan)
        cache = Cache(settings.redis_url, metrics) if settings.redis_url else None
        services.append(DataService(settings, open_store(settings), metrics, cache))
    samples: list[list[float]] = [[], []]
    try:
        for svc in services:  # warm connections (and the cache)
            for owner in owners:
                svc.list_items(owner, 50)
                svc.get_user(owner)
        for _ in range(rounds):
            for i, svc in enumerate(services):
                started = time.perf_counter()
                for owner in owners:
                    svc.list_items(owner, 50)
                    svc.get_user(owner)
                samples[i].append((time.perf_counter() - started) / (2 * len(owners)))
        return statistics.median(samples[0]), statistics.median(samples[1])
    finally:
        for svc in services:
            svc.store.close()
            if svc.cache is not None:
                svc.cache.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--users", type=int, default=32)
    parser.add_argument("--duration", type=float, default=20.0)
    args = parser.parse_args()
    svc = _launchers()
    tmp = Path(tempfile.mkdtemp(prefix="phaseshift-bench-"))
    pg = svc.start_pg_cluster()
    redis = svc.RedisServer(svc.free_port(), tmp)
    redis.start()
    procs: list[subprocess.Popen[bytes]] = []
    results: dict[str, dict[str, Any]] = {}
    try:
        import psycopg

        with psycopg.connect(pg.primary.url(), autocommit=True) as admin:
            admin.execute("CREATE DATABASE bench")
        primary, replica = pg.primary.url("bench"), pg.replica.url("bench")
        configs = {
            "phase-1": {"DATABASE_URL": f"sqlite:///{tmp}/phase1.db"},
            "phase-2-nocache": {"DATABASE_URL": primary, "READ_REPLICA_URLS": replica},
            "phase-2": {
                "DATABASE_URL": primary,
                "READ_REPLICA_URLS": replica,
                "REDIS_URL": redis.url,
            },
        }
        for name, env in configs.items():
            port = svc.free_port()
            proc = serve({**env, "PHASESHIFT_PLAN": f"bench-{name}"}, port)
            procs.append(proc)
            print(f"{name}: {args.users} users for {args.duration:.0f}s ...", file=sys.stderr)
            results[name] = asyncio.run(
                run_load(
                    f"http://127.0.0.1:{port}",
                    args.users,
                    args.duration,
                    ramp=2.0,
                    show_progress=sys.stderr.isatty(),
                )
            )
            proc.terminate()
            proc.wait(20)

        # The read path alone: same PostgreSQL data, with and without the cache. A shop
        # user has a catalogue, not three items: seed owners with a realistic page each.
        owners = seed_catalogue(primary, owners=200, items_each=60)
        pg.wait_replicated("bench")
        base = {
            "PHASESHIFT_PLAN": "bench",
            "DATABASE_URL": primary,
            "READ_REPLICA_URLS": replica,
            "READ_YOUR_WRITES_SECONDS": "0",
        }
        without, with_cache = read_paths(
            Settings.from_env(base),
            Settings.from_env({**base, "REDIS_URL": redis.url}),
            owners,
            rounds=30,
        )
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
        redis.stop()
        svc.stop_pg_cluster(pg)
        shutil.rmtree(tmp, ignore_errors=True)

    print(f"\nread-heavy mix, {args.users} users, {args.duration:.0f}s each, same machine\n")
    print(f"{'configuration':<18}{'rps':>9}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}{'errors':>8}")
    for name, r in results.items():
        print(
            f"{name:<18}{r['rps']:>9}{r['p50_ms']:>9}{r['p95_ms']:>9}{r['p99_ms']:>9}"
            f"{r['errors']:>8}"
        )
    p1, p2 = results["phase-1"], results["phase-2"]
    print(
        f"\nphase-2 / phase-1: rps x{p2['rps'] / max(p1['rps'], 1e-9):.2f}, "
        f"p99 x{p2['p99_ms'] / max(p1['p99_ms'], 1e-9):.2f}"
    )
    print("\nread path (an owner's page of 50 items, then the owner), median per read:")
    print(f"  PostgreSQL replica, no cache  {without * 1e6:8.0f} us")
    print(f"  PostgreSQL + Redis cache      {with_cache * 1e6:8.0f} us")
    print(f"  cache speed-up                x{without / with_cache:.2f} (target >= x3)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
