"""The operator-wide image table: the catalog's pinned images, moved to another registry
and/or replaced per component, resolved once when `phaseshift run` or `phaseshift plan`
starts and handed to the renderer as data (RenderContext.images).

Two settings, each an environment variable or a flag (the flag wins):

- PHASESHIFT_IMAGE_REGISTRY / --image-registry: a registry (and path) every default image
  is pulled from instead, keeping its repository path: `postgres:15.10` becomes
  `registry.local/mirror/postgres:15.10`, `quay.io/prometheuscommunity/postgres-exporter:
  v0.11.1` becomes `registry.local/mirror/prometheuscommunity/postgres-exporter:v0.11.1`.
- PHASESHIFT_IMAGE_MAP / --image-map: comma-separated `component=image` pairs that
  replace single components, e.g. `postgres=registry.local/pg:15.10,redis=valkey:7.2`.
  Keys are the catalog's components (IMAGES) and the phase-4 services; an entry is used
  as written (the registry setting does not rewrite it).

A plan's own choice always wins over the table: its spec.overrides[].images, and a
spec.app.image other than the default app image.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from phaseshift.api import COMPONENT_NAME_PATTERN
from phaseshift.catalog import IMAGES
from phaseshift.render.microservices import SERVICES

ENV_MAP = "PHASESHIFT_IMAGE_MAP"
ENV_REGISTRY = "PHASESHIFT_IMAGE_REGISTRY"

# Every key a map may name: the catalog's components and the phase-4 services.
KNOWN_COMPONENTS: tuple[str, ...] = (*IMAGES, *SERVICES)

_IMAGE = re.compile(r"^[!-~]{1,512}$")
_REGISTRY = re.compile(r"^[A-Za-z0-9][-A-Za-z0-9._:]*(/[-a-z0-9._]+)*$")


class ImageMapError(ValueError):
    """A map or registry setting that cannot be used; the message says why."""


def parse_image_map(text: str) -> dict[str, str]:
    """`component=image` pairs separated by commas (whitespace and newlines around them
    are ignored, so a YAML block scalar works too); an empty text is an empty map."""
    result: dict[str, str] = {}
    for item in re.split(r"[,\s]+", text.strip()):
        if not item:
            continue
        key, sep, image = item.partition("=")
        if not sep or not key or not image:
            raise ImageMapError(f"{item!r} is not component=image")
        if not re.match(COMPONENT_NAME_PATTERN, key) or key not in KNOWN_COMPONENTS:
            raise ImageMapError(f"unknown component {key!r}; known: {', '.join(KNOWN_COMPONENTS)}")
        if not _IMAGE.match(image) or "=" in image:
            raise ImageMapError(f"{image!r} is not an image reference")
        if key in result and result[key] != image:
            raise ImageMapError(f"component {key!r} is mapped twice")
        result[key] = image
    return result


def format_image_map(images: Mapping[str, str]) -> str:
    """The text `parse_image_map` reads back as `images` (for PHASESHIFT_IMAGE_MAP)."""
    return ",".join(f"{key}={image}" for key, image in images.items())


def in_registry(image: str, registry: str) -> str:
    """`image` as pulled from `registry`: its registry host, if it names one (a first
    path part with a '.' or ':', or `localhost`), is replaced, the rest is kept."""
    first, slash, rest = image.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost"):
        image = rest
    return f"{registry.rstrip('/')}/{image}"


def resolve_images(
    *, registry: str | None = None, overrides: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The table the renderer starts from: every catalog image, moved to `registry` when
    one is given, then replaced by `overrides` (a parsed map) component by component."""
    table = dict(IMAGES)
    if registry:
        if not _REGISTRY.match(registry.rstrip("/")):
            raise ImageMapError(f"{registry!r} is not a registry host with an optional path")
        table = {key: in_registry(image, registry) for key, image in table.items()}
    table.update(overrides or {})
    return table


def images_from(
    environ: Mapping[str, str], *, image_map: str | None = None, registry: str | None = None
) -> dict[str, str]:
    """The table from the environment and the command line's flags: --image-registry
    replaces PHASESHIFT_IMAGE_REGISTRY; --image-map adds to PHASESHIFT_IMAGE_MAP and wins
    for a component both name."""
    mapped = parse_image_map(environ.get(ENV_MAP, ""))
    mapped.update(parse_image_map(image_map or ""))
    chosen_registry = registry if registry is not None else environ.get(ENV_REGISTRY, "")
    return resolve_images(registry=chosen_registry.strip() or None, overrides=mapped)
