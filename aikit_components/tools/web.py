"""Web tools: HTTP requests, readable page text, CSS selection, URL parsing.

Every URL, and every redirect hop (redirects are followed here, at most 5), passes
``SecurityPolicy.resolve_and_check`` before a request is sent, so private, loopback and
link-local addresses (127.0.0.1, 10.x, 169.254.169.254) are refused unless the policy allows them.
The connection itself is made to an address checked at connect time as well (a network backend
that resolves, checks and connects to the checked address), which closes the DNS-rebinding gap
between the check and httpx's own resolution. Environment proxies and ``.netrc`` are ignored
(``trust_env=False``): a proxy would hide the real destination from the policy.

Transient failures (connect errors, timeouts, 429/502/503/504) are retried with exponential backoff
and jitter, honouring ``Retry-After`` (capped). Bodies are read in chunks and refused beyond
``max_bytes`` (after decompression, so a gzip bomb stops early).

With the process's pipeline (``ToolContext.pipeline``) every request on the wire (each hop, each
retry) is an operation of kind ``HTTP_REQUEST`` (:mod:`aikit_components.operations.http`).
"""

from __future__ import annotations

import asyncio
import base64
import email.utils
import json as jsonlib
import random
import re
import socket
import ssl
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urljoin, urlsplit

import httpcore
import httpx

from ..errors import AikitError, InvalidArgument, IOFailure, NotFound, ResourceExhausted, Timeout
from ..operations.http import OperationTransport
from ..security import SecurityPolicy
from .base import ToolContext, tool

DEFAULT_TIMEOUT_S = 30.0
DEFAULT_RETRIES = 2
DEFAULT_MAX_BYTES = 10 * 1024 * 1024
DEFAULT_MAX_CHARS = 20_000
DEFAULT_BACKOFF_S = 0.5
MAX_BACKOFF_S = 10.0
DEFAULT_MAX_RETRY_AFTER_S = 30.0
MAX_REDIRECTS = 5
MAX_LINKS = 200

RETRY_STATUSES = frozenset({429, 502, 503, 504})
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})
METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
USER_AGENT = "aikit/0.1 (+https://github.com/aikit; tools.web)"


# --------------------------------------------------------------------------------------------
# Connect-time address check
# --------------------------------------------------------------------------------------------


class PolicyBackend(httpcore.AsyncNetworkBackend):
    """Resolves the host itself, lets the policy check every address, then connects to a checked
    address (TLS still verifies the original host name: httpcore passes it as SNI)."""

    def __init__(self, policy: SecurityPolicy) -> None:
        self._policy = policy
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(self, host: str, port: int, timeout: float | None = None, local_address: str | None = None,
                          socket_options: Iterable[Any] | None = None) -> httpcore.AsyncNetworkStream:
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except socket.gaierror as exc:
            raise httpcore.ConnectError(f"cannot resolve {host!r}: {exc.strerror}") from None
        addresses = list(dict.fromkeys(info[4][0] for info in infos))
        self._policy.check_addresses(host, addresses)
        last: Exception = httpcore.ConnectError(f"no address for {host!r}")
        for address in addresses:
            try:
                return await self._inner.connect_tcp(address, port, timeout=timeout, local_address=local_address,
                                                     socket_options=socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                last = exc
        raise last

    async def connect_unix_socket(self, path: str, timeout: float | None = None,
                                  socket_options: Iterable[Any] | None = None) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("unix sockets are not available to web tools")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


_ssl_context: ssl.SSLContext | None = None


def _ssl() -> ssl.SSLContext:
    """One verifying SSL context per process (building one loads the CA bundle: ~60 ms)."""
    global _ssl_context
    if _ssl_context is None:
        _ssl_context = httpx.create_ssl_context(trust_env=False)
    return _ssl_context


def _transport(policy: SecurityPolicy) -> httpx.AsyncHTTPTransport:
    transport = httpx.AsyncHTTPTransport(verify=_ssl(), trust_env=False, retries=0)
    if hasattr(transport, "_pool"):  # httpx builds its pool privately; swap in one with our backend
        transport._pool = httpcore.AsyncConnectionPool(
            ssl_context=_ssl(), max_connections=10,
            max_keepalive_connections=5, keepalive_expiry=5.0, network_backend=PolicyBackend(policy),
        )
    return transport


# --------------------------------------------------------------------------------------------
# The request engine
# --------------------------------------------------------------------------------------------


@dataclass
class _Response:
    status: int
    headers: httpx.Headers
    content: bytes
    url: str
    elapsed_ms: float
    encoding: str | None
    redirects: list[str]


def _setting_float(ctx: ToolContext, key: str, default: float) -> float:
    return float(ctx.setting(key, default))


def _check_url_form(url: str) -> None:
    if not url or not url.strip():
        raise InvalidArgument("url is empty: pass an absolute http(s) URL such as https://example.org/")
    if "://" not in url:
        raise InvalidArgument(f"URL {url!r} has no scheme: write it as https://{url.lstrip('/')}")


def _query_value(value: Any) -> Any:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, list):
        return [_query_value(v) for v in value]
    if value is None:
        return ""
    if isinstance(value, (str, int, float)):
        return str(value)
    raise InvalidArgument(f"query parameter value {value!r} must be a string, number, boolean or list of them")


