"""Command line: `python -m sample_app {serve,worker,consume,migrate,loadgen}`.

With no command, the role in APP_ROLE decides: `worker` consumes jobs, `consumer`
consumes events, every other role serves HTTP. That lets one image and one entrypoint serve every Deployment.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from .config import ConfigError, Settings


def _settings(port: int | None = None) -> Settings:
    env = dict(os.environ)
    if port is not None:
        env["PORT"] = str(port)
    return Settings.from_env(env)


def serve(port: int | None, host: str) -> int:
    import uvicorn

    from .app import create_app

    settings = _settings(port)
    if settings.role == "worker":
        return work(port)
    if settings.role == "consumer":
        return consume(port)
    uvicorn.run(
        create_app(settings),
        host=host,
        port=settings.port,
        log_level="warning",
        access_log=False,
        # The pod's SIGTERM should let in-flight requests finish.
        timeout_graceful_shutdown=10,
    )
    return 0


def work(port: int | None) -> int:
    from .worker import main

    main(_settings(port))
    return 0


def consume(port: int | None) -> int:
    from .consumer import main

    main(_settings(port))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m sample_app", description=__doc__)
    sub = parser.add_subparsers(dest="command")

    p = sub.add_parser("serve", help="serve HTTP with the configuration from the environment")
    p.add_argument("--port", type=int, help="overrides PORT")
    p.add_argument("--host", default="0.0.0.0")

    p = sub.add_parser("worker", help="consume background jobs from QUEUE_URL")
    p.add_argument("--port", type=int, help="port of the worker's /metrics (overrides PORT)")

    p = sub.add_parser("consume", help="consume the domain events from KAFKA_BOOTSTRAP")
    p.add_argument("--port", type=int, help="port of the consumer's /metrics (overrides PORT)")

    p = sub.add_parser("migrate", help="copy a SQLite database into PostgreSQL and verify it")
    p.add_argument("--from", dest="source", required=True, help="sqlite:///PATH")
    p.add_argument("--to", dest="target", help="postgresql://... (not with --thaw)")
    p.add_argument(
        "--freeze-source",
        action="store_true",
        help="after the first pass, freeze the source's writes and copy what came meanwhile",
    )
    p.add_argument(
        "--thaw", action="store_true", help="only open the source to writes again, and exit"
    )
    p.add_argument("--batch-size", type=int, default=5000)
    p.add_argument(
        "--max-batches",
        type=int,
        default=None,
        help="stop after this many batches (a later run resumes)",
    )
    p.add_argument("--verify-only", action="store_true")

    p = sub.add_parser("loadgen", help="drive a read-heavy load against a running service")
    p.add_argument("--users", type=int, default=50, help="concurrent virtual users")
    p.add_argument("--duration", type=float, default=30.0, help="seconds")
    p.add_argument("--target", default="http://127.0.0.1:8080")
    p.add_argument(
        "--ramp",
        type=float,
        default=None,
        help="seconds over which users start (default: a fifth of the duration)",
    )
    p.add_argument("--write-ratio", type=float, default=0.1)
    p.add_argument("--think", type=float, default=0.0, help="mean pause between requests (s)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    return parser


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(
        level=os.environ.get("LOG_LEVEL", "INFO"),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    args = build_parser().parse_args(argv)
    try:
        if args.command is None:
            role = os.environ.get("APP_ROLE", "monolith")
            if role == "worker":
                return work(None)
            if role == "consumer":
                return consume(None)
            return serve(None, "0.0.0.0")
        if args.command == "serve":
            return serve(args.port, args.host)
        if args.command == "worker":
            return work(args.port)
        if args.command == "consume":
            return consume(args.port)
        if args.command == "migrate":
            from .migrate import run as migrate
            from .migrate import thaw

            if args.thaw:
                return thaw(args.source)
            return migrate(
                args.source,
                args.target,
                args.batch_size,
                args.max_batches,
                args.verify_only,
                freeze=args.freeze_source,
            )
        if args.command == "loadgen":
            from .loadgen import main as loadgen

            return loadgen(args)
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    return 2


if __name__ == "__main__":
    sys.exit(main())
