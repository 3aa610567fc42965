"""The sharded connection pool (providers/pool.py) against a real local server: many responses
in flight at once across shards, each body read whole; closed responses free their shard, so
later requests go on; an endpoint's client (which uses it) answers many at once. And the
admission of new requests at the pace of the loop (providers/admission.py)."""

from __future__ import annotations

import asyncio
import json
from contextlib import AsyncExitStack
from typing import Any

import httpx

from aikit_components.providers.admission import BURST, admit
from aikit_components.providers.http import HTTPEndpoint
from aikit_components.providers.pool import SHARD_CONNECTIONS, ShardedTransport
from tests.support.llm_server import Recorded, Reply

PATH = "/v1/echo"


def echo(request: Recorded) -> Reply:
    return Reply.json({"n": json.loads(request.body)["n"]})


def test_responses_in_flight_spread_over_shards_and_closed_ones_free_them(llm_server: Any) -> None:
    llm_server.respond(PATH, echo)
    held = 3 * SHARD_CONNECTIONS

    async def main() -> None:
        transport = ShardedTransport(httpx.Limits(max_connections=1000))
        async with httpx.AsyncClient(transport=transport) as client, AsyncExitStack() as stack:
            responses = [await stack.enter_async_context(client.stream("POST", llm_server.url + PATH, json={"n": i}))
                         for i in range(held)]  # each still open while the next is sent
            assert [json.loads(await r.aread())["n"] for r in responses] == list(range(held))
        async with httpx.AsyncClient(transport=ShardedTransport(httpx.Limits(max_connections=1000))) as client:
            answers = [(await client.post(llm_server.url + PATH, json={"n": i})).json()["n"] for i in range(5)]
            assert answers == list(range(5))
            gathered = await asyncio.gather(*(client.post(llm_server.url + PATH, json={"n": i}) for i in range(40)))
            assert [r.json()["n"] for r in gathered] == list(range(40))

    asyncio.run(main())
    assert len(llm_server.requests) == held + 45


def test_an_endpoint_client_answers_many_requests_at_once(llm_server: Any) -> None:
    llm_server.respond(PATH, echo)
    endpoint = HTTPEndpoint(llm_server.url, name="local")

    async def main() -> list[int]:
        try:
            client = endpoint.client()
            answers = await asyncio.gather(*(client.post(endpoint.url(PATH), json={"n": i}) for i in range(20)))
            return [r.json()["n"] for r in answers]
        finally:
            await endpoint.aclose()

    assert asyncio.run(main()) == list(range(20))


def test_admission_lets_every_request_through_in_order() -> None:
    """Requests beyond a burst wait for the loop's next ticks, first come first served, and all
    of them are sent."""
    order: list[int] = []

    async def request(i: int) -> None:
        await admit()
        order.append(i)

    async def main() -> None:
        await asyncio.gather(*(request(i) for i in range(10 * BURST)))

    asyncio.run(main())
    assert order == list(range(10 * BURST))
