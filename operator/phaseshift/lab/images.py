"""The container images a real node runs, built here with buildah: no registry is needed.

No container registry is reachable from this machine, so nothing is pulled. debootstrap
makes a Debian bookworm root filesystem, which becomes the base image; every other image
is built on it by `buildah bud` from a Dockerfile kept in the repository
(tools/images/<name>/Dockerfile, the operator's ./Dockerfile, sample_app/Dockerfile).
Each is tagged localhost/phaseshift/<name>:<version>, never under an official image's
name, and `load_into_containerd` hands them to a node's containerd.

A build is skipped when nothing it is made from has changed: a digest of its Dockerfile,
its build arguments, every file of its build context and the ID of its base image is
stored on the image as the label dev.phaseshift.inputs and compared before building.
Build state (the root filesystem, staged contexts, logs) lives under
binaries.cache_root()/images, never in the repository.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import posixpath
import re
import shutil
import subprocess
import sys
import time
import tomllib
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from phaseshift.lab import binaries
from phaseshift.lab.binaries import REPO_ROOT, TOOLS_DIR

REGISTRY = "localhost/phaseshift"
INPUTS_LABEL = "dev.phaseshift.inputs"
DOCKERFILES = TOOLS_DIR / "images"
DEBIAN_SUITE = "bookworm"
# The catalog's default (cassandra:5.0.2): Apache publishes cassandra-all to Maven Central.
CASSANDRA_VERSION = "5.0.2"
DEBIAN_MIRROR = "http://deb.debian.org/debian"
# Registries are reached through a proxy whose CA only the host's bundle has: the base
# image carries the bundle, and the extra CAs so that update-ca-certificates keeps them.
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
HOST_EXTRA_CAS = Path("/usr/local/share/ca-certificates")
# What debootstrap leaves that an image does not need (dpkg.cfg keeps later packages
# from adding it back); licences and locale.alias stay, as in Debian's slim images.
PRUNED_DIRS = (
    "usr/share/doc",
    "usr/share/man",
    "usr/share/groff",
    "usr/share/info",
    "usr/share/lintian",
    "usr/share/linda",
    "usr/share/locale",
    "var/cache/apt",
    "var/lib/apt/lists",
)
KEPT_FILES = re.compile(r"usr/share/doc/[^/]+/copyright|usr/share/locale/locale\.alias")


class ImageError(RuntimeError):
    """An image cannot be built, listed or loaded; the message says why in one line."""


class UnknownImage(ImageError):
    """A name that is not one of the set's images."""


class InputsMissing(ImageError):
    """Something an image is built from is not made yet (and was not asked to be)."""


# Files from outside the repository staged into an image's context: path in the context
# -> file or directory. Called with prepare=True by a build, which may make them (run
# debootstrap, Maven, Go); with prepare=False by `images list`, which must not.
Extras = Callable[[bool], dict[str, Path]]


def _no_extras(prepare: bool) -> dict[str, Path]:
    return {}


@dataclass(frozen=True)
class Image:
    """One image of the set: its name and version, and what it is built from."""

    name: str
    version: str
    # The image of the set it is built FROM (passed as the build argument base_arg).
    base: str | None = None
    base_arg: str = "BASE_IMAGE"
    # None: tools/images/<name>/Dockerfile, built in a context staged from its directory.
    dockerfile: Path | None = None
    # The build context when it is not staged: the repository root for the operator's and
    # the sample app's Dockerfiles, which users build with docker from there.
    context: Path | None = None
    extras: Extras = field(default=_no_extras, compare=False)

    @property
    def reference(self) -> str:
        return f"{REGISTRY}/{self.name}:{self.version}"

    @property
    def dockerfile_path(self) -> Path:
        return self.dockerfile or DOCKERFILES / self.name / "Dockerfile"


@dataclass(frozen=True)
class Built:
    """An image in buildah's storage: its ID (the digest of its config) and input label."""

    id: str
    inputs: str | None


