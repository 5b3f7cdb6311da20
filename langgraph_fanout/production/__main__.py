"""Serve the graphs on Aegra replicas sharing one PostgreSQL and one Redis, and keep them up.

    python -m langgraph_fanout.production [--replicas N] [--host H] [--port P] [--data DIR]

Run it with the production virtualenv's Python (``make serve-production`` does). With
$DATABASE_URL and $REDIS_URL set it uses those (checked first: a malformed or unreachable one
is one line naming it, and exit 2); otherwise it starts PostgreSQL and Redis of its own, keeping
their data in ``DIR/postgres`` and ``DIR/redis`` (default: :func:`default_data`, outside the
checkout, where ``langgraph dev`` would log every write it sees). Replica ``i`` listens on port
P + i. A replica, PostgreSQL or Redis of its own that dies is started again, with backoff
(``supervisor.py``). Ctrl-C or SIGTERM stops everything it started, and it exits 0.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path
from types import FrameType
from typing import TypeVar

from langgraph_fanout.production.postgres import PostgresCluster, find_bindir
from langgraph_fanout.production.redis_server import RedisServer, find_redis_server
from langgraph_fanout.production.replicas import Replica, migrate, replica_env, start_replicas
from langgraph_fanout.production.settings import (
    SettingError,
    check_database_url,
    check_redis_url,
)
from langgraph_fanout.production.supervisor import Service, say, supervise
from langgraph_fanout.production.terminal import own_ctrl_c

T = TypeVar("T")
EXIT_SETTINGS = 2


class Stopped(Exception):
    """A stop signal arrived while the services were starting."""


def default_data() -> Path:
    """Where the services keep their data: ``$XDG_DATA_HOME/langgraph-fanout/production``.

    Without $XDG_DATA_HOME: under ``~/.local/share``, or ``/var/lib`` for root (PostgreSQL runs
    as user postgres then, who cannot enter root's home).
    """
    base = os.environ.get("XDG_DATA_HOME") or (
        "/var/lib" if os.geteuid() == 0 else str(Path.home() / ".local" / "share")
    )
    return Path(base) / "langgraph-fanout" / "production"


def main(argv: list[str] | None = None) -> int:
    """Check the settings, start the services and replicas, keep them up until stopped."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replicas", type=int, default=2, help="default: 2")
    parser.add_argument("--host", default="127.0.0.1", help="default: 127.0.0.1")
    parser.add_argument("--port", type=int, default=2026, help="first replica's port (2026)")
    parser.add_argument("--data", type=Path, help=f"default: {default_data()}")
    args = parser.parse_args(argv)
    if args.replicas < 1:
        parser.error("--replicas must be at least 1")
    try:
        database_url = os.environ.get("DATABASE_URL")
        redis_url = os.environ.get("REDIS_URL")
        if database_url:
            check_database_url(database_url)
        if redis_url:
            check_redis_url(redis_url)
    except SettingError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_SETTINGS
    stopping, serving = threading.Event(), threading.Event()
    with own_ctrl_c():
        _stop_on_signals(stopping, serving)
        try:
            _serve(args, database_url, redis_url, stopping, serving)
        except Stopped:
            pass  # stopped while starting: what started is stopped on the way out
        except RuntimeError as exc:  # a service or replica did not start
            print(f"error: {exc}", file=sys.stderr)
            return 1
    say("stopped")
    return 0


def _serve(
    args: argparse.Namespace,
    database_url: str | None,
    redis_url: str | None,
    stopping: threading.Event,
    serving: threading.Event,
) -> None:
    data = (args.data or default_data()).resolve()
    services: list[Service] = []
    with ExitStack() as stack:
        if not database_url:
            cluster = PostgresCluster(_need(find_bindir(), "postgresql"), data / "postgres")
            cluster.start()
            stack.callback(cluster.stop)
            services.append(Service("PostgreSQL", cluster.running, cluster.start))
            database_url = cluster.url
        if not redis_url:
            redis = RedisServer(
                _need(find_redis_server(), "redis-server"), data / "redis", persist=True
            )
            redis.start()
            stack.callback(redis.stop)
            services.append(Service("Redis", redis.alive, redis.start))
            redis_url = redis.url
        env = replica_env(database_url, redis_url, os.environ)
        migrate(env, Path.cwd())
        ports = [args.port + i for i in range(args.replicas)]
        replicas = start_replicas(env, ports, host=args.host)
        stack.callback(_stop_all, replicas)  # before Redis and PostgreSQL: they drain their runs
        for replica in replicas:
            say(f"replica {replica.url} (pid {replica.process.pid})")
            services.append(Service(f"replica {replica.url}", replica.alive, replica.start))
        say(f"serving; Ctrl-C or `kill {os.getpid()}` stops every replica and service started here")
        serving.set()
        supervise(services, stopping)


def _stop_all(replicas: list[Replica]) -> None:
    """Stop the replicas together (each finishes its runs, up to its drain timeout)."""
    with ThreadPoolExecutor() as pool:
        list(pool.map(Replica.stop, [r for r in replicas if r.alive()]))


def _need(found: T | None, package: str) -> T:
    if found is None:
        raise RuntimeError(f"{package} is not installed (make system-deps installs it)")
    return found


def _stop_on_signals(stopping: threading.Event, serving: threading.Event) -> None:
    """Ctrl-C and SIGTERM stop the launcher, once; more of them do not cut its cleanup short.

    While the services start, the signal interrupts that (:class:`Stopped`); once they serve,
    it ends :func:`supervise`'s wait.
    """

    def stop(signum: int, frame: FrameType | None) -> None:
        if stopping.is_set():
            return
        stopping.set()
        say(f"{signal.Signals(signum).name}: stopping")
        if not serving.is_set():
            raise Stopped

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, stop)


if __name__ == "__main__":
    sys.exit(main())
