"""The pure parts of image building: what a build depends on, in which order, by which name.

A build is skipped when its inputs digest is unchanged, so the digest must change with
anything the builder reads (Dockerfile, arguments, a context file's content or mode, the
base image) and with nothing else (timestamps, files the .dockerignore leaves out).
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import pytest

from phaseshift.cli import main
from phaseshift.lab import images
from phaseshift.lab.binaries import REPO_ROOT
from phaseshift.lab.images import Image, ImageError, UnknownImage


@pytest.fixture(autouse=True)
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Staged contexts go under a temporary cache, never the user's."""
    root = tmp_path / "cache"
    monkeypatch.setenv("PHASESHIFT_CACHE", str(root))
    return root


def _image(tmp_path: Path, name: str = "web", base: str | None = None) -> Image:
    """An image of a test table, its Dockerfile and context files under tmp_path."""
    directory = tmp_path / "dockerfiles" / name
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "Dockerfile").write_text(
        "ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\nARG VERSION\nCOPY site.conf /etc/site.conf\n"
    )
    (directory / "site.conf").write_text("listen 80;\n")
    return Image(name, "1.0", base=base, dockerfile=directory / "Dockerfile")


def _digest(image: Image, base_id: str | None = "sha256-base") -> str:
    table = {image.name: image, "base": Image("base", "1")}
    return images.inputs(image, table, base_id, prepare=True).digest


def test_digest_is_stable_when_nothing_changes(tmp_path: Path) -> None:
    image = _image(tmp_path, base="base")
    first = _digest(image)
    site = tmp_path / "dockerfiles" / "web" / "site.conf"
    os.utime(site, (1, 1))  # a new timestamp alone is no change
    assert _digest(image) == first


def test_digest_changes_with_the_dockerfile(tmp_path: Path) -> None:
    image = _image(tmp_path, base="base")
    first = _digest(image)
    with image.dockerfile_path.open("a") as f:
        f.write("USER 65534\n")
    assert _digest(image) != first


def test_digest_changes_with_a_context_file_content_or_mode(tmp_path: Path) -> None:
    image = _image(tmp_path, base="base")
    site = tmp_path / "dockerfiles" / "web" / "site.conf"
    first = _digest(image)
    site.write_text("listen 8080;\n")
    second = _digest(image)
    site.chmod(0o755)
    third = _digest(image)
    (site.parent / "extra.txt").write_text("x")
    assert len({first, second, third, _digest(image)}) == 4


def test_digest_changes_with_the_base_image_and_the_version(tmp_path: Path) -> None:
    image = _image(tmp_path, base="base")
    first = _digest(image)
    assert _digest(image, base_id="sha256-rebuilt-base") != first
    assert _digest(replace(image, version="1.1")) != first


def test_extras_are_part_of_the_context(tmp_path: Path) -> None:
    jar = tmp_path / "broker.jar"
    jar.write_text("v1")
    image = replace(_image(tmp_path, base="base"), extras=lambda prepare: {"libs/broker.jar": jar})
    first = _digest(image)
    jar.write_text("v2")
    assert _digest(image) != first
    staged = images.stage(image, prepare=True)
    assert (staged / "libs" / "broker.jar").read_text() == "v2"


def test_files_left_out_by_dockerignore_do_not_count(tmp_path: Path) -> None:
    context = tmp_path / "repo"
    (context / "app").mkdir(parents=True)
    (context / "app" / "main.py").write_text("print('hi')\n")
    (context / ".dockerignore").write_text("*\n!app\n**/__pycache__\n")
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text("FROM scratch\nCOPY app/ /app/\n")
    image = Image("app", "1", dockerfile=dockerfile, context=context)
    first = _digest(image, base_id=None)
    (context / "notes.txt").write_text("not sent")
    (context / "app" / "__pycache__").mkdir()
    (context / "app" / "__pycache__" / "main.pyc").write_bytes(b"\0")
    assert _digest(image, base_id=None) == first
    (context / "app" / "main.py").write_text("print('bye')\n")
    assert _digest(image, base_id=None) != first