@dataclass(frozen=True)
class Outcome:
    """What a build did for one image."""

    name: str
    reference: str
    built: bool  # False: it was up to date
    seconds: float
    id: str


@dataclass(frozen=True)
class Status:
    """One line of `phaseshift images list`."""

    name: str
    reference: str
    built: bool
    up_to_date: bool | None  # None: cannot tell (the reason is in note)
    note: str = ""


# The set --------------------------------------------------------------------------------


def images_dir() -> Path:
    return binaries.cache_root() / "images"


def project_version() -> str:
    """The operator's and the sample app's version: pyproject.toml's."""
    data = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    version: str = data["project"]["version"]
    return version


@cache
def image_set() -> dict[str, Image]:
    """Every image the project needs, in the order `images list` shows and builds them.
    Versions are the packaged upstream versions; the Dockerfiles pin their packages to
    them through the VERSION build argument, so apt fails rather than tag a surprise."""
    pinned = binaries.pinned_versions()
    table = [
        Image("debian", DEBIAN_SUITE, extras=_debian_extras),
        Image("python", "3.11", base="debian"),
        _python_app("sample-app", REPO_ROOT / "sample_app" / "Dockerfile"),
        _python_app("operator", REPO_ROOT / "Dockerfile"),
        Image("postgres", "15", base="debian"),
        Image("postgres-exporter", "0.11.1", base="debian"),
        Image("redis", "7.0", base="debian"),
        Image("redis-exporter", "1.45.0", base="debian"),
        Image("rabbitmq", "3.10", base="debian"),
        Image("jre", "17", base="debian"),
        Image("kafka", pinned["KAFKA_VERSION"], base="jre", extras=_kafka_extras),
        Image("nginx", "1.22", base="debian"),
        Image("prometheus", pinned["PROMETHEUS_VERSION"], base="debian", extras=_prometheus_extras),
        Image("coredns", pinned["COREDNS_VERSION"], base="debian", extras=_node_extras("coredns")),
        Image(
            "metrics-server",
            pinned["METRICS_SERVER_VERSION"],
            extras=_node_extras("metrics-server"),
        ),
        # pause.c of the pinned Kubernetes release, whose build/pause/Makefile tags it 3.10.1.
        Image("pause", "3.10.1", base="debian", extras=_pause_extras),
        Image("cassandra", CASSANDRA_VERSION, base="jre", extras=_maven_jars("cassandra")),
    ]
    return {image.name: image for image in table}


def _python_app(name: str, dockerfile: Path) -> Image:
    """An image of the project's own Python code: its Dockerfile is the one users build
    with docker from the repository root (FROM ${PYTHON_IMAGE}, python:3.11-slim by
    default); here it is built FROM the python image of the set."""
    return Image(
        name,
        project_version(),
        base="python",
        base_arg="PYTHON_IMAGE",
        dockerfile=dockerfile,
        context=REPO_ROOT,
    )


def reference(name: str) -> str:
    """The tag of one image of the set, e.g. for a pod spec or containerd's sandbox_image."""
    return _lookup(name, image_set()).reference


def _lookup(name: str, table: Mapping[str, Image]) -> Image:
    if name not in table:
        raise UnknownImage(f"unknown image {name!r} (known: {', '.join(table)})")
    return table[name]


def build_order(names: Sequence[str], table: Mapping[str, Image]) -> list[str]:
    """The images to build for `names` (all when empty), each after the image it is built
    FROM, which is added when not asked for: a child's inputs include its base's ID."""
    for name in names:
        _lookup(name, table)
    wanted = list(names) or list(table)
    order: list[str] = []

    def visit(name: str, chain: tuple[str, ...]) -> None:
        if name in order:
            return
        if name in chain:
            raise ImageError(f"images built from each other: {' -> '.join((*chain, name))}")
        base = _lookup(name, table).base
        if base is not None:
            if base not in table:
                raise ImageError(f"image {name!r} is built from {base!r}, which is not in the set")
            visit(base, (*chain, name))
        order.append(name)

    for name in table:
        if name in wanted:
            visit(name, ())
    return order


