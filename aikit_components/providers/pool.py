"""Many connections to one model server without a pool that slows down with its size.

httpcore's connection pool looks at every connection it holds each time a request comes or goes,
and for each idle connection counts the idle ones again: with a thousand agents calling a model at
once (a thousand connections) that is a million checks, some of them system calls, per request,
all on the event loop. :class:`ShardedTransport` splits the pool into small pools (shards) and
sends each request to the shard with the fewest requests in flight (the first one, while there is
little traffic: connections are reused as before); each shard's cost is that of a few connections.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx

#: Connections per shard: small enough for httpcore's per-request checks to stay cheap.
SHARD_CONNECTIONS = 8


class ShardedTransport(httpx.AsyncBaseTransport):
    """At most ``limits.max_connections`` connections in shards of :data:`SHARD_CONNECTIONS`
    (each an ``httpx.AsyncHTTPTransport`` made when first needed, all sharing one TLS context);
    ``trust_env`` as for ``httpx.AsyncHTTPTransport`` (TLS settings from the environment)."""

    def __init__(self, limits: httpx.Limits, *, trust_env: bool = True) -> None:
        total = limits.max_connections or 1000
        self._count = max(1, -(-total // SHARD_CONNECTIONS))
        per = -(-total // self._count)
        self._limits = httpx.Limits(max_connections=per, max_keepalive_connections=per,
                                    keepalive_expiry=limits.keepalive_expiry)
        self._trust_env = trust_env
        self._tls: object | None = None
        self._shards: list[httpx.AsyncHTTPTransport] = []
        self._load: list[int] = []  # requests in flight (until their body is closed) per shard

    def _pick(self) -> int:
        load = self._load
        if load and min(load) == 0:
            return load.index(0)
        if len(self._shards) < self._count:  # all busy: one more shard
            if self._tls is None:
                self._tls = httpx.create_ssl_context(trust_env=self._trust_env)
            self._shards.append(httpx.AsyncHTTPTransport(verify=self._tls, trust_env=self._trust_env,  # type: ignore[arg-type]
                                                         limits=self._limits))
            load.append(0)
            return len(load) - 1
        return load.index(min(load))

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        index = self._pick()
        self._load[index] += 1
        try:
            response = await self._shards[index].handle_async_request(request)
        except BaseException:
            self._load[index] -= 1
            raise
        return httpx.Response(response.status_code, headers=response.headers,
                              stream=_Counted(response.stream, self._load, index), extensions=response.extensions)

    async def aclose(self) -> None:
        shards, self._shards, self._load = self._shards, [], []
        for shard in shards:
            await shard.aclose()


class _Counted(httpx.AsyncByteStream):
    """A response body that tells its shard when it is closed (its connection is free again)."""

    def __init__(self, stream: httpx.SyncByteStream | httpx.AsyncByteStream, load: list[int], index: int) -> None:
        self._stream = stream
        self._load = load
        self._index = index
        self._open = True

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._stream:  # type: ignore[union-attr]
            yield chunk

    async def aclose(self) -> None:
        if self._open:
            self._open = False
            if self._index < len(self._load):  # not after the transport was closed
                self._load[self._index] -= 1
        await self._stream.aclose()  # type: ignore[union-attr]


def shard_pool(client: httpx.AsyncClient, limits: httpx.Limits, trust_env: bool) -> httpx.AsyncClient:
    """Give ``client`` (made without a transport of its own) a :class:`ShardedTransport` for
    direct connections; the proxies httpx mounted from the environment stay as they are."""
    # httpx has no public way to replace the transport it built (passing one turns off the
    # environment's proxies), so this reaches into the client once, at creation.
    client._transport = ShardedTransport(limits, trust_env=trust_env)
    return client
