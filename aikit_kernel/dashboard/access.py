"""Who may use the dashboard: loopback binds are open to the local machine (with a Host header
check, so a web page cannot reach the dashboard through DNS rebinding); binding any other address
needs a token, checked on every request (the page, the API and the event stream alike).

A browser presents the token once as ``?token=T``: the server answers with an HttpOnly,
SameSite=Strict cookie (named after the port, so two dashboards do not clash) and the page's own
requests carry it from then on. Scripts may send ``Authorization: Bearer T`` instead.
"""

from __future__ import annotations

import hmac
import ipaddress
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from http.cookies import CookieError, SimpleCookie
from urllib.parse import parse_qs, urlsplit

_TOKEN_CHARS = re.compile(r"[A-Za-z0-9._~-]+")
LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"})


class AccessError(ValueError):
    """The dashboard cannot be served as asked (a non-loopback host without a token)."""


def is_loopback(host: str) -> bool:
    """True when ``host`` names this machine's loopback interface ("127.0.0.1", "::1", "localhost")."""
    name = host.strip("[]").lower()
    if name in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def new_token() -> str:
    """A fresh random access token (URL-safe)."""
    return secrets.token_urlsafe(24)


@dataclass(frozen=True, slots=True)
class AccessPolicy:
    """The access rules of one dashboard bound to ``host``:``port``."""

    host: str
    port: int
    token: str | None = None

    @classmethod
    def for_bind(cls, host: str, port: int, token: str | None) -> AccessPolicy:
        """The policy for binding ``host``; raises :class:`AccessError` for a non-loopback host
        without a token."""
        token = token or None
        if token is not None and not _TOKEN_CHARS.fullmatch(token):
            raise AccessError("a dashboard token may hold only letters, digits and . _ ~ - "
                              "(it goes into URLs and a cookie); --new-token makes a suitable one")
        if token is None and not is_loopback(host):
            raise AccessError(
                f"refusing to serve the dashboard on {host}, which is not a loopback address, without a token: "
                "anyone who can reach it would see your runs. Pass --token TOKEN (or --new-token to make one), "
                "set [dashboard] token in aikit.toml, or bind 127.0.0.1")
        return cls(host, port, token)

    @property
    def cookie_name(self) -> str:
        """The name of the cookie that carries the token for this port."""
        return f"aikit_dashboard_{self.port}"

    def host_allowed(self, host_header: str | None) -> bool:
        """Whether a request's Host header may reach this dashboard: on a loopback bind only
        loopback names (DNS rebinding defence); with a token any (the token decides)."""
        if self.token is not None:
            return True
        if not host_header:
            return False
        name = urlsplit(f"//{host_header}").hostname or ""
        return is_loopback(name)

    def presented_token(self, path: str, headers: Mapping[str, str]) -> tuple[str | None, bool]:
        """The token a request presents and whether it came in the URL (``?token=``)."""
        query = parse_qs(urlsplit(path).query).get("token")
        if query:
            return query[-1], True
        auth = headers.get("Authorization") or ""
        if auth.lower().startswith("bearer "):
            return auth[7:].strip(), False
        raw = headers.get("Cookie")
        if raw:
            try:
                cookie = SimpleCookie(raw)
            except CookieError:
                return None, False
            if self.cookie_name in cookie:
                return cookie[self.cookie_name].value, False
        return None, False

    def token_ok(self, presented: str | None) -> bool:
        """Whether ``presented`` is the token (always true without one)."""
        if self.token is None:
            return True
        return presented is not None and hmac.compare_digest(presented.encode(), self.token.encode())

    def set_cookie_header(self) -> str:
        """The Set-Cookie value that stores the token in the browser."""
        return f"{self.cookie_name}={self.token}; Path=/; HttpOnly; SameSite=Strict"