def _retry_after(headers: httpx.Headers, cap: float) -> float | None:
    raw = headers.get("retry-after")
    if not raw:
        return None
    raw = raw.strip()
    try:
        seconds = float(raw)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(raw)
        except (TypeError, ValueError):
            return None
        seconds = when.timestamp() - time.time()
    return max(0.0, min(seconds, cap))


def _backoff(attempt: int, base: float) -> float:
    delay = min(MAX_BACKOFF_S, base * (2 ** attempt))
    return delay * (0.5 + random.random() / 2)  # "equal jitter": never 0, never more than the cap


async def _read_capped(response: httpx.Response, max_bytes: int) -> bytes:
    declared = response.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > max_bytes:
        raise ResourceExhausted(
            f"{response.url} is {int(declared)} bytes, more than max_bytes ({max_bytes}); raise max_bytes to fetch it",
            details={"rule": "max_bytes", "limit": max_bytes, "size": int(declared)})
    body = bytearray()
    async for chunk in response.aiter_bytes():
        body += chunk
        if len(body) > max_bytes:
            raise ResourceExhausted(
                f"the response from {response.url} exceeded max_bytes ({max_bytes} bytes) and was abandoned; "
                "raise max_bytes to fetch it", details={"rule": "max_bytes", "limit": max_bytes})
    return bytes(body)


