"""The small HTTP/1.1 client of the providers' JSON requests (providers/http11.py) against real
servers on loopback: scripted raw servers for the framings real servers use (Content-Length,
chunked with trailers, gzip, a body until close, ``100 Continue``), keep-alive reuse and its
limits (``Connection: close``, a kept connection the server dropped, at most ``max_connections``),
failures as httpx's exceptions (refused, silent server, garbage), TLS, and when
:class:`HTTPEndpoint` leaves a request to httpx (a proxy in the environment, a header that cannot
be sent as it is)."""

from __future__ import annotations

import asyncio
import datetime
import gzip
import ipaddress
import json
import ssl
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from aikit_components.providers.base import ProviderError
from aikit_components.providers.http import HTTPEndpoint
from aikit_components.providers.http11 import KeepAlivePool, Target, WireResponse, header_block, target_of

# A request as the scripted server saw it: (request head lines, body); its answer: raw bytes
# to write, or None to close the connection without answering.
Answer = Callable[[list[bytes], bytes, int], Awaitable[bytes | None]]


class RawServer:
    """An HTTP/1.1 server on 127.0.0.1 whose answers are scripted as raw bytes (``answer(head
    lines, body, n)``, n counting the requests on that connection from 1). Counts connections."""

    def __init__(self, answer: Answer, ssl_context: ssl.SSLContext | None = None) -> None:
        self.answer = answer
        self.ssl_context = ssl_context
        self.connections = 0
        self.open = 0
        self.most_open = 0
        self.heads: list[list[bytes]] = []
        self.server: asyncio.Server | None = None
        self.handlers: dict[asyncio.Task[Any], asyncio.StreamWriter] = {}

    async def __aenter__(self) -> RawServer:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=self.ssl_context)
        return self

    async def __aexit__(self, *exc: Any) -> None:
        assert self.server is not None
        self.server.close()
        for writer in self.handlers.values():  # connections the client kept: closed, their handlers end
            writer.transport.abort()
        if self.handlers:
            await asyncio.wait(list(self.handlers), timeout=10)

    @property
    def url(self) -> str:
        assert self.server is not None
        scheme = "https" if self.ssl_context else "http"
        return f"{scheme}://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.handlers[task] = writer
        self.connections += 1
        self.open += 1
        self.most_open = max(self.most_open, self.open)
        n = 0
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head[:-4].split(b"\r\n")
                self.heads.append(lines)
                length = next((int(line.split(b":", 1)[1]) for line in lines
                               if line.lower().startswith(b"content-length:")), 0)
                body = await reader.readexactly(length)
                n += 1
                answer = await self.answer(lines, body, n)
                if answer is None:
                    break
                writer.write(answer)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self.open -= 1
            self.handlers.pop(task, None)
            writer.close()


def json_answer(data: Any, *headers: bytes, status: bytes = b"200 OK") -> bytes:
    body = json.dumps(data).encode()
    extra = b"".join(h + b"\r\n" for h in headers)
    return (b"HTTP/1.1 " + status + b"\r\nContent-Type: application/json\r\nContent-Length: "
            + str(len(body)).encode() + b"\r\n" + extra + b"\r\n" + body)


def echo_n(body: bytes) -> int:
    return int(json.loads(body)["n"])


async def echo(lines: list[bytes], body: bytes, n: int) -> bytes:
    return json_answer({"n": echo_n(body)})


def pool(**kw: Any) -> KeepAlivePool:
    return KeepAlivePool(timeout_s=kw.pop("timeout_s", 10.0), connect_timeout_s=5.0, **kw)


def target(url: str) -> Target:
    found = target_of(url + "/v1/x")
    assert found is not None
    return found


HEADERS = header_block({"User-Agent": "test", "Accept": "application/json"}) or b""


async def post(p: KeepAlivePool, url: str, n: int) -> WireResponse:
    return await p.post(target(url), HEADERS, json.dumps({"n": n}).encode())


def test_keep_alive_reuses_one_connection_and_sends_a_well_formed_request() -> None:
    async def main() -> None:
        async with RawServer(echo) as server:
            p = pool()
            answers = [json.loads((await post(p, server.url, i)).content)["n"] for i in range(5)]
            assert answers == list(range(5)) and server.connections == 1
            head = server.heads[0]
            assert head[0] == b"POST /v1/x HTTP/1.1"
            fields = {k.lower(): v.strip() for k, _, v in (line.partition(b":") for line in head[1:])}
            assert fields[b"host"] == server.url.split("//")[1].encode()
            assert fields[b"content-type"] == b"application/json" and fields[b"content-length"] == b"8"
            assert fields[b"connection"] == b"keep-alive" and fields[b"user-agent"] == b"test"
            await p.aclose()
            assert p.connections == 0

    asyncio.run(main())


