"""Jupyter messages (messaging spec 5.4): parsing, signing and building, on jupyter_client's Session.

Session verifies the HMAC of every incoming message and rejects replayed signatures.
"""

from __future__ import annotations

from typing import Any

from jupyter_client.session import Session

PROTOCOL_VERSION = "5.4"


class ProtocolError(Exception):
    """A frame sequence that is not a valid, correctly signed Jupyter message."""


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
