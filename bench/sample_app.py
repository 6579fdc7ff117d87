"""Benchmark: the sample app's read-heavy mix, phase 1 vs phase 2, side by side.

    .venv/bin/python bench/sample_app.py [--users 32] [--duration 20]

Starts, on 127.0.0.1 only, a PostgreSQL primary with a streaming replica and a
Redis server (the same launchers the tests use), then serves the app in a separate
process for each configuration and drives the same load at it:

  phase-1           SQLite
  phase-2-nocache   PostgreSQL primary + read replica
  phase-2           PostgreSQL primary + read replica + Redis cache-aside (with the
                    cache's in-process level in front of Redis)

It prints RPS and p50/p95/p99 per configuration (phase-2 runs the app as deployed:
Redis plus the cache's in-process level) and how phase-2's cache lookups ended,
then the read path alone: the service's reads without the cache, with Redis only
and with both levels (same data, same process), and each cache's speed-up. It
prints figures; it asserts nothing.
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

from phaseshift.lab.wait import wait_for  # noqa: E402
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
    try:
        wait_for(
            lambda: httpx.get(f"http://127.0.0.1:{port}/readyz").status_code,
            30,
            f"the app ready with {env}",
            poll=0.2,
            until=lambda status: status == 200,
            retry_on=(httpx.HTTPError,),
        )
    except AssertionError:
        proc.kill()
        raise
    return proc


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


READ_PATHS = (
    ("no cache", "PostgreSQL replica, no cache"),
    ("redis", "cached (Redis only)"),
    ("local", "cached (process memory + Redis)"),
)


def read_paths(
    base: Settings, cached: Settings, owners: list[str], rounds: int
) -> dict[str, dict[str, float]]:
    """Seconds per read (an owner's items, then the owner) for each of READ_PATHS: the
    median and the mean of the rounds' averages.

    Three services of this process on the same data: without a cache, with Redis only
    (the in-process level off) and with both levels (the app's default). They are
    timed in alternating rounds so that background load on the machine hits all alike.
    Reads only, so nothing invalidates: after the first round every cached read is a
    hit, and with both levels a memory hit unless its entry outlived the level's TTL.
    """
    services: list[DataService] = []
    for settings, local_entries in ((base, 0), (cached, 0), (cached, 10_000)):
        metrics = Metrics(settings.plan)
        cache = (
            Cache(settings.redis_url, metrics, local_max_entries=local_entries)
            if settings.redis_url
            else None
        )
        services.append(DataService(settings, open_store(settings), metrics, cache))
    samples: list[list[float]] = [[] for _ in services]
    try:
        for svc in services:  # warm connections (and the caches)
            for owner in owners:
                svc.list_items(owner, 50)
                svc.get_user(owner)
        memory = services[2].cache
        assert memory is not None
        # The invalidation subscription is confirmed asynchronously.
        wait_for(lambda: memory.local.enabled, 10, "the cache's in-process level", poll=0.05)
        counters = [_cache_counts(svc) for svc in services]
        for _ in range(rounds):
            for i, svc in enumerate(services):
                started = time.perf_counter()
                for owner in owners:
                    svc.list_items(owner, 50)
                    svc.get_user(owner)
                samples[i].append((time.perf_counter() - started) / (2 * len(owners)))
        results = {}
        for (name, _), svc, times, before in zip(
            READ_PATHS, services, samples, counters, strict=True
        ):
            after = _cache_counts(svc)
            reads = rounds * 2 * len(owners)
            results[name] = {
                "seconds": statistics.median(times),
                "mean": statistics.fmean(times),
                "hits": (after[0] - before[0]) / reads,
                "local_hits": (after[1] - before[1]) / reads,
            }
        return results
    finally:
        for svc in services:
            svc.store.close()
            if svc.cache is not None:
                svc.cache.close()


def _cache_counts(svc: DataService) -> tuple[float, float]:
    registry, labels = svc.metrics.registry, {"plan": svc.metrics.plan}
    return (
        registry.get_sample_value("cache_hits_total", labels) or 0.0,
        registry.get_sample_value("cache_local_hits_total", labels) or 0.0,
    )


def scrape(url: str, names: tuple[str, ...]) -> dict[str, float]:
    """Sums of the named series on a running app's /metrics."""
    from prometheus_client.parser import text_string_to_metric_families

    totals = dict.fromkeys(names, 0.0)
    for family in text_string_to_metric_families(httpx.get(f"{url}/metrics").text):
        for sample in family.samples:
            if sample.name in totals:
                totals[sample.name] += sample.value
    return totals


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
    cache_stats: dict[str, float] = {}
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
            if "REDIS_URL" in env:
                cache_stats = scrape(
                    f"http://127.0.0.1:{port}",
                    ("cache_hits_total", "cache_local_hits_total", "cache_misses_total"),
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
        paths = read_paths(
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
    if cache_stats:
        lookups = cache_stats["cache_hits_total"] + cache_stats["cache_misses_total"]
        print(
            f"phase-2 cache: {cache_stats['cache_hits_total'] / max(lookups, 1):.0%} of lookups "
            f"hit, {cache_stats['cache_local_hits_total'] / max(lookups, 1):.0%} in process "
            f"memory ({lookups:.0f} lookups; each write invalidates its owner's entries)"
        )
    print("\nread path (an owner's page of 50 items, then the owner), per read:")
    print(f"  {'':<34}{'median':>9}{'speed-up':>10}{'mean':>9}{'speed-up':>10}  cache hits")
    uncached = paths["no cache"]
    for name, label in READ_PATHS:
        r = paths[name]
        median, mean = r["seconds"], r["mean"]
        if name == "no cache":
            print(f"  {label:<34}{median * 1e6:6.0f} us{'':>10}{mean * 1e6:6.0f} us")
            continue
        line = (
            f"  {label:<34}{median * 1e6:6.0f} us"
            f"{'x' + format(uncached['seconds'] / median, '.2f'):>10}"
            f"{mean * 1e6:6.0f} us{'x' + format(uncached['mean'] / mean, '.2f'):>10}"
            f"  {r['hits']:.0%}"
        )
        if name == "local":
            line += f" ({r['local_hits']:.0%} in memory)"
        print(line)
    print("  target: a cached read at least x3 faster than the same read without the cache")
    return 0


if __name__ == "__main__":
    sys.exit(main())
