"""Jupyter messages (messaging spec 5.4): parsing, signing and building.

The wire format is jupyter_client's (its ``Session`` supplies the key, the HMAC scheme and the
session id); the per-message work is done here, because it is on every request's critical path:
the HMAC of every incoming message is verified and replayed signatures are rejected, as Session
does, but dates stay the strings they arrived as (Session parses them with dateutil, and the
kernel only echoes them back in parent headers), and a request's parent header is serialised
once for all the messages that answer it (busy, execute_input, output, reply, idle).
"""

from __future__ import annotations

import hmac
import itertools
import json
import os
import random
import re
import threading
import time
from datetime import UTC, datetime
from json.encoder import c_make_encoder, encode_basestring
from typing import Any

from jupyter_client import protocol_version_info
from jupyter_client.adapter import adapt
from jupyter_client.jsonutil import json_default
from jupyter_client.session import Session

from .lua.source import well_formed

PROTOCOL_VERSION = "5.4"
DELIM = b"<IDS|MSG>"
#: Signatures remembered to reject a replayed message (as jupyter_client's Session does).
DIGEST_HISTORY_SIZE = 2**16

_encoder = json.JSONEncoder(default=json_default, ensure_ascii=False, allow_nan=False)
_make_encoder = c_make_encoder  # (None without the C accelerator)
_EMPTY = b"{}"
#: Text that stands in a JSON string as it is (no quote, backslash or control character to escape).
_JSON_PLAIN = re.compile(r"[A-Za-z0-9_.:+-]*\Z")
#: The major version of a header's ``version`` that jupyter_client's adapt() leaves as it is.
_ADAPTED_TO = str(protocol_version_info[0])


def pack(obj: Any) -> bytes:
    """JSON bytes of a message part, as jupyter_client packs them (dates as ISO 8601 with Z,
    bytes as base64, no NaN)."""
    if _make_encoder is None:
        return _encoder.encode(obj).encode("utf8", errors="surrogateescape")
    # What _encoder.encode does, without the Python layers around the C encoder (a third of the
    # cost for a message's small parts). Fresh markers per call: a cycle is still an error.
    return "".join(_make_encoder({}, json_default, encode_basestring, None, ": ", ", ", False, False, False)(obj, 0)
                   ).encode("utf8", errors="surrogateescape")


def _unpack(part: bytes) -> Any:
    """A message part's JSON: UTF-8, as the protocol says (json.loads of bytes would first guess
    the encoding); ``{}`` (a request's parent header and metadata, as a rule) without the parser.
    A lone surrogate escaped in the JSON (``\\ud800``, which is not text) becomes U+FFFD: it could
    not be encoded again, in a reply, an iopub message, a Lua string or a record."""
    if part == _EMPTY:
        return {}
    value = json.loads(str(part, "utf-8"))
    if b"\\u" in part and _ESCAPED_SURROGATE.search(part):
        value = _without_lone_surrogates(value)
    return value


_ESCAPED_SURROGATE = re.compile(rb"\\u[dD][89a-fA-F]")


def _without_lone_surrogates(value: Any) -> Any:
    """``value`` (parsed JSON) with every lone surrogate in its strings and keys replaced by U+FFFD
    (a pair escaped as two ``\\u`` escapes is one character once parsed, and stays)."""
    if isinstance(value, str):
        return well_formed(value)
    if isinstance(value, list):
        return [_without_lone_surrogates(item) for item in value]
    if isinstance(value, dict):
        return {_without_lone_surrogates(k): _without_lone_surrogates(v) for k, v in value.items()}
    return value


_second_text: tuple[int, str] = (-1, "")  # the last whole second formatted, and its text


def _utc_now() -> str:
    """Now in UTC as ``datetime.now(UTC).isoformat()`` writes it, with ``Z`` for ``+00:00``. The
    date and time of day are formatted once per second (every message has a date)."""
    global _second_text
    second, ns = divmod(time.time_ns(), 1_000_000_000)
    last, text = _second_text
    if second != last:
        text = datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S")
        _second_text = (second, text)  # one assignment: a thread reading it sees a whole pair
    micro = ns // 1000
    return f"{text}.{micro:06d}Z" if micro else f"{text}Z"


class ProtocolError(Exception):
    """A frame sequence that is not a valid, correctly signed Jupyter message."""


class BadRequest(ValueError):
    """A request whose content has a field of the wrong type: answered with an error reply that
    names the field (and logged as one line, not a traceback)."""


_JSON_NAMES = {str: "a string", int: "an integer", bool: "a boolean", dict: "an object", list: "an array"}