# Inputs ---------------------------------------------------------------------------------


def declared_args(dockerfile: str) -> set[str]:
    """The build arguments a Dockerfile declares (ARG lines): only those are passed, so
    buildah never warns of an argument nothing consumes."""
    return set(re.findall(r"(?im)^\s*ARG\s+([A-Za-z_][A-Za-z0-9_]*)", dockerfile))


def build_args(image: Image, table: Mapping[str, Image], dockerfile: str) -> dict[str, str]:
    offered = {"VERSION": image.version}
    if image.base is not None:
        offered[image.base_arg] = _lookup(image.base, table).reference
    declared = declared_args(dockerfile)
    return {key: value for key, value in sorted(offered.items()) if key in declared}


@dataclass(frozen=True)
class IgnoreRule:
    """One line of a .dockerignore: a pattern, and whether it re-includes (`!`)."""

    text: str
    negate: bool
    regex: re.Pattern[str]


def ignore_rules(dockerignore: str) -> list[IgnoreRule]:
    """Parses a .dockerignore as Docker and buildah read it: patterns relative to the
    context root, `*` and `?` within one path segment, `**` across segments, `!` to
    re-include, the last matching line deciding."""
    rules = []
    for raw in dockerignore.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        text = posixpath.normpath(line[1:].strip() if negate else line).lstrip("/")
        if text in ("", "."):
            continue
        rules.append(IgnoreRule(text, negate, re.compile(_pattern_regex(text))))
    return rules


def _pattern_regex(pattern: str) -> str:
    out: list[str] = []
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
            continue
        if pattern.startswith("**", i):
            out.append(".*")
            i += 2
            continue
        if c == "*":
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "\\" and i + 1 < len(pattern):
            i += 1
            out.append(re.escape(pattern[i]))
        elif c == "[" and "]" in pattern[i + 1 :]:
            end = pattern.index("]", i + 1)
            body = pattern[i + 1 : end]
            out.append("[" + ("^" + body[1:] if body.startswith("!") else body) + "]")
            i = end
        else:
            out.append(re.escape(c))
        i += 1
    return "".join(out)


def is_ignored(path: str, rules: Sequence[IgnoreRule]) -> bool:
    """Whether a context path (posix, relative) stays out of the build: a pattern matches
    a path or any directory above it."""
    parts = path.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    ignored = False
    for rule in rules:
        if any(rule.regex.fullmatch(c) for c in candidates):
            ignored = not rule.negate
    return ignored


def _may_reinclude(directory: str, rules: Sequence[IgnoreRule]) -> bool:
    """Whether a `!` rule could bring back something under an ignored directory, which
    must then be walked (otherwise it is skipped whole: .git, .venv)."""
    for rule in rules:
        if not rule.negate:
            continue
        literal = re.split(r"[*?\[\\]", rule.text, maxsplit=1)[0]
        if not literal or literal.startswith(directory + "/") or directory.startswith(literal):
            return True
    return False


def context_files(root: Path, rules: Sequence[IgnoreRule] = ()) -> list[str]:
    """Every file (or symlink) of a build context that the builder would send, sorted."""
    found: list[str] = []

    def walk(directory: Path, prefix: str) -> None:
        for entry in sorted(os.scandir(directory), key=lambda e: e.name):
            path = f"{prefix}{entry.name}"
            if entry.is_dir(follow_symlinks=False):
                if not is_ignored(path, rules) or _may_reinclude(path, rules):
                    walk(Path(entry.path), f"{path}/")
            elif not is_ignored(path, rules):
                found.append(path)

    walk(root, "")
    return found


