"""`python -m sample_app migrate`: SQLite -> PostgreSQL, verified, idempotent, resumable."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
import uuid
from pathlib import Path

import psycopg
import pytest
from conftest import PgDb
from sampleapp_helpers import client

from phaseshift.lab.wait import wait_for
from sample_app.migrate import migrate
from sample_app.storage.sqlite import SqliteStore

USERS = 2_000
ITEMS = 98_000  # with the users: 100k rows


def run_migrate(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sample_app", "migrate", *args],
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture(scope="module")
def big_sqlite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("migrate") / "phase1.db"
    store = SqliteStore(f"sqlite:///{path}")
    store.ensure_schema()
    store.close()
    users = [
        (uuid.uuid4().hex, f"user {i}", f"u{i}@example.com", 1_700_000_000_000 + i)
        for i in range(USERS)
    ]
    items = [
        (uuid.uuid4().hex, users[i % USERS][0], f"item {i}", i * 7 % 100_000, 1_700_000_000_000 + i)
        for i in range(ITEMS)
    ]
    with sqlite3.connect(path) as db:
        db.executemany("INSERT INTO users VALUES (?, ?, ?, ?)", users)
        db.executemany("INSERT INTO items VALUES (?, ?, ?, ?, ?)", items)
    return path


def test_migrates_100k_rows_resumably_and_verifies(big_sqlite: Path, pg_db: PgDb) -> None:
    source = f"sqlite:///{big_sqlite}"
    # An interrupted run: three batches, then stop (a killed Job looks the same).
    partial = run_migrate(
        "--from", source, "--to", pg_db.primary_url, "--batch-size", "10000", "--max-batches", "3"
    )
    assert partial.returncode == 3, partial.stdout + partial.stderr
    with psycopg.connect(pg_db.primary_url) as db:
        copied = db.execute("SELECT count(*) FROM users").fetchone()[0]  # type: ignore[index]
        copied += db.execute("SELECT count(*) FROM items").fetchone()[0]  # type: ignore[index]
    assert 0 < copied < USERS + ITEMS

    done = run_migrate("--from", source, "--to", pg_db.primary_url, "--batch-size", "10000")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "verified" in done.stdout and "MISMATCH" not in done.stdout
    with psycopg.connect(pg_db.primary_url) as db:
        assert db.execute("SELECT count(*) FROM users").fetchone() == (USERS,)
        assert db.execute("SELECT count(*) FROM items").fetchone() == (ITEMS,)
        assert db.execute("SELECT sum(item_count) FROM user_stats").fetchone() == (ITEMS,)
        # The resumed run did not copy the first batches again.
        progress = db.execute("SELECT sum(copied) FROM phaseshift_migration").fetchone()
        assert progress == (USERS + ITEMS,)

    again = run_migrate("--from", source, "--to", pg_db.primary_url)
    assert again.returncode == 0 and "users: 0 rows copied" in again.stdout

    # The phase-2 service reads the migrated data.
    with sqlite3.connect(big_sqlite) as src:
        user_id = src.execute("SELECT id FROM users LIMIT 1").fetchone()[0]
    with client(DATABASE_URL=pg_db.primary_url) as c:
        assert c.get(f"/users/{user_id}").json()["item_count"] == ITEMS // USERS


def test_verification_catches_a_changed_row_and_never_overwrites(
    tmp_path: Path, pg_db: PgDb
) -> None:
    path = tmp_path / "small.db"
    with client(DATABASE_URL=f"sqlite:///{path}") as c:
        owner = c.post("/users", json={"name": "a", "email": "a@b.co"}).json()["id"]
        c.post("/items", json={"owner": owner, "name": "orig"})
    source = f"sqlite:///{path}"
    assert run_migrate("--from", source, "--to", pg_db.primary_url).returncode == 0
    with psycopg.connect(pg_db.primary_url, autocommit=True) as db:
        db.execute("UPDATE items SET name = 'changed in postgres'")
        # A row written to PostgreSQL after the switch is allowed to exist.
        db.execute("INSERT INTO users VALUES (%s, 'new', 'n@b.co', 1)", [uuid.uuid4().hex])
    check = run_migrate("--from", source, "--to", pg_db.primary_url)
    assert check.returncode == 1 and "MISMATCH" in check.stdout
    with psycopg.connect(pg_db.primary_url) as db:
        assert db.execute("SELECT name FROM items").fetchone() == ("changed in postgres",)
        assert db.execute("SELECT count(*) FROM users").fetchone() == (2,)


def test_rows_added_behind_the_cursor_are_swept_up(tmp_path: Path, pg_db: PgDb) -> None:
    path = tmp_path / "live.db"
    with client(DATABASE_URL=f"sqlite:///{path}") as c:
        for i in range(20):
            c.post("/users", json={"name": "a", "email": f"a{i}@b.co"})
    source = f"sqlite:///{path}"
    assert run_migrate("--from", source, "--to", pg_db.primary_url).returncode == 0
    with client(DATABASE_URL=f"sqlite:///{path}") as c:
        for i in range(20):
            c.post("/users", json={"name": "b", "email": f"b{i}@b.co"})
    rerun = run_migrate("--from", source, "--to", pg_db.primary_url)
    assert rerun.returncode == 0, rerun.stdout
    with psycopg.connect(pg_db.primary_url) as db:
        assert db.execute("SELECT count(*) FROM users").fetchone() == (40,)


@pytest.mark.parametrize(
    "args",
    [
        ["--from", "sqlite:////nonexistent/x.db", "--to", "postgresql://a@127.0.0.1:1/x"],
        ["--from", "sqlite:///x.db", "--to", "mysql://x"],
    ],
)
def test_bad_arguments_fail_cleanly(args: list[str]) -> None:
    result = run_migrate(*args)
    assert result.returncode in (2, 4)
    assert "Traceback" not in result.stderr


def test_a_frozen_migration_keeps_every_acknowledged_write_and_reads_go_on(
    tmp_path: Path, pg_db: PgDb
) -> None:
    """The app writes without pause while the migration runs with --freeze-source: every
    write it acknowledged is in PostgreSQL afterwards, the writes after the freeze are
    refused with 503 and Retry-After, and reads never fail."""
    path = tmp_path / "busy.db"
    source = f"sqlite:///{path}"
    acknowledged: list[str] = []
    refused: list[tuple[int, str | None, str]] = []
    other: list[tuple[int, str]] = []
    stop = threading.Event()
    writing = threading.Event()

    def write_forever() -> None:
        with client(DATABASE_URL=source) as c:
            while not stop.is_set():
                r = c.post("/users", json={"name": "w", "email": f"{uuid.uuid4().hex}@b.co"})
                if r.status_code == 201:
                    acknowledged.append(r.json()["id"])
                    if len(acknowledged) >= 50:
                        writing.set()
                elif r.status_code == 503:
                    refused.append((r.status_code, r.headers.get("retry-after"), r.text))
                else:
                    other.append((r.status_code, r.text))

    writer = threading.Thread(target=write_forever, daemon=True)
    writer.start()
    assert writing.wait(30), "the app took no writes"
    reports = migrate(source, pg_db.primary_url, batch_size=20, freeze=True, log=lambda _: None)
    assert all(r.ok for r in reports), reports
    with client(DATABASE_URL=source) as c:
        # Frozen: reads are served, writes refused.
        assert c.get(f"/users/{acknowledged[0]}").status_code == 200
        late = c.post("/users", json={"name": "late", "email": "late@b.co"})
        assert late.status_code == 503 and late.headers["retry-after"] == "5"
        assert late.json()["error"] == "writes_frozen"
    wait_for(lambda: len(refused) >= 3, timeout=30, what="the writer to meet the freeze")
    stop.set()
    writer.join(30)
    assert not other, other[:3]
    with psycopg.connect(pg_db.primary_url) as db:
        copied = {row[0] for row in db.execute("SELECT id FROM users")}
    lost = [i for i in acknowledged if i not in copied]
    assert not lost, f"{len(lost)} of {len(acknowledged)} acknowledged writes are missing"

    # An abandoned transition opens the source to writes again.
    assert run_migrate("--thaw", "--from", source).returncode == 0
    with client(DATABASE_URL=source) as c:
        assert c.post("/users", json={"name": "again", "email": "x@b.co"}).status_code == 201
