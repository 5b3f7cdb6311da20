"""Proposed fix, measured here by monkeypatching: spread a large fan-out over several pools.

httpcore's connection pool (``httpcore2``, under the ``openai`` SDK) re-scans every one of
its connections each time a request starts or a response closes. One pool serving N
concurrent requests therefore costs O(N^2): at N = 1,000 that scan is the largest single
cost of a run, in the graph and in the bare-``asyncio.gather`` floor alike (cProfile:
``_assign_requests_to_connections`` ~40% of the process's CPU).

:class:`ShardedTransport` keeps the pool small: it fills pool 0 up to ``per_pool`` requests in
flight, then pool 1, and so on (pools are created on demand, at most ``max_connections / per_pool``;
past that the least-loaded pool queues). A small fan-out stays on pool 0 and reuses its
keep-alive connections exactly as before; N = 1,000 becomes 16 pools of <= 64.

To adopt it, move this module to ``nodes/`` and, in ``nodes.models.load_chat_model``, give
every OpenAI model its own client on it::

    if provider == "openai":
        kwargs["http_async_client"] = sharded_async_client(timeout)  # seconds

``install()`` does exactly that by monkeypatching, for ``benchmarks.run --sharded-pool``
and ``benchmarks.profiling --sharded-pool``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx2
import openai

PER_POOL = 64
"""Most requests in flight on one pool before the next pool takes new ones."""
MAX_CONNECTIONS = 1000
"""Most connections per client, over all its pools (openai's default cap)."""


class _ReleasingStream(httpx2.AsyncByteStream):
    """A response body that gives its pool slot back when closed."""

    def __init__(self, stream: httpx2.AsyncByteStream, release: Callable[[], None]) -> None:
        self._stream = stream
        self._release = release

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._stream:
            yield chunk

    async def aclose(self) -> None:
        try:
            await self._stream.aclose()
        finally:
            self._release()


class ShardedTransport(httpx2.AsyncBaseTransport):
    """An async transport over several connection pools, each kept at <= ``per_pool`` busy."""

    def __init__(
        self, per_pool: int = PER_POOL, max_connections: int = MAX_CONNECTIONS, **transport: Any
    ) -> None:
        self.per_pool = per_pool
        self.max_pools = max(1, -(-max_connections // per_pool))
        self._transport = {
            "limits": httpx2.Limits(
                max_connections=per_pool, max_keepalive_connections=per_pool, keepalive_expiry=5.0
            ),
            **transport,
        }
        self._pools: list[httpx2.AsyncHTTPTransport] = []
        self._busy: list[int] = []

    def _pick(self) -> int:
        for index, busy in enumerate(self._busy):
            if busy < self.per_pool:
                return index
        if len(self._pools) < self.max_pools:
            self._pools.append(httpx2.AsyncHTTPTransport(**self._transport))
            self._busy.append(0)
            return len(self._pools) - 1
        return min(range(len(self._busy)), key=self._busy.__getitem__)

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        """Send ``request`` on the first pool with room."""
        index = self._pick()
        self._busy[index] += 1
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                self._busy[index] -= 1

        try:
            response = await self._pools[index].handle_async_request(request)
        except BaseException:
            release()
            raise
        assert isinstance(response.stream, httpx2.AsyncByteStream)
        return httpx2.Response(
            status_code=response.status_code,
            headers=response.headers,
            stream=_ReleasingStream(response.stream, release),
            extensions=response.extensions,
        )

    async def aclose(self) -> None:
        """Close every pool."""
        for pool in self._pools:
            await pool.aclose()


def sharded_async_client(timeout: float, per_pool: int = PER_POOL) -> httpx2.AsyncClient:
    """openai's default async HTTP client, on a :class:`ShardedTransport`."""
    return openai.DefaultAsyncHttpxClient(
        transport=ShardedTransport(per_pool), timeout=httpx2.Timeout(timeout)
    )


def install(per_pool: int = PER_POOL) -> None:
    """Monkeypatch ``nodes.models`` so every new OpenAI model uses a sharded client."""
    import nodes.models as models

    original = models.init_chat_model

    def init_chat_model(spec: str, **kwargs: Any) -> Any:
        if spec.partition(":")[0] == "openai":
            timeout = kwargs.get("timeout")
            seconds = getattr(timeout, "read", timeout)  # load_chat_model passes an httpx.Timeout
            kwargs.setdefault("http_async_client", sharded_async_client(seconds, per_pool))
        return original(spec, **kwargs)

    models.init_chat_model = init_chat_model  # type: ignore[assignment]