def _file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def inputs_digest(
    image: Image,
    dockerfile: str,
    args: Mapping[str, str],
    context: Path,
    files: Sequence[str],
    base_id: str | None,
) -> str:
    """The digest of everything a build reads: Dockerfile, arguments, the content and
    permissions of each context file, and the base image's ID (a rebuilt base makes its
    children stale). Equal digests mean the build would make the same image."""
    digest = hashlib.sha256()

    def put(*parts: str) -> None:
        for part in parts:
            data = part.encode()
            digest.update(len(data).to_bytes(8, "big") + data)

    put("phaseshift-image-inputs/1", image.reference, dockerfile, base_id or "")
    for key, value in sorted(args.items()):
        put("arg", key, value)
    for name in files:
        path = context / name
        info = path.lstat()
        if path.is_symlink():
            put("symlink", name, os.readlink(path))
        else:
            put("file", name, oct(info.st_mode & 0o7777), _file_digest(path))
    return digest.hexdigest()


# Extras: what images are made from beyond the repository --------------------------------


def _debian_extras(prepare: bool) -> dict[str, Path]:
    if not HOST_CA_BUNDLE.is_file():
        raise ImageError(f"no CA bundle at {HOST_CA_BUNDLE} (apt-get install ca-certificates)")
    extra = HOST_EXTRA_CAS if HOST_EXTRA_CAS.is_dir() else _empty_dir()
    return {
        "rootfs.tar": rootfs_tar(prepare),
        "host-ca/ca-certificates.crt": HOST_CA_BUNDLE,
        "host-ca/extra": extra,
    }


def _empty_dir() -> Path:
    path = images_dir() / "empty"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _kafka_extras(prepare: bool) -> dict[str, Path]:
    home = binaries.ensure_kafka() if prepare else binaries.kafka_dir()
    if not (home / "lib").is_dir():
        raise InputsMissing(f"Kafka's jars are not resolved yet ({home}; tools/kafka.sh)")
    return {"libs": home / "lib"}


def _maven_jars(name: str) -> Extras:
    """The jars tools/images/<name>/pom.xml resolves (its <name>.version set to the
    image's version), staged as lib/."""

    def extras(prepare: bool) -> dict[str, Path]:
        return {"lib": resolve_jars(name, image_set()[name].version, prepare)}

    return extras


def resolve_jars(name: str, version: str, prepare: bool) -> Path:
    """Resolves tools/images/<name>/pom.xml from Maven Central into the cache once per
    version and pom (its sha256 is kept beside lib/, as tools/kafka.sh does)."""
    pom = DOCKERFILES / name / "pom.xml"
    home = binaries.cache_root() / f"{name}-{version}"
    stamp = home / "pom.sha256"
    wanted = hashlib.sha256(pom.read_bytes()).hexdigest()
    if stamp.exists() and stamp.read_text().strip() == wanted:
        return home / "lib"
    if not prepare:
        raise InputsMissing(f"{name} {version}'s jars are not resolved yet ({home})")
    mvn = _need("mvn", "maven")
    partial = home.with_name(f"{home.name}.tmp")
    _remove_tree(partial)
    _say(f"resolving {name} {version} from Maven Central...")
    _run(
        [
            mvn,
            "-q",
            "-B",
            "-f",
            str(pom),
            f"-D{name}.version={version}",
            "dependency:copy-dependencies",
            "-DincludeScope=runtime",
            f"-DoutputDirectory={partial / 'lib'}",
        ],
        f"resolving {name} {version} with Maven",
    )
    (partial / "pom.sha256").write_text(wanted + "\n")
    _remove_tree(home)
    partial.rename(home)
    return home / "lib"


def _node_extras(binary: str) -> Extras:
    def extras(prepare: bool) -> dict[str, Path]:
        directory = binaries.ensure_node_built() if prepare else binaries.node_bin_dir()
        path = directory / binary
        if not path.is_file():
            raise InputsMissing(f"{binary} is not built yet ({path}; tools/build.sh node)")
        return {binary: path}

    return extras


def _prometheus_extras(prepare: bool) -> dict[str, Path]:
    directory = binaries.ensure_prometheus_built() if prepare else binaries.prometheus_bin_dir()
    path = directory / "prometheus"
    if not path.is_file():
        raise InputsMissing(f"prometheus is not built yet ({path}; tools/build.sh prometheus)")
    return {"prometheus": path}


