"""The `phaseshift` command line: a thin shell that parses arguments and calls one module each."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path


def _cluster(args: argparse.Namespace) -> int:
    from phaseshift.lab import cluster

    if args.action == "up":
        # kwok nodes only when asked beside a real node, so that workloads land on it.
        nodes = args.nodes if args.nodes is not None else (0 if args.real_node else 3)
        return cluster.up_command(
            args.name,
            nodes=nodes,
            with_prometheus=args.prometheus,
            port=args.port,
            real_node=args.real_node,
        )
    if args.action == "down":
        return cluster.down_command(args.name)
    return cluster.kubeconfig_command(args.name)


def _crd(args: argparse.Namespace) -> int:
    from phaseshift.crd import crd_yaml

    sys.stdout.write(crd_yaml())
    return 0


def _images(args: argparse.Namespace) -> dict[str, str] | None:
    """The image table from --image-map/--image-registry and the environment; None (after
    saying why on stderr) when it cannot be used."""
    import os

    from phaseshift.imagemap import ImageMapError, images_from

    try:
        return images_from(os.environ, image_map=args.image_map, registry=args.image_registry)
    except ImageMapError as err:
        print(f"phaseshift {args.command}: {err}", file=sys.stderr)
        return None


def _plan(args: argparse.Namespace) -> int:
    from phaseshift.planview import plan_command

    images = _images(args)
    if images is None:
        return 2
    return plan_command(args.file, phase=args.phase, diff_from=args.diff_from, images=images)


def _run(args: argparse.Namespace) -> int:
    from phaseshift.operator_main import run_command

    images = _images(args)
    if images is None:
        return 2
    return run_command(
        namespaces=args.namespace,
        health_port=args.health_port,
        metrics_port=args.metrics_port,
        lease_name=args.lease_name,
        lease_namespace=args.lease_namespace,
        images=images,
    )


def _image_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--image-map",
        metavar="COMPONENT=IMAGE,...",
        help="replace default images per component (adds to $PHASESHIFT_IMAGE_MAP)",
    )
    p.add_argument(
        "--image-registry",
        metavar="REGISTRY[/PATH]",
        help="pull every default image from this registry (default: $PHASESHIFT_IMAGE_REGISTRY)",
    )


def _images_command(args: argparse.Namespace) -> int:
    from phaseshift.lab import images

    if args.action == "list":
        return images.list_command(args.names)
    if args.action == "load":
        from phaseshift.lab import cluster

        return cluster.load_images_command(args.cluster, args.names)
    return images.build_command(args.names, force=args.force)


def _demo(args: argparse.Namespace) -> int:
    from phaseshift.lab.demo import demo_command

    return demo_command(
        speed=args.speed, profile=args.profile, check=args.check, results=args.results
    )


def _status(args: argparse.Namespace) -> int:
    from phaseshift.statusview import status_command

    return status_command(args.name, namespace=args.namespace, kubeconfig=args.kubeconfig)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="phaseshift", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser(
        "cluster", help="a local control plane (etcd, kube-apiserver; kwok nodes or a real node)"
    )
    p.add_argument("action", choices=["up", "down", "kubeconfig"])
    p.add_argument("--name", default="phaseshift")
    p.add_argument(
        "--nodes", type=int, default=None, help="kwok nodes (default: 3, or 0 with --real-node)"
    )
    p.add_argument(
        "--real-node",
        action="store_true",
        help="also run a real node here (containerd, kubelet, kube-proxy; needs root)",
    )
    p.add_argument("--prometheus", action="store_true", help="also start Prometheus on loopback")
    p.add_argument("--port", type=int, default=0, help="kube-apiserver port (default: a free one)")
    p.set_defaults(func=_cluster)

    p = sub.add_parser("crd", help="print the ScalePlan CustomResourceDefinition")
    p.set_defaults(func=_crd)

    p = sub.add_parser("plan", help="print the objects a ScalePlan renders to in a phase")
    p.add_argument("-f", "--file", type=Path, required=True)
    p.add_argument("--phase", type=int, required=True, choices=[1, 2, 3, 4])
    p.add_argument("--diff-from", type=int, choices=[1, 2, 3, 4])
    _image_flags(p)
    p.set_defaults(func=_plan)

    p = sub.add_parser("run", help="run the operator")
    p.add_argument("-n", "--namespace", action="append", default=[], help="watch only these")
    p.add_argument("--health-port", type=int, default=8081)
    p.add_argument("--metrics-port", type=int, default=8080)
    p.add_argument("--lease-name", default="phaseshift-operator", help="leader-election Lease")
    p.add_argument("--lease-namespace", help="namespace of the Lease (default: $POD_NAMESPACE)")
    _image_flags(p)
    p.set_defaults(func=_run)

    p = sub.add_parser("images", help="build the images a real node runs (buildah, no registry)")
    p.add_argument("action", choices=["build", "list", "load"])
    p.add_argument("names", nargs="*", metavar="NAME", help="default: every image")
    p.add_argument("--force", action="store_true", help="rebuild even when up to date")
    p.add_argument(
        "--cluster", default="phaseshift", help="load: the cluster whose real node gets them"
    )
    p.set_defaults(func=_images_command)

    p = sub.add_parser("demo", help="the 0 -> 1M users journey on a local control plane")
    p.add_argument("--speed", type=float, default=1.0)
    p.add_argument("--profile", default="day")
    p.add_argument("--check", action="store_true", help="short scenario; non-zero exit on failure")
    p.add_argument("--results", type=Path, default=Path("results"))
    p.set_defaults(func=_demo)

    p = sub.add_parser("status", help="a ScalePlan's phase, conditions and history")
    p.add_argument("name")
    p.add_argument("-n", "--namespace", default="default")
    p.add_argument("--kubeconfig", type=Path)
    p.set_defaults(func=_status)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
