"""Jupyter messages (messaging spec 5.4): parsing, signing and building, on jupyter_client's Session.

Session verifies the HMAC of every incoming message and rejects replayed signatures.
"""

from __future__ import annotations

from typing import Any

from jupyter_client.session import Session

PROTOCOL_VERSION = "5.4"


class ProtocolError(Exception):
    """A frame sequence that is not a valid, correctly signed Jupyter message."""


class BadRequest(ValueError):
    """A request whose content has a field of the wrong type: answered with an error reply that
    names the field (and logged as one line, not a traceback)."""


_JSON_NAMES = {str: "a string", int: "an integer", bool: "a boolean", dict: "an object", list: "an array"}


def _json_name(value: Any) -> str:
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
    raise BadRequest(f"'{name}' must be {_JSON_NAMES[kind]}, got {_json_name(value)}")


class Protocol:
    """Serialises, signs and verifies messages for one kernel session."""

    def __init__(self, key: bytes, signature_scheme: str = "hmac-sha256") -> None:
        self.session = Session(key=key, signature_scheme=signature_scheme, username="kernel")

    @property
    def session_id(self) -> str:
        return self.session.session

    def parse(self, frames: list[bytes]) -> tuple[list[bytes], dict[str, Any]]:
        """Split routing identities from the message and verify it; raise ProtocolError if bad."""
        try:
            idents, rest = self.session.feed_identities(frames, copy=True)
            msg = self.session.deserialize(rest, content=True, copy=True)
        except Exception as exc:
            raise ProtocolError(f"{type(exc).__name__}: {exc}") from None
        header = msg.get("header")
        if not isinstance(header, dict) or not isinstance(header.get("msg_type"), str):
            raise ProtocolError("message header has no msg_type")
        if not isinstance(msg.get("content"), dict):
            raise ProtocolError("message content is not a JSON object")
        return idents, msg

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
        msg = self.session.msg(msg_type, content=content, parent=parent or {}, metadata=metadata or {})
        msg["header"]["version"] = PROTOCOL_VERSION
        frames = self.session.serialize(msg, ident=idents)
        if buffers:
            frames.extend(buffers)
        return frames