def test_chunked_gzip_trailers_and_an_informational_answer_first() -> None:
    payload = json.dumps({"text": "héllo " * 200}).encode()
    packed = gzip.compress(payload)
    parts = [packed[:7], packed[7:30], packed[30:]]  # none empty (that would end the body)
    assert all(parts)

    async def answer(lines: list[bytes], body: bytes, n: int) -> bytes:
        chunks = b"".join(b"%x; ext=1\r\n%s\r\n" % (len(p), p) for p in parts)
        return (b"HTTP/1.1 100 Continue\r\n\r\n"
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Encoding: gzip\r\nX-Request-Id: r1\r\n\r\n"
                + chunks + b"0\r\nX-Trailer: t\r\n\r\n")

    async def main() -> None:
        async with RawServer(answer) as server:
            p = pool()
            for _ in range(2):  # the second on the same connection: the first was read to its end
                response = await post(p, server.url, 1)
                assert response.status_code == 200 and response.content == payload
                assert response.headers["x-request-id"] == "r1"
            assert server.connections == 1
            await p.aclose()

    asyncio.run(main())


async def three_answers_on_three_connections(server: RawServer) -> None:
    """Post 0, 1 and 2 through a new pool: each answer echoes its number, over three connections."""
    p = pool()
    try:
        assert [json.loads((await post(p, server.url, i)).content)["n"] for i in range(3)] == [0, 1, 2]
        assert server.connections == 3
    finally:
        await p.aclose()


def test_a_connection_the_server_says_it_closes_is_not_reused() -> None:
    async def close_header(lines: list[bytes], body: bytes, n: int) -> bytes | None:
        return json_answer({"n": echo_n(body)}, b"Connection: close") if n == 1 else None

    async def main() -> None:
        async with RawServer(close_header) as server:
            await three_answers_on_three_connections(server)

    asyncio.run(main())


def test_body_until_the_server_closes() -> None:
    class Http10(RawServer):
        async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.connections += 1
            head = await reader.readuntil(b"\r\n\r\n")
            length = next(int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                          if line.lower().startswith(b"content-length:"))
            body = await reader.readexactly(length)
            writer.write(b"HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n")
            await writer.drain()
            writer.write(json.dumps({"n": echo_n(body)}).encode())
            writer.close()

    async def main() -> None:
        async with Http10(echo) as server:
            await three_answers_on_three_connections(server)

    asyncio.run(main())


def test_a_kept_connection_the_server_dropped_is_retried_once_on_a_new_one() -> None:
    async def drops_the_second(lines: list[bytes], body: bytes, n: int) -> bytes | None:
        return json_answer({"n": echo_n(body)}) if n == 1 else None  # reads the request, closes

    async def never(lines: list[bytes], body: bytes, n: int) -> bytes | None:
        return None

    async def main() -> None:
        async with RawServer(drops_the_second) as server:
            # each connection answers once, then drops the next request: that request goes again on
            # a new connection (twice)
            await three_answers_on_three_connections(server)
        async with RawServer(never) as server:  # a new connection that fails: no retry, the error
            p = pool()
            with pytest.raises(httpx.RemoteProtocolError, match="without sending a response"):
                await post(p, server.url, 0)
            assert server.connections == 1 and p.connections == 0
            await p.aclose()

    asyncio.run(main())


def test_failures_are_httpx_exceptions(refused_url: str) -> None:
    silent = asyncio.Event()

    async def hang(lines: list[bytes], body: bytes, n: int) -> bytes | None:
        await silent.wait()
        return None

    async def garbage(lines: list[bytes], body: bytes, n: int) -> bytes | None:
        return b"SSH-2.0-OpenSSH_9.6\r\n\r\n"

    async def bad_length(lines: list[bytes], body: bytes, n: int) -> bytes | None:
        return b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd"

    async def main() -> None:
        p = pool(timeout_s=0.2)
        with pytest.raises(httpx.ConnectError):
            await post(p, refused_url, 0)
        async with RawServer(hang) as server:
            with pytest.raises(httpx.ReadTimeout, match="0.2 s"):
                await post(p, server.url, 0)
            silent.set()
        async with RawServer(garbage) as server:
            with pytest.raises(httpx.RemoteProtocolError, match="status line"):
                await post(p, server.url, 0)
        async with RawServer(bad_length) as server:
            with pytest.raises(httpx.RemoteProtocolError, match="Content-Length"):
                await post(p, server.url, 0)
        assert p.connections == 0
        await p.aclose()

    asyncio.run(main())