async def _request(ctx: ToolContext, url: str, *, method: str = "GET", headers: dict[str, str] | None = None,
                   params: dict[str, Any] | None = None, json: Any = None, body: str | None = None,
                   timeout_s: float | None = None, retries: int | None = None,
                   max_bytes: int | None = None) -> _Response:
    """One logical request: policy check per hop, manual redirects, retries, capped body."""
    _check_url_form(url)
    method = method.upper()
    if method not in METHODS:
        raise InvalidArgument(f"method {method!r} is not supported; use one of {', '.join(METHODS)}")
    if json is not None and body is not None:
        raise InvalidArgument("pass either json or body, not both")
    timeout = float(timeout_s if timeout_s is not None else _setting_float(ctx, "tools.http_timeout_s", DEFAULT_TIMEOUT_S))
    if timeout <= 0:
        raise InvalidArgument(f"timeout_s must be greater than 0, got {timeout}")
    if retries is None:
        retries = int(ctx.setting("tools.http_retries", DEFAULT_RETRIES)) if method in IDEMPOTENT_METHODS else 0
    if retries < 0 or retries > 10:
        raise InvalidArgument(f"retries must be between 0 and 10, got {retries}")
    cap = int(max_bytes if max_bytes is not None else ctx.setting("tools.http_max_bytes", DEFAULT_MAX_BYTES))
    if cap < 1:
        raise InvalidArgument(f"max_bytes must be at least 1, got {cap}")
    backoff = _setting_float(ctx, "tools.http_backoff_s", DEFAULT_BACKOFF_S)
    retry_after_cap = _setting_float(ctx, "tools.http_max_retry_after_s", DEFAULT_MAX_RETRY_AFTER_S)

    send_headers = {str(k): str(v) for k, v in (headers or {}).items()}
    content: bytes | None = None
    if json is not None:
        try:
            content = jsonlib.dumps(json, ensure_ascii=False).encode("utf-8")
        except (TypeError, ValueError) as exc:
            raise InvalidArgument(f"json body cannot be encoded as JSON: {exc}") from None
        if not any(k.lower() == "content-type" for k in send_headers):
            send_headers["Content-Type"] = "application/json"
    elif body is not None:
        content = body.encode("utf-8")
    try:
        current = httpx.URL(url)
        if params:
            current = current.copy_merge_params({str(k): _query_value(v) for k, v in params.items()})
    except httpx.InvalidURL as exc:
        raise InvalidArgument(f"URL {url!r} is malformed: {exc}") from None

    started = time.perf_counter()
    redirects: list[str] = []
    transport: httpx.AsyncBaseTransport = _transport(ctx.policy)
    if ctx.pipeline is not None:
        transport = OperationTransport(transport, ctx.pipeline, ctx)
    async with httpx.AsyncClient(transport=transport, follow_redirects=False, trust_env=False,
                                 timeout=httpx.Timeout(timeout), headers={"User-Agent": USER_AGENT}) as client:
        while True:
            await ctx.policy.resolve_and_check(str(current))
            response, data = await _send(client, method, current, send_headers, content, timeout=timeout,
                                         retries=retries, max_bytes=cap, backoff=backoff,
                                         retry_after_cap=retry_after_cap)
            location = response.headers.get("location")
            if response.status_code in REDIRECT_STATUSES and location:
                if len(redirects) >= MAX_REDIRECTS:
                    raise IOFailure(f"too many redirects (more than {MAX_REDIRECTS}) starting at {url}; "
                                    "request the final URL directly", details={"redirects": redirects})
                target = httpx.URL(urljoin(str(current), location))
                redirects.append(str(target))
                if (response.status_code == 303 and method != "HEAD") or (
                        response.status_code in (301, 302) and method == "POST"):
                    method, content = "GET", None
                    send_headers = {k: v for k, v in send_headers.items()
                                    if k.lower() not in ("content-type", "content-length")}
                if (target.scheme, target.host, target.port) != (current.scheme, current.host, current.port):
                    send_headers = {k: v for k, v in send_headers.items()
                                    if k.lower() not in ("authorization", "cookie", "proxy-authorization")}
                current = target
                continue
            return _Response(response.status_code, response.headers, data, str(current),
                             round((time.perf_counter() - started) * 1000, 1), response.charset_encoding, redirects)


async def _send(client: httpx.AsyncClient, method: str, url: httpx.URL, headers: dict[str, str], content: bytes | None,
                *, timeout: float, retries: int, max_bytes: int, backoff: float,
                retry_after_cap: float) -> tuple[httpx.Response, bytes]:
    attempt = 0
    while True:
        delay: float | None = None
        try:
            async with asyncio.timeout(timeout):  # the whole attempt, body included
                request = client.build_request(method, url, headers=headers, content=content)
                response = await client.send(request, stream=True)
                try:
                    if response.status_code in RETRY_STATUSES and attempt < retries:
                        delay = _retry_after(response.headers, retry_after_cap)
                        if delay is None:
                            delay = _backoff(attempt, backoff)
                    elif response.status_code in REDIRECT_STATUSES or method == "HEAD":
                        return response, b""
                    else:
                        return response, await _read_capped(response, max_bytes)
                finally:
                    await response.aclose()
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            if attempt >= retries:
                kind = Timeout if isinstance(exc, httpx.ConnectTimeout) else IOFailure
                raise kind(f"could not connect to {url.host}:{url.port or _default_port(url)} "
                           f"after {attempt + 1} attempt(s): {exc or type(exc).__name__}; check the URL and that the "
                           "server is up", details={"url": str(url), "attempts": attempt + 1}) from None
        except (httpx.TimeoutException, TimeoutError):
            if attempt >= retries:
                raise Timeout(f"{method} {url} did not complete within {timeout:g} s (attempt {attempt + 1} of "
                              f"{retries + 1}); raise timeout_s or retries", details={"url": str(url),
                              "timeout_s": timeout, "attempts": attempt + 1}) from None
        except (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError) as exc:
            if attempt >= retries:
                raise IOFailure(f"{method} {url} failed: {exc or type(exc).__name__}",
                                details={"url": str(url), "attempts": attempt + 1}) from None
        except (httpx.InvalidURL, httpx.UnsupportedProtocol) as exc:
            raise InvalidArgument(f"URL {url} cannot be requested: {exc}") from None
        except httpx.HTTPError as exc:
            raise IOFailure(f"{method} {url} failed: {type(exc).__name__}: {exc}", details={"url": str(url)}) from None
        await asyncio.sleep(delay if delay is not None else _backoff(attempt, backoff))
        attempt += 1


