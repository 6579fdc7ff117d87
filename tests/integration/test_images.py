"""Images built for real with buildah, and loaded into a real, throwaway containerd.

Builds the pause image (and the Debian base it compiles on: debootstrap, a minute or two
on a cold cache; reused afterwards from the same cache as `phaseshift images build`).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from phaseshift.lab import images
from phaseshift.lab.images import Image, ImageError

TOOLS = ("buildah", "debootstrap", "containerd", "ctr", "runc", "go")
_absent = [tool for tool in TOOLS if shutil.which(tool) is None]
if _absent or os.geteuid() != 0:
    reason = f"not installed: {', '.join(_absent)}" if _absent else "buildah here needs root"
    print(f"tests/integration/test_images.py skipped: {reason}")
    pytest.skip(reason, allow_module_level=True)


def _ctr(address: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["ctr", "--address", str(address), "--namespace", "k8s.io", *args],
        capture_output=True,
        text=True,
        check=True,
    )


@pytest.fixture
def containerd() -> Iterator[Path]:
    """A containerd of its own (no CRI), everything under one temporary directory; its
    socket's path is short, as a unix socket's must be."""
    root = Path(tempfile.mkdtemp(prefix="ps-ctr-"))
    socket = root / "containerd.sock"
    config = root / "config.toml"
    config.write_text(
        "version = 2\n"
        f'root = "{root}/root"\n'
        f'state = "{root}/state"\n'
        'disabled_plugins = ["io.containerd.grpc.v1.cri"]\n'
        f'[grpc]\n  address = "{socket}"\n'
        f'[ttrpc]\n  address = "{socket}.ttrpc"\n'
        f'[debug]\n  address = "{root}/debug.sock"\n'
        f'[plugins."io.containerd.internal.v1.opt"]\n  path = "{root}/opt"\n'
    )
    with (root / "containerd.log").open("w") as log:
        process = subprocess.Popen(
            ["containerd", "--config", str(config)], stdout=log, stderr=subprocess.STDOUT
        )
    try:
        for _ in range(100):
            if (
                subprocess.run(
                    ["ctr", "--address", str(socket), "version"], capture_output=True
                ).returncode
                == 0
            ):
                break
            if process.poll() is not None:
                pytest.fail(f"containerd exited: {(root / 'containerd.log').read_text()[-2000:]}")
            subprocess.run(["sleep", "0.1"], check=True)
        else:
            pytest.fail("containerd's socket did not answer in 10 s")
        yield socket
    finally:
        process.terminate()
        process.wait(timeout=30)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def probe(tmp_path: Path) -> Iterator[tuple[dict[str, Image], Path]]:
    """A one-file image on the Debian base, its tag removed afterwards."""
    directory = tmp_path / "probe"
    directory.mkdir()
    (directory / "Dockerfile").write_text(
        "ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\nCOPY note.txt /note.txt\n"
    )
    note = directory / "note.txt"
    note.write_text("first\n")
    table = {
        "debian": images.image_set()["debian"],
        "test-probe": Image("test-probe", "1", base="debian", dockerfile=directory / "Dockerfile"),
    }
    yield table, note
    subprocess.run(["buildah", "rmi", table["test-probe"].reference], capture_output=True)


def test_a_second_build_is_skipped() -> None:
    images.build(["pause"])
    again = images.build(["pause"])
    assert [(o.name, o.built) for o in again] == [("debian", False), ("pause", False)]
    built = images.inspect(images.reference("pause"))
    assert built is not None and built.id == again[-1].id and built.inputs


def test_a_changed_input_is_rebuilt(probe: tuple[dict[str, Image], Path]) -> None:
    table, note = probe
    first = images.build(["test-probe"], table=table)[-1]
    assert images.build(["test-probe"], table=table)[-1].built is False
    note.write_text("second\n")
    second = images.build(["test-probe"], table=table)[-1]
    assert second.built and second.id != first.id
    assert images.statuses(["test-probe"], table=table)[0].up_to_date is True


def test_a_failed_build_says_which_and_why(tmp_path: Path) -> None:
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text("FROM scratch\nRUN false\n")
    table = {"test-broken": Image("test-broken", "1", dockerfile=dockerfile)}
    with pytest.raises(ImageError, match=r"building test-broken failed \(buildah exit \d+\)"):
        images.build(["test-broken"], table=table)
    assert images.inspect(table["test-broken"].reference) is None


def test_load_into_containerd(containerd: Path) -> None:
    images.build(["pause"])
    ref = images.reference("pause")
    assert images.load_into_containerd(["pause"], containerd) == [ref]
    assert ref in _ctr(containerd, "images", "list", "--quiet").stdout.split()
    assert images.load_into_containerd(["pause"], containerd) == []
    ran = _ctr(containerd, "run", "--rm", ref, "test-pause", "/pause", "-v")
    assert "pause.c v3.10.1" in ran.stdout
