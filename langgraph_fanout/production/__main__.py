"""Serve the three graphs on Aegra replicas sharing one PostgreSQL and one Redis.

    python -m langgraph_fanout.production [--replicas N] [--host H] [--port P] [--data DIR]

Run it with the production virtualenv's Python (``make serve-production`` does). With
$DATABASE_URL and $REDIS_URL set it uses those; otherwise it starts PostgreSQL and Redis of its
own, keeping their data in ``DIR/postgres`` and ``DIR/redis``. Replica ``i`` listens on port
P + i. It runs until Ctrl-C or SIGTERM, or until a replica exits; then it stops everything it
started.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from contextlib import ExitStack
from pathlib import Path
from types import FrameType
from typing import TypeVar

from langgraph_fanout.production.postgres import find_bindir, postgres_cluster
from langgraph_fanout.production.redis_server import find_redis_server, redis_server
from langgraph_fanout.production.replicas import ROOT, migrate, replica_env, start_replicas

T = TypeVar("T")


def main(argv: list[str] | None = None) -> int:
    """Start the services and replicas, wait, stop; the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replicas", type=int, default=2, help="default: 2")
    parser.add_argument("--host", default="127.0.0.1", help="default: 127.0.0.1")
    parser.add_argument("--port", type=int, default=2026, help="first replica's port (2026)")
    parser.add_argument(
        "--data", type=Path, default=ROOT / ".production", help="default: .production"
    )
    args = parser.parse_args(argv)
    if args.replicas < 1:
        parser.error("--replicas must be at least 1")
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, _exit_on_signal)

    with ExitStack() as stack:
        database_url = (
            os.environ.get("DATABASE_URL")
            or stack.enter_context(
                postgres_cluster(
                    _need(find_bindir(), "postgresql"), data_dir=args.data / "postgres"
                )
            ).url
        )
        redis_url = os.environ.get("REDIS_URL") or stack.enter_context(
            redis_server(_need(find_redis_server(), "redis-server"), args.data / "redis")
        )
        env = replica_env(database_url, redis_url, os.environ)
        migrate(env, ROOT)
        ports = [args.port + i for i in range(args.replicas)]
        replicas = start_replicas(env, ports, host=args.host)
        for replica in replicas:
            stack.callback(replica.stop)
            print(f"replica {replica.url} (pid {replica.process.pid})", file=sys.stderr)
        print("serving; Ctrl-C stops every replica and service started here", file=sys.stderr)
        pid, status = os.wait()  # a replica (or our Redis) exited
        died = next((r.url for r in replicas if r.process.pid == pid), f"process {pid}")
        print(f"{died} exited ({os.waitstatus_to_exitcode(status)}): stopping", file=sys.stderr)
        return 1


def _need(found: T | None, package: str) -> T:
    if found is None:
        sys.exit(f"error: {package} is not installed (make system-deps installs it)")
    return found


def _exit_on_signal(signum: int, frame: FrameType | None) -> None:
    """Leave through the cleanup, which a second signal must not cut short."""
    for other in (signal.SIGINT, signal.SIGTERM):
        signal.signal(other, signal.SIG_IGN)
    print(f"{signal.Signals(signum).name}: stopping", file=sys.stderr)
    raise SystemExit(128 + signum)


if __name__ == "__main__":
    sys.exit(main())