def _default_port(url: httpx.URL) -> int:
    return 443 if url.scheme == "https" else 80


_TEXTUAL = re.compile(r"^(text/|application/(.*\+)?(json|xml|javascript|ecmascript|x-www-form-urlencoded|x-ndjson)"
                      r"|image/svg\+xml)")


def _content_type(headers: httpx.Headers) -> str:
    return headers.get("content-type", "").split(";")[0].strip().lower()


def _decode(response: _Response) -> str:
    encoding = response.encoding or "utf-8"
    try:
        return response.content.decode(encoding, errors="replace")
    except LookupError:
        return response.content.decode("utf-8", errors="replace")


# --------------------------------------------------------------------------------------------
# Tools
# --------------------------------------------------------------------------------------------


@tool(category="web", security="network", examples=[
    {"args": {"url": "https://api.example.org/items", "params": {"q": "lua"}},
     "result": {"status": 200, "headers": {"content-type": "application/json"}, "json": {"items": []},
                "url": "https://api.example.org/items?q=lua", "elapsed_ms": 84.2}},
])
async def http_request(ctx: ToolContext, url: str, method: str = "GET", headers: dict[str, str] | None = None,
                       params: dict[str, Any] | None = None, json: Any = None, body: str | None = None,
                       timeout_s: float | None = None, retries: int | None = None,
                       max_bytes: int | None = None) -> dict[str, Any]:
    """Send an HTTP(S) request and return the response (redirects followed, transient failures retried).

    Args:
        url: Absolute http or https URL; private and loopback addresses need security.allowed_hosts.
        method: GET, HEAD, POST, PUT, PATCH, DELETE or OPTIONS.
        headers: Request headers.
        params: Query parameters added to the URL (a list value repeats the parameter).
        json: A value sent as a JSON body (sets Content-Type: application/json).
        body: A text body (UTF-8); use either json or body.
        timeout_s: Seconds allowed for each attempt, body included (default tools.http_timeout_s, 30).
        retries: Extra attempts on connect errors, timeouts, 429/502/503/504 (default 2; 0 for POST and PATCH).
        max_bytes: Largest response body accepted (default 10 MiB); a bigger one is an error.

    Returns:
        {status, headers, url (final, after redirects), elapsed_ms} plus json (a JSON response), text
        (other text) or base64 (binary). An HTTP error status is returned, not raised.
    """
    response = await _request(ctx, url, method=method, headers=headers, params=params, json=json, body=body,
                              timeout_s=timeout_s, retries=retries, max_bytes=max_bytes)
    result: dict[str, Any] = {
        "status": response.status,
        "headers": {k.lower(): v for k, v in response.headers.items()},
        "url": response.url, "elapsed_ms": response.elapsed_ms,
    }
    if response.redirects:
        result["redirects"] = response.redirects
    kind = _content_type(response.headers)
    if response.content and (kind == "application/json" or kind.endswith("+json")):
        try:
            result["json"] = jsonlib.loads(response.content)
            return result
        except ValueError:
            pass
    if not response.content or not kind or _TEXTUAL.match(kind):
        result["text"] = _decode(response)
    else:
        result["base64"] = base64.b64encode(response.content).decode("ascii")
    return result


_DROP_TAGS = ("script", "style", "noscript", "template", "svg", "canvas", "iframe", "nav", "head", "object", "embed")
_BLOCK_TAGS = ("p", "div", "section", "article", "main", "header", "footer", "aside", "blockquote", "pre", "ul",
               "ol", "li", "dl", "dt", "dd", "table", "tr", "td", "th", "form", "fieldset", "figure", "figcaption",
               "h1", "h2", "h3", "h4", "h5", "h6", "hr", "address", "details", "summary")