def test_repo_dockerignore_sends_only_what_the_images_copy() -> None:
    rules = images.ignore_rules((REPO_ROOT / ".dockerignore").read_text())
    kept = ["pyproject.toml", "README.md", "operator/phaseshift/cli.py", "sample_app/app.py"]
    dropped = [
        ".git/HEAD",
        ".venv/bin/python",
        "tests/unit/test_images.py",
        "tools/images/debian/Dockerfile",
        "results/demo.md",
        "operator/phaseshift/__pycache__/cli.cpython-311.pyc",
        "phaseshift.egg-info/PKG-INFO",
    ]
    assert [p for p in kept if images.is_ignored(p, rules)] == []
    assert [p for p in dropped if not images.is_ignored(p, rules)] == []


def test_the_sample_app_is_not_rebuilt_for_an_operator_change() -> None:
    image = images.image_set()["sample-app"]
    ignore = images.ignore_file(image.dockerfile_path, REPO_ROOT)
    assert ignore == REPO_ROOT / "sample_app" / "Dockerfile.dockerignore"
    rules = images.ignore_rules(ignore.read_text())
    assert not images.is_ignored("sample_app/app.py", rules)
    assert images.is_ignored("operator/phaseshift/cli.py", rules)
    assert images.is_ignored("sample_app/__pycache__/app.cpython-311.pyc", rules)


@pytest.mark.parametrize(
    ("pattern", "path", "ignored"),
    [
        ("*.md", "README.md", True),
        ("*.md", "docs/README.md", False),
        ("**/*.md", "docs/deep/README.md", True),
        ("docs", "docs/deep/README.md", True),
        ("/build", "build/x", True),
        ("ca?e", "cafe", True),
        ("[a-c]at", "bat", True),
        ("[!a-c]at", "bat", False),
    ],
)
def test_dockerignore_patterns(pattern: str, path: str, ignored: bool) -> None:
    assert images.is_ignored(path, images.ignore_rules(pattern)) is ignored


def test_only_declared_build_args_are_passed() -> None:
    table = {"base": Image("base", "12"), "app": Image("app", "2.0", base="base")}
    dockerfile = "ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\nRUN true\n"
    args = images.build_args(table["app"], table, dockerfile)
    assert args == {"BASE_IMAGE": "localhost/phaseshift/base:12"}
    assert images.build_args(table["app"], table, dockerfile + "ARG VERSION\n")["VERSION"] == "2.0"


def test_build_order_puts_bases_first_and_adds_them() -> None:
    table = {
        "debian": Image("debian", "12"),
        "python": Image("python", "3.11", base="debian"),
        "app": Image("app", "1", base="python"),
        "redis": Image("redis", "7", base="debian"),
    }
    assert images.build_order(["app"], table) == ["debian", "python", "app"]
    assert images.build_order(["redis", "app"], table) == ["debian", "python", "app", "redis"]
    assert images.build_order([], table) == ["debian", "python", "app", "redis"]


def test_build_order_refuses_unknown_names_and_cycles() -> None:
    table = {"a": Image("a", "1", base="b"), "b": Image("b", "1", base="a")}
    with pytest.raises(UnknownImage, match="'nope'"):
        images.build_order(["nope"], table)
    with pytest.raises(ImageError, match="built from each other"):
        images.build_order(["a"], table)


def test_the_image_set() -> None:
    table = images.image_set()
    order = images.build_order([], table)
    assert order[:2] == ["debian", "python"]
    for name, image in table.items():
        assert image.reference == f"localhost/phaseshift/{name}:{image.version}"
        assert image.dockerfile_path.is_file(), name
        assert image.base is None or order.index(image.base) < order.index(name)
    assert table["operator"].dockerfile_path == REPO_ROOT / "Dockerfile"
    assert table["sample-app"].context == REPO_ROOT


def test_loading_refuses_an_unknown_image(tmp_path: Path) -> None:
    with pytest.raises(UnknownImage, match="'nosuch'"):
        images.load_into_containerd(["pause", "nosuch"], tmp_path / "containerd.sock")


def test_cli_refuses_an_unknown_image(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["images", "build", "python", "nosuch"]) == 2
    assert main(["images", "list", "nosuch"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2
    assert all(line.startswith("phaseshift images: unknown image 'nosuch'") for line in err)


def test_cli_says_when_buildah_is_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    assert main(["images", "build", "debian"]) == 1
    assert capsys.readouterr().err.strip() == (
        "phaseshift images: no 'buildah' on PATH (apt-get install buildah)"
    )