def _pause_extras(prepare: bool) -> dict[str, Path]:
    """pause.c from the pinned Kubernetes release in the Go module cache (downloaded by a
    build when absent; never by `images list`)."""
    version = binaries.pinned_versions()["KUBERNETES_VERSION"]
    go = shutil.which("go")
    if go is None:
        raise ImageError("no 'go' on PATH: pause.c comes from the Go module k8s.io/kubernetes")
    env = {**os.environ, "GOFLAGS": "-mod=mod", "GOTOOLCHAIN": "local"}
    if not prepare:
        env["GOPROXY"] = "off"
    images_dir().mkdir(parents=True, exist_ok=True)
    result = subprocess.run(
        [go, "mod", "download", "-json", f"k8s.io/kubernetes@{version}"],
        cwd=images_dir(),  # outside any module: the download needs no go.mod's toolchain
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    source = None
    if result.returncode == 0:
        source = Path(json.loads(result.stdout)["Dir"]) / "build" / "pause" / "linux" / "pause.c"
    if source is None or not source.is_file():
        error = InputsMissing if not prepare else ImageError
        raise error(f"pause.c of k8s.io/kubernetes@{version} is not in the Go module cache")
    return {"pause.c": source}


def rootfs_tar(prepare: bool) -> Path:
    """The Debian root filesystem as a tar, made once by debootstrap (about a minute)."""
    tar = images_dir() / "rootfs" / f"debian-{DEBIAN_SUITE}.tar"
    if tar.exists():
        return tar
    if not prepare:
        raise InputsMissing(f"the Debian root filesystem is not made yet ({tar})")
    debootstrap = _need("debootstrap", "debootstrap")
    root = tar.parent / "build"
    _remove_tree(root)
    root.parent.mkdir(parents=True, exist_ok=True)
    log = _log_path("debootstrap")
    _say(f"making a Debian {DEBIAN_SUITE} root filesystem with debootstrap...")
    with log.open("w") as out:
        result = subprocess.run(
            [debootstrap, "--variant=minbase", DEBIAN_SUITE, str(root), DEBIAN_MIRROR],
            stdout=out,
            stderr=subprocess.STDOUT,
            check=False,
        )
    if result.returncode != 0:
        raise ImageError(
            f"debootstrap failed (exit {result.returncode}): {_last_error(log)}; log: {log}"
        )
    _prune_rootfs(root)
    partial = tar.with_suffix(".tar.tmp")
    subprocess.run(
        ["tar", "-C", str(root), "--numeric-owner", "--xattrs", "-cf", str(partial), "."],
        check=True,
    )
    partial.rename(tar)
    _remove_tree(root)
    return tar


def _prune_rootfs(root: Path) -> None:
    """Leaves out what an image must not carry: documentation, apt's caches, the host's
    name and resolver, debootstrap's sources.list (the image's are in debian.sources)."""
    for top in PRUNED_DIRS:
        for dirpath, _, filenames in os.walk(root / top):
            for filename in filenames:
                path = Path(dirpath) / filename
                if not KEPT_FILES.fullmatch(path.relative_to(root).as_posix()):
                    path.unlink()
    for name in ("etc/apt/sources.list", "var/log/bootstrap.log"):
        (root / name).unlink(missing_ok=True)
    for name in ("etc/hostname", "etc/resolv.conf"):
        (root / name).write_text("")
    for directory in ("dev", "proc", "sys"):
        for child in (root / directory).iterdir():
            _remove_tree(child)


# Building ------------------------------------------------------------------------------


def stage(image: Image, prepare: bool) -> Path:
    """The image's build context: the repository root for the operator and the sample app,
    otherwise a small directory under the cache holding its tools/images/<name>/ files and
    extras (hard links where possible), made afresh each time so it holds nothing else."""
    if image.context is not None:
        return image.context
    extras = image.extras(prepare)
    context = images_dir() / "contexts" / image.name
    _remove_tree(context)
    shutil.copytree(image.dockerfile_path.parent, context, copy_function=_link_or_copy)
    for name, source in extras.items():
        target = context / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, target, copy_function=_link_or_copy)
        else:
            _link_or_copy(source, target)
    return context