def _parser() -> str:
    try:
        import lxml  # noqa: F401

        return "lxml"
    except ImportError:  # pragma: no cover - depends on the environment
        return "html.parser"


def _soup(html: str) -> Any:
    from bs4 import BeautifulSoup

    return BeautifulSoup(html, _parser())


def _readable(html: str, base_url: str, max_chars: int) -> dict[str, Any]:
    soup = _soup(html)
    title_tag = soup.find("title")
    title = " ".join(title_tag.get_text().split()) if title_tag else None
    links: list[dict[str, str]] = []
    seen: set[str] = set()
    for anchor in soup.find_all("a", href=True):
        href = urljoin(base_url, str(anchor["href"]).strip()).split("#")[0]
        if not href.startswith(("http://", "https://")) or href in seen:
            continue
        seen.add(href)
        links.append({"text": " ".join(anchor.get_text(" ").split()), "url": href})
        if len(links) >= MAX_LINKS:
            break
    for tag in soup.find_all(_DROP_TAGS):
        tag.decompose()
    for tag in soup.find_all("br"):
        tag.replace_with("\n")
    for tag in soup.find_all(_BLOCK_TAGS):
        prefix = ""
        if tag.name in ("h1", "h2", "h3", "h4", "h5", "h6"):
            prefix = "#" * int(tag.name[1]) + " "
        elif tag.name == "li":
            prefix = "- "
        tag.insert_before("\n\n" + prefix)
        tag.insert_after("\n\n")
    lines = [re.sub(r"[ \t\r\f\v\u00a0]+", " ", line).strip() for line in soup.get_text().split("\n")]
    text = re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()
    text = re.sub(r"^(#+ |- )\n+", r"\1", text, flags=re.M)
    truncated = len(text) > max_chars
    return {"title": title, "text": text[:max_chars], "truncated": truncated, "length": len(text), "links": links}


@tool(category="web", security="network", examples=[
    {"args": {"url": "https://example.org/", "max_chars": 2000},
     "result": {"url": "https://example.org/", "status": 200, "title": "Example Domain",
                "text": "# Example Domain\n\nThis domain is for use in illustrative examples.", "truncated": False,
                "length": 66, "links": [{"text": "More information...", "url": "https://www.iana.org/domains/example"}]}},
])
async def fetch_page(ctx: ToolContext, url: str, max_chars: int | None = None) -> dict[str, Any]:
    """Fetch a web page and return its readable text (no scripts, styles or navigation) and links.

    Args:
        url: Absolute http or https URL of an HTML (or plain text) page.
        max_chars: Characters of text returned at most (default tools.fetch_max_chars, 20000).

    Returns:
        {url, status, title, text, truncated, length (of the full text), links: [{text, url}]}.
    """
    limit = int(max_chars if max_chars is not None else ctx.setting("tools.fetch_max_chars", DEFAULT_MAX_CHARS))
    if limit < 1:
        raise InvalidArgument(f"max_chars must be at least 1, got {limit}")
    response = await _request(ctx, url, headers={"Accept": "text/html,application/xhtml+xml,text/plain;q=0.8,*/*;q=0.5"})
    if response.status in (404, 410):
        raise NotFound(f"{response.url} does not exist (HTTP {response.status})",
                       details={"url": response.url, "status": response.status})
    if response.status >= 400:
        raise IOFailure(f"{response.url} answered HTTP {response.status}; fetch_page needs a successful page "
                        "(http_request shows the full response)", details={"url": response.url, "status": response.status})
    kind = _content_type(response.headers)
    text = _decode(response)
    base = {"url": response.url, "status": response.status}
    if kind in ("text/html", "application/xhtml+xml", "") or "html" in kind:
        return {**base, **await asyncio.to_thread(_readable, text, response.url, limit)}
    if kind.startswith("text/"):
        return {**base, "title": None, "text": text[:limit], "truncated": len(text) > limit, "length": len(text),
                "links": []}
    raise InvalidArgument(f"{response.url} is {kind}, not an HTML page; use http_request for other content",
                          details={"url": response.url, "content_type": kind})


