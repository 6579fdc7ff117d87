"""Finding the PostgreSQL server binaries the tests run, whatever the major version."""

from __future__ import annotations

from pathlib import Path

import pytest

from phaseshift.lab import binaries


def _server(directory: Path) -> Path:
    directory.mkdir(parents=True)
    for tool in ("initdb", "postgres"):
        (directory / tool).write_text("")
    return directory


def test_pg_bin_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PG_BIN", str(_server(tmp_path / "pg17" / "bin")))
    assert binaries.postgres_bin_dir() == tmp_path / "pg17" / "bin"


def test_without_server_binaries_the_error_says_how_to_get_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PG_BIN", str(tmp_path))
    monkeypatch.setenv("PATH", str(tmp_path))  # no pg_config, no initdb
    with pytest.raises(binaries.BinariesMissing, match="set PG_BIN"):
        binaries.postgres_bin_dir(debian=tmp_path / "no-such-dir")


def test_the_newest_debian_major_is_taken(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PG_BIN", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    for major in ("9", "15", "17"):
        _server(tmp_path / "lib" / major / "bin")
    assert binaries.postgres_bin_dir(debian=tmp_path / "lib") == tmp_path / "lib" / "17" / "bin"