def _link_or_copy(source: str | Path, target: str | Path) -> None:
    """Stages a file: large ones (the root filesystem, jars) as hard links, which cost
    nothing; small ones as copies, so no staged file shares an inode with the host's."""
    if os.path.getsize(source) >= 1 << 20:
        try:
            os.link(source, target)
            return
        except OSError:
            pass
    shutil.copy2(source, target)


@dataclass(frozen=True)
class Inputs:
    """What one build reads, staged: its context, build arguments and their digest."""

    context: Path
    args: dict[str, str]
    digest: str


def inputs(
    image: Image, table: Mapping[str, Image], base_id: str | None, *, prepare: bool
) -> Inputs:
    """Stages an image's context and digests its inputs as they are now."""
    dockerfile = image.dockerfile_path.read_text()
    context = stage(image, prepare)
    ignore = ignore_file(image.dockerfile_path, context)
    rules = ignore_rules(ignore.read_text()) if ignore is not None else []
    files = context_files(context, rules)
    args = build_args(image, table, dockerfile)
    return Inputs(context, args, inputs_digest(image, dockerfile, args, context, files, base_id))


def ignore_file(dockerfile: Path, context: Path) -> Path | None:
    """The .dockerignore a build reads: <Dockerfile>.dockerignore beside the Dockerfile
    when there is one (buildah and BuildKit prefer it), else the context root's."""
    for path in (
        dockerfile.with_name(f"{dockerfile.name}.dockerignore"),
        context / ".dockerignore",
    ):
        if path.is_file():
            return path
    return None