def _select(html: str, selector: str, attribute: str | None, base_url: str | None, limit: int) -> list[dict[str, Any]]:
    import soupsieve

    soup = _soup(html)
    try:
        elements = soup.select(selector)
    except soupsieve.SelectorSyntaxError as exc:
        raise InvalidArgument(f"CSS selector {selector!r} is invalid: {str(exc).splitlines()[0]}",
                              details={"selector": selector}) from None
    except (ValueError, NotImplementedError) as exc:
        raise InvalidArgument(f"CSS selector {selector!r} is not supported: {exc}", details={"selector": selector}) from None
    results = []
    for element in elements:
        attrs = {k: " ".join(v) if isinstance(v, list) else str(v) for k, v in element.attrs.items()}
        item: dict[str, Any] = {"tag": element.name, "text": " ".join(element.get_text(" ").split()), "attrs": attrs}
        if attribute is not None:
            if attribute not in attrs:
                continue
            value = attrs[attribute]
            if base_url and attribute in ("href", "src", "action", "data-src"):
                value = urljoin(base_url, value)
            item["value"] = value
        results.append(item)
        if len(results) >= limit:
            break
    return results


@tool(category="web", security="network", examples=[
    {"args": {"html": "<ul><li><a href='/a'>A</a></li></ul>", "selector": "li a", "attribute": "href"},
     "result": [{"tag": "a", "text": "A", "attrs": {"href": "/a"}, "value": "/a"}]},
])
async def html_select(ctx: ToolContext, selector: str, html: str | None = None, url: str | None = None,
                      attribute: str | None = None, limit: int = 500) -> list[dict[str, Any]]:
    """Select elements of an HTML document with a CSS selector.

    Args:
        selector: A CSS selector, e.g. "article h2 > a" or "meta[name=description]".
        html: The HTML text to search (give html or url).
        url: Fetch this page and search it (give html or url).
        attribute: Keep only elements with this attribute and return its value (href/src made absolute for a url).
        limit: Elements returned at most.

    Returns:
        A list of {tag, text, attrs} (plus value when attribute is given), in document order.
    """
    if (html is None) == (url is None):
        raise InvalidArgument("give exactly one of html (the document) or url (a page to fetch)")
    if not selector.strip():
        raise InvalidArgument("selector is empty: pass a CSS selector such as 'h1' or 'a[href]'")
    if limit < 1:
        raise InvalidArgument(f"limit must be at least 1, got {limit}")
    base_url = None
    if url is not None:
        response = await _request(ctx, url, headers={"Accept": "text/html,application/xhtml+xml;q=0.9,*/*;q=0.5"})
        if response.status >= 400:
            error: type[AikitError] = NotFound if response.status in (404, 410) else IOFailure
            raise error(f"{response.url} answered HTTP {response.status}", details={"url": response.url,
                                                                                      "status": response.status})
        html, base_url = _decode(response), response.url
    return await asyncio.to_thread(_select, html or "", selector, attribute, base_url, limit)


@tool(category="web", security="safe", examples=[
    {"args": {"url": "https://example.org:8443/search?q=lua&tag=a&tag=b#top"},
     "result": {"scheme": "https", "host": "example.org", "port": 8443, "path": "/search",
                "query": {"q": "lua", "tag": ["a", "b"]}, "fragment": "top"}},
])
def url_parse(url: str) -> dict[str, Any]:
    """Split a URL into its parts (pure computation, no network access).

    Args:
        url: The URL to parse, e.g. "https://example.org/a?b=1#c".

    Returns:
        {scheme, host, port (explicit or the scheme's default), path, query (name -> value, or a list
        of values when repeated), fragment}.
    """
    if not url.strip():
        raise InvalidArgument("url is empty: pass a URL such as https://example.org/path?x=1")
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as exc:
        raise InvalidArgument(f"URL {url!r} is malformed: {exc}") from None
    if port is None:
        port = {"http": 80, "https": 443, "ws": 80, "wss": 443, "ftp": 21}.get(parts.scheme.lower())
    query: dict[str, Any] = {}
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        if name in query:
            existing = query[name]
            query[name] = [*existing, value] if isinstance(existing, list) else [existing, value]
        else:
            query[name] = value
    return {"scheme": parts.scheme.lower() or None, "host": parts.hostname, "port": port, "path": parts.path,
            "query": query, "fragment": parts.fragment}


TOOLS = [http_request, fetch_page, html_select, url_parse]

__all__ = ["TOOLS", "fetch_page", "html_select", "http_request", "url_parse"]
