"""The kernel's own message framing (aikit_kernel/protocol.py) against jupyter_client's Session,
which is what every frontend uses: what one signs the other verifies, and a message is accepted
once (a replayed signature is rejected)."""

from __future__ import annotations

import pytest
from jupyter_client.session import Session

from aikit_kernel.protocol import PROTOCOL_VERSION, Protocol, ProtocolError

KEY = b"a-shared-key"


def request(client: Session, msg_type: str = "execute_request", content: dict | None = None) -> list[bytes]:
    return client.serialize(client.msg(msg_type, content if content is not None else {"code": "1"}), ident=[b"peer"])


def test_a_frontend_message_parses_and_a_replay_is_rejected() -> None:
    kernel, client = Protocol(KEY), Session(key=KEY)
    frames = request(client)
    idents, msg = kernel.parse(list(frames))
    assert idents == [b"peer"] and msg["msg_type"] == "execute_request" and msg["content"] == {"code": "1"}
    assert msg["header"]["date"] == client.unpack(frames[3])["date"]  # the client's string, untouched
    with pytest.raises(ProtocolError, match="duplicate signature"):
        kernel.parse(list(frames))


def test_a_bad_signature_or_a_missing_part_is_rejected() -> None:
    kernel, client = Protocol(KEY), Session(key=KEY)
    frames = request(client)
    tampered = [*frames[:-1], b'{"code": "2"}']
    with pytest.raises(ProtocolError, match="invalid signature"):
        kernel.parse(tampered)
    with pytest.raises(ProtocolError, match="fewer than 5 parts"):
        kernel.parse(frames[:-2])
    with pytest.raises(ProtocolError, match="delimiter"):
        kernel.parse([b"peer", b"no delimiter"])
    foreign = request(Session(key=b"another key"))
    with pytest.raises(ProtocolError, match="invalid signature"):
        kernel.parse(foreign)


def test_what_the_kernel_builds_a_frontend_verifies() -> None:
    kernel, client = Protocol(KEY), Session(key=KEY)
    _, first = kernel.parse(request(client))
    _, second = kernel.parse(request(client, "kernel_info_request", {}))
    sent = []
    for parent in (first, second, first):  # the packed parent header is reused only for the same request
        frames = kernel.build("status", {"execution_state": "busy"}, parent, [b"peer"], {"status": "ok"})
        idents, parts = client.feed_identities(frames)
        sent.append(client.deserialize(parts))
        assert idents == [b"peer"]
    for msg, parent in zip(sent, (first, second, first), strict=True):
        assert msg["parent_header"]["msg_id"] == parent["header"]["msg_id"]
        assert msg["header"]["version"] == PROTOCOL_VERSION and msg["header"]["session"] == kernel.session_id
        assert msg["metadata"] == {"status": "ok"} and msg["content"] == {"execution_state": "busy"}
    assert len({m["header"]["msg_id"] for m in sent}) == 3


def test_without_a_key_nothing_is_signed() -> None:
    kernel, client = Protocol(b""), Session(key=b"")
    _, msg = kernel.parse(request(client))
    frames = kernel.build("execute_reply", {"status": "ok"}, msg, [b"peer"])
    assert frames[2] == b""
    assert client.deserialize(client.feed_identities(frames)[1])["content"] == {"status": "ok"}