def json_kind(value: Any) -> str:
    """What a parsed JSON value is, as a message says it after "got": ``an array``, ``null``, ..."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, float):
        return "a number"
    return _JSON_NAMES.get(type(value), type(value).__name__)


def field(content: dict[str, Any], name: str, kind: type, default: Any) -> Any:
    """``content[name]`` when it has the JSON type ``kind`` (``default`` when absent or null);
    otherwise :class:`BadRequest` naming the field. Integers are not booleans; a float that is
    whole counts as an integer."""
    value = content.get(name)
    if value is None:
        return default
    if kind is int and isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, kind) and not (kind is int and isinstance(value, bool)):
        return value
    raise BadRequest(f"'{name}' must be {_JSON_NAMES[kind]}, got {json_kind(value)}")


class Protocol:
    """Serialises, signs and verifies messages for one kernel session."""

    def __init__(self, key: bytes, signature_scheme: str = "hmac-sha256") -> None:
        self.session = Session(key=key, signature_scheme=signature_scheme, username="kernel")
        self._auth = self.session.auth  # an HMAC object to copy, None without a key
        self._prefix = f"{self.session.session}_{os.getpid()}_"
        self._counter = itertools.count()  # next() is atomic: both threads build messages
        self._digests: set[bytes] = set()
        self._digests_lock = threading.Lock()  # the I/O loop and the control thread both parse
        self._parent: tuple[dict[str, Any] | None, bytes] = (None, _EMPTY)  # the last parent header, packed
        # Every message's header, written by formatting instead of by the JSON encoder (a third of
        # the cost of building a message): only when what is inserted needs no escaping.
        self._header_format: str | None = None
        if _JSON_PLAIN.match(self._prefix) and _JSON_PLAIN.match(self.session.session):
            self._header_format = ('{"msg_id":"' + self._prefix.replace("%", "%%") + '%d","msg_type":"%s",'
                                   '"username":"kernel","session":"' + self.session.session.replace("%", "%%")
                                   + '","date":"%s","version":"' + PROTOCOL_VERSION + '"}')
        self._plain_types: set[str] = set()  # message types checked to need no escaping

    @property
    def session_id(self) -> str:
        return self.session.session

    def _sign(self, parts: list[bytes]) -> bytes:
        if self._auth is None:
            return b""
        h = self._auth.copy()
        for part in parts:
            h.update(part)
        return h.hexdigest().encode()

    def parse(self, frames: list[bytes]) -> tuple[list[bytes], dict[str, Any]]:
        """Split routing identities from the message and verify it; raise ProtocolError if bad."""
        try:
            at = frames.index(DELIM)
        except ValueError:
            raise ProtocolError("no <IDS|MSG> delimiter in the message") from None
        idents, parts = frames[:at], frames[at + 1:]
        if len(parts) < 5:
            raise ProtocolError("malformed message: fewer than 5 parts after the delimiter")
        if self._auth is not None:
            signature = parts[0]
            if not signature:
                raise ProtocolError("unsigned message")
            if not hmac.compare_digest(signature, self._sign(parts[1:5])):
                raise ProtocolError(f"invalid signature: {signature!r}")
            with self._digests_lock:  # checked and remembered at once: a replay on another channel fails
                if signature in self._digests:
                    raise ProtocolError(f"duplicate signature: {signature!r}")
                self._remember(signature)
        try:
            header = _unpack(parts[1])
            msg = {"header": header, "msg_id": header.get("msg_id") if isinstance(header, dict) else None,
                   "msg_type": header.get("msg_type") if isinstance(header, dict) else None,
                   "parent_header": _unpack(parts[2]), "metadata": _unpack(parts[3]),
                   "content": _unpack(parts[4]), "buffers": [memoryview(b) for b in parts[5:]]}
        except (ValueError, UnicodeDecodeError) as exc:
            raise ProtocolError(f"{type(exc).__name__}: {exc}") from None
        if not isinstance(header, dict) or not isinstance(header.get("msg_type"), str):
            raise ProtocolError("message header has no msg_type")
        if not isinstance(msg["content"], dict):
            raise ProtocolError("message content is not a JSON object")
        if not isinstance(msg["parent_header"], dict) or not isinstance(msg["metadata"], dict):
            raise ProtocolError("message parent_header and metadata must be JSON objects")
        version = header.get("version")
        if type(version) is str and version.partition(".")[0] == _ADAPTED_TO and "date" in header:
            return idents, msg  # a current message, which adapt() returns unchanged
        try:
            msg = adapt(msg)  # a protocol 4 client's message, in today's terms
        except Exception as exc:  # noqa: BLE001 - whatever an old-format message breaks in the adapter
            raise ProtocolError(f"{type(exc).__name__}: {exc}") from None
        return idents, msg

    def _remember(self, signature: bytes) -> None:
        digests = self._digests
        digests.add(signature)
        if len(digests) > DIGEST_HISTORY_SIZE:  # forget a random tenth, as Session does
            for old in random.sample(tuple(digests), len(digests) // 10):
                digests.discard(old)

    def build(
        self,
        msg_type: str,
        content: dict[str, Any],
        parent: dict[str, Any] | None = None,
        idents: list[bytes] | None = None,
        metadata: dict[str, Any] | None = None,
        buffers: list[bytes] | None = None,
    ) -> list[bytes]:
        """Build and sign a message; return the frames to send."""
        if self._header_format is not None and (msg_type in self._plain_types or self._plain_type(msg_type)):
            packed_header = (self._header_format % (next(self._counter), msg_type, _utc_now())).encode()
        else:
            packed_header = pack({"msg_id": f"{self._prefix}{next(self._counter)}", "msg_type": msg_type,
                                  "username": "kernel", "session": self.session.session, "date": _utc_now(),
                                  "version": PROTOCOL_VERSION})
        parts = [packed_header, self._packed_parent(parent), pack(metadata) if metadata else _EMPTY,
                 pack(content) if content is not None else _EMPTY]
        frames = [*idents] if idents else []
        frames.append(DELIM)
        frames.append(self._sign(parts))
        frames.extend(parts)
        if buffers:
            frames.extend(buffers)
        return frames

    def _plain_type(self, msg_type: str) -> bool:
        if not _JSON_PLAIN.match(msg_type):
            return False
        self._plain_types.add(msg_type)
        return True

    def _packed_parent(self, parent: dict[str, Any] | None) -> bytes:
        """The parent's header, packed (the last one is kept: a request's messages share it).
        Not thread-safe by itself, but the pair is replaced in one assignment, so a race costs
        a second packing, never a wrong header."""
        if not parent:
            return _EMPTY
        last, packed = self._parent
        if last is parent:
            return packed
        header = parent.get("header", parent)
        packed = pack(header) if header else _EMPTY
        self._parent = (parent, packed)
        return packed