def inspect(reference: str) -> Built | None:
    """The image buildah holds under this reference, or None."""
    result = subprocess.run(
        [_need("buildah", "buildah"), "inspect", "--type", "image", reference],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        return None
    data = json.loads(result.stdout)
    labels = (data.get("OCIv1", {}).get("config", {}) or {}).get("Labels") or {}
    return Built(id=data["FromImageID"], inputs=labels.get(INPUTS_LABEL))


def build(
    names: Sequence[str] = (),
    *,
    force: bool = False,
    table: Mapping[str, Image] | None = None,
) -> list[Outcome]:
    """Builds the named images (all when none), with the images they are built from
    first. An image whose stored inputs digest matches is not rebuilt unless force is
    set, which applies to the named images only (their bases are still reused)."""
    table = table if table is not None else image_set()
    order = build_order(names, table)
    forced = set(names or table) if force else set()
    _need("buildah", "buildah")
    outcomes: list[Outcome] = []
    ids: dict[str, str] = {}
    with _lock():
        for name in order:
            image = table[name]
            base_id = ids[image.base] if image.base is not None else None
            outcome = _build_one(image, table, base_id, force=name in forced)
            ids[name] = outcome.id
            outcomes.append(outcome)
    return outcomes


def bud_command(image: Image, staged: Inputs) -> list[str]:
    """`buildah bud` for one image: chroot isolation with the host's network (RUN steps
    fetch packages; no user namespace or CNI needed), never pulling (FROM names an image
    of the set or scratch), the inputs digest as a label."""
    return [
        "buildah",
        "bud",
        "--isolation=chroot",
        "--network=host",
        "--pull=never",
        f"--file={image.dockerfile_path}",
        f"--tag={image.reference}",
        f"--label={INPUTS_LABEL}={staged.digest}",
        *(f"--build-arg={key}={value}" for key, value in staged.args.items()),
        str(staged.context),
    ]


def _build_one(
    image: Image, table: Mapping[str, Image], base_id: str | None, *, force: bool
) -> Outcome:
    start = time.monotonic()
    staged = inputs(image, table, base_id, prepare=True)
    existing = inspect(image.reference)
    if existing is not None and existing.inputs == staged.digest and not force:
        return Outcome(image.name, image.reference, False, time.monotonic() - start, existing.id)
    _say(f"building {image.name} ({image.reference})...")
    log = _log_path(image.name)
    with log.open("w") as out:
        result = subprocess.run(
            bud_command(image, staged), stdout=out, stderr=subprocess.STDOUT, check=False
        )
    built = inspect(image.reference)
    if result.returncode != 0 or built is None or built.inputs != staged.digest:
        raise ImageError(
            f"building {image.name} failed (buildah exit {result.returncode}): "
            f"{_last_error(log)}; log: {log}"
        )
    if existing is not None and existing.id != built.id:
        _remove_quietly(existing.id)
    seconds = time.monotonic() - start
    _say(f"built {image.name} in {seconds:.1f}s")
    return Outcome(image.name, image.reference, True, seconds, built.id)


def _remove_quietly(image_id: str) -> None:
    """Drops the image a rebuild replaced, so storage does not fill with untagged copies;
    kept when something still uses it (a container, a child image's record)."""
    subprocess.run(["buildah", "rmi", image_id], capture_output=True, check=False)


def statuses(names: Sequence[str] = (), table: Mapping[str, Image] | None = None) -> list[Status]:
    """Whether each image is built and up to date, without building or fetching anything."""
    table = table if table is not None else image_set()
    for name in names:
        _lookup(name, table)
    found: dict[str, Built | None] = {}
    rows = []
    for name in build_order(names, table):
        image = table[name]
        found[name] = built = inspect(image.reference)
        if name not in names and names:
            continue
        if built is None:
            rows.append(Status(name, image.reference, False, None, "not built"))
            continue
        base = found.get(image.base) if image.base is not None else None
        try:
            digest = inputs(image, table, base.id if base else None, prepare=False).digest
        except InputsMissing as e:
            rows.append(Status(name, image.reference, True, None, str(e)))
            continue
        current = digest == built.inputs
        rows.append(Status(name, image.reference, True, current, "" if current else "stale"))
    return rows


# Loading into containerd ----------------------------------------------------------------


def load_into_containerd(
    names: Sequence[str], address: str | Path, *, namespace: str = "k8s.io"
) -> list[str]:
    """Imports built images into the containerd whose gRPC socket is `address`, under
    `namespace` (k8s.io is where the kubelet's CRI looks), each by its reference
    localhost/phaseshift/<name>:<version> — so a pod naming that image with
    imagePullPolicy IfNotPresent (or Never) runs it without any registry.

    Exported with `buildah push` as an OCI archive, which keeps the image's config, so
    containerd's image ID is buildah's. An image containerd already holds under its
    reference with that ID is skipped. Images must be built first (`build(names)`);
    one that is not raises ImageError, as does a failed export or import.
    Returns the references imported.
    """
    table = image_set()
    for name in names:
        _lookup(name, table)
    ctr = [_need("ctr", "containerd"), "--address", str(address), "--namespace", namespace]
    buildah = _need("buildah", "buildah")
    loaded: list[str] = []
    with _lock():
        present = _containerd_ids(ctr)
        for name in names:
            ref = table[name].reference
            built = inspect(ref)
            if built is None:
                raise ImageError(f"image {name} is not built (phaseshift images build {name})")
            if present.get(ref) == built.id:
                continue
            archive = images_dir() / "export" / f"{name}.tar"
            archive.parent.mkdir(parents=True, exist_ok=True)
            archive.unlink(missing_ok=True)
            try:
                _run(
                    [buildah, "push", "--quiet", ref, f"oci-archive:{archive}:{ref}"],
                    f"exporting {name}",
                )
                _run([*ctr, "images", "import", str(archive)], f"importing {name} into containerd")
            finally:
                archive.unlink(missing_ok=True)
            loaded.append(ref)
    return loaded


def _containerd_ids(ctr: Sequence[str]) -> dict[str, str]:
    """Our references in containerd -> the digest of their config (the image ID)."""
    listing = _run([*ctr, "images", "list"], "listing containerd's images")
    ids: dict[str, str] = {}
    for line in listing.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 3 or not fields[0].startswith(f"{REGISTRY}/"):
            continue
        manifest = json.loads(_run([*ctr, "content", "get", fields[2]], "reading a manifest"))
        if "manifests" in manifest:  # an index: its (only) image manifest
            digest = manifest["manifests"][0]["digest"]
            manifest = json.loads(_run([*ctr, "content", "get", digest], "reading a manifest"))
        ids[fields[0]] = manifest["config"]["digest"].removeprefix("sha256:")
    return ids


# Commands -------------------------------------------------------------------------------


def build_command(names: Sequence[str], *, force: bool = False) -> int:
    """`phaseshift images build [NAME...]`."""
    try:
        outcomes = build(names, force=force)
    except ImageError as e:
        print(f"phaseshift images: {e}", file=sys.stderr)
        return 2 if isinstance(e, UnknownImage) else 1
    fresh = [o.name for o in outcomes if o.built]
    kept = len(outcomes) - len(fresh)
    print(f"built: {', '.join(fresh) or 'none'}; up to date: {kept}")
    return 0


def list_command(names: Sequence[str] = ()) -> int:
    """`phaseshift images list`: name, reference, built, up to date."""
    try:
        rows = statuses(names)
    except ImageError as e:
        print(f"phaseshift images: {e}", file=sys.stderr)
        return 2 if isinstance(e, UnknownImage) else 1
    width = max(len(r.name) for r in rows)
    ref_width = max(len(r.reference) for r in rows)
    print(f"{'NAME':<{width}}  {'REFERENCE':<{ref_width}}  BUILT  UP TO DATE")
    for r in rows:
        current = {True: "yes", False: "no", None: "-"}[r.up_to_date]
        note = f" ({r.note})" if r.note and r.up_to_date is None and r.built else ""
        built = "yes" if r.built else "no"
        print(f"{r.name:<{width}}  {r.reference:<{ref_width}}  {built:<5}  {current}{note}")
    return 0


# Helpers --------------------------------------------------------------------------------


def _need(tool: str, package: str) -> str:
    path = shutil.which(tool)
    if path is None:
        raise ImageError(f"no '{tool}' on PATH (apt-get install {package})")
    return path


def _run(command: Sequence[str], what: str) -> str:
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        reason = (result.stderr.strip().splitlines() or ["no message"])[-1]
        raise ImageError(f"{what} failed (exit {result.returncode}): {reason}")
    return result.stdout


def _log_path(name: str) -> Path:
    path = images_dir() / "logs" / f"{name}.log"
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def _last_error(log: Path) -> str:
    """The line of a build log that says what went wrong (the last that mentions an
    error, else the last line)."""
    lines = [line.strip() for line in log.read_text(errors="replace").splitlines() if line.strip()]
    errors = [line for line in lines if re.search(r"error|fail|unable", line, re.I)]
    return (errors or lines or ["no output"])[-1]


def _remove_tree(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


@contextmanager
def _lock() -> Iterator[None]:
    """One build or load at a time: two would stage the same contexts and replace the
    same tags."""
    images_dir().mkdir(parents=True, exist_ok=True)
    with (images_dir() / ".lock").open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def component_image_names() -> dict[str, str]:
    """Each component the renderer names -> the image built here that runs it (the app
    and the phase-4 services all run the sample app's)."""
    from phaseshift.catalog import IMAGES
    from phaseshift.render.microservices import SERVICES

    local = {key: "sample-app" if key == "app" else key for key in IMAGES}
    local.update({service: "sample-app" for service in SERVICES})
    missing = sorted(set(local.values()) - set(image_set()))
    if missing:
        raise ImageError(f"no local image for {', '.join(missing)}")
    return local


def component_images() -> dict[str, str]:
    """The operator's image table (PHASESHIFT_IMAGE_MAP) for a cluster whose node runs
    the images built here."""
    table = image_set()
    return {key: table[name].reference for key, name in component_image_names().items()}
