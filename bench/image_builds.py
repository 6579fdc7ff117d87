"""Benchmark: how long building the project's images takes, cold and warm.

    .venv/bin/python bench/image_builds.py [NAME...] [--rootfs]

(bench/real_node.py prints the same figures before it times the node.)

Builds the images first if needed (not timed). Then, for each named image (all by
default, bases first), the cold build (rebuilt although its inputs are unchanged, the
images it is built from reused) and the warm build (its inputs label matches: skipped,
unless the repository changed meanwhile: the operator's and the sample app's contexts
are the working tree); then a
rebuild of the whole set with nothing changed (target < 10 s). --rootfs also times
making the Debian root filesystem again with debootstrap. Prints figures; asserts
nothing. Needs root, buildah and debootstrap, and rebuilds the images it times.
"""

from __future__ import annotations

import argparse
import time

from phaseshift.lab import images


def _time_rootfs() -> float:
    tar = images.rootfs_tar(prepare=False)
    tar.unlink()
    start = time.monotonic()
    images.rootfs_tar(prepare=True)
    return time.monotonic() - start


def report(names: list[str], rootfs: bool) -> None:
    """Prints the cold and warm build time of each image and the no-change rebuild."""
    table = images.image_set()
    images.build(names)

    if rootfs:
        print(f"Debian root filesystem (debootstrap, prune, tar): {_time_rootfs():.1f} s")
    print("per image: cold = rebuilt with its inputs unchanged, warm = skipped")
    width = max(len(name) for name in table)
    # Only the named images are rebuilt cold: a rebuilt base would make the rest stale.
    for name in names or images.build_order([], table):
        cold = images.build([name], force=True)[-1]
        warm = images.build([name])[-1]
        note = "  (rebuilt again: its inputs are not stable)" if warm.built else ""
        print(f"  {name:<{width}}  cold {cold.seconds:6.1f} s   warm {warm.seconds:5.2f} s{note}")

    start = time.monotonic()
    outcomes = images.build()
    elapsed = time.monotonic() - start
    rebuilt = [o.name for o in outcomes if o.built]
    print(
        f"no-change rebuild of the set ({len(outcomes)} images): {elapsed:.2f} s, "
        f"rebuilt: {', '.join(rebuilt) or 'none'}  (target < 10 s)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", metavar="NAME", help="default: every image")
    parser.add_argument("--rootfs", action="store_true", help="also time debootstrap")
    args = parser.parse_args()
    report(args.names, args.rootfs)


if __name__ == "__main__":
    main()