def test_at_most_max_connections_at_once_and_a_cancelled_request_frees_its_own() -> None:
    release = asyncio.Event()

    async def slow(lines: list[bytes], body: bytes, n: int) -> bytes:
        if echo_n(body) < 0:
            await release.wait()
        return json_answer({"n": echo_n(body)})

    async def main() -> None:
        async with RawServer(slow) as server:
            p = pool(max_connections=2)
            answers = await asyncio.gather(*(post(p, server.url, i) for i in range(12)))
            assert [json.loads(r.content)["n"] for r in answers] == list(range(12))
            assert server.most_open <= 2 and p.connections <= 2
            stuck = asyncio.ensure_future(post(p, server.url, -1))
            while server.open < 1 or len(server.heads) < 13:  # the request has reached the server
                await asyncio.sleep(0.01)
            stuck.cancel()
            with pytest.raises(asyncio.CancelledError):
                await stuck
            release.set()
            assert json.loads((await post(p, server.url, 99)).content)["n"] == 99
            assert p.connections <= 2
            await p.aclose()

    asyncio.run(main())


def _certificate(directory: Path) -> tuple[Path, Path]:
    x509 = pytest.importorskip("cryptography.x509")
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
            .sign(key, hashes.SHA256()))
    cert_file, key_file = directory / "cert.pem", directory / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_file, key_file


def test_tls_verified_with_the_environments_certificates(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cert_file, key_file = _certificate(tmp_path)
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(cert_file, key_file)

    async def main() -> None:
        async with RawServer(echo, server_context) as server:
            untrusting = pool(ssl_context=ssl.create_default_context())
            with pytest.raises(httpx.ConnectError, match="(?i)certificate"):
                await post(untrusting, server.url, 0)
            await untrusting.aclose()
            monkeypatch.setenv("SSL_CERT_FILE", str(cert_file))  # httpx's trust_env settings
            endpoint = HTTPEndpoint(server.url + "/v1", name="tls", retries=0)
            assert endpoint.wire(endpoint.url("/x")) is not None
            for i in range(3):
                _, headers, data = await endpoint.post_json("/x", {"n": i})
                assert data == {"n": i} and headers["content-type"] == "application/json"
            assert server.connections == 1
            await endpoint.aclose()

    asyncio.run(main())


def test_the_endpoint_leaves_proxied_requests_and_odd_headers_to_httpx(monkeypatch: pytest.MonkeyPatch) -> None:
    async def proxy(lines: list[bytes], body: bytes, n: int) -> bytes:
        return json_answer({"n": echo_n(body), "line": lines[0].decode()})

    async def main() -> None:
        async with RawServer(proxy) as server:
            monkeypatch.setenv("HTTP_PROXY", server.url)
            monkeypatch.delenv("NO_PROXY", raising=False)
            monkeypatch.delenv("no_proxy", raising=False)
            endpoint = HTTPEndpoint("http://models.invalid/v1", name="proxied", retries=0)
            assert endpoint.wire(endpoint.url("/x")) is None
            _, _, data = await endpoint.post_json("/x", {"n": 5})
            assert data == {"n": 5, "line": "POST http://models.invalid/v1/x HTTP/1.1"}  # the proxy's form
            await endpoint.aclose()
            monkeypatch.delenv("HTTP_PROXY")
            odd = HTTPEndpoint(server.url + "/v1", name="odd", headers={"X-Note": "a\r\nInjected: yes"})
            assert odd.wire(odd.url("/x")) is None
            await odd.aclose()

    asyncio.run(main())


def test_errors_through_the_endpoint_keep_their_kinds_and_words(refused_url: str) -> None:
    async def status_500(lines: list[bytes], body: bytes, n: int) -> bytes:
        return json_answer({"error": {"message": "boom", "type": "server_error"}}, b"x-request-id: q9",
                           status=b"500 Internal Server Error")

    async def main() -> None:
        refused = HTTPEndpoint(refused_url + "/v1", name="local", retries=0)
        with pytest.raises(ProviderError) as info:
            await refused.post_json("/x", {"n": 1})
        assert info.value.kind == "connection" and refused_url in info.value.message
        async with RawServer(status_500) as server:
            endpoint = HTTPEndpoint(server.url + "/v1", name="local", retries=0)
            with pytest.raises(ProviderError) as info:
                await endpoint.post_json("/x", {"n": 1})
            assert info.value.kind == "server" and '"boom"' in info.value.message
            assert info.value.details["request_id"] == "q9"
            await endpoint.aclose()

    asyncio.run(main())


def test_target_of_takes_plain_http_urls_only() -> None:
    found = target_of("https://API.example.com/v1/chat?x=1")
    assert found == Target(("https", "api.example.com", 443), b"api.example.com", b"/v1/chat?x=1")
    ipv6 = target_of("http://[::1]:8080/v1")
    assert ipv6 is not None and ipv6.host_header == b"[::1]:8080" and ipv6.origin == ("http", "::1", 8080)
    assert target_of("http://user:pw@host/v1") is None  # httpx sends those as Basic auth
    assert target_of("ftp://host/v1") is None and target_of("http://host:99999/") is None
    assert target_of("http://bücher.example/v1") is None
