"""Agent run records are encoded once (control.runs.stored_record, codec.Encoded): the stored
text is the one the old way wrote (a JSON round trip with default=str, then codec.dumps in the
writer thread), and what cannot be stored as it is still goes through the codec."""

from __future__ import annotations

import asyncio
import json
import math
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aikit_components import codec
from aikit_components.control.runs import AgentRunStore, stored_record
from aikit_components.errors import InvalidArgument
from aikit_components.state import State
from aikit_components.storage import MemoryStateBackend, SQLiteStateBackend
from aikit_components.storage.base import encode_value

LIMIT = 1 << 24
SCALARS = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text()
KEYS = st.text() | st.sampled_from(["$", "$map", "$bytes", "$x"])
VALUES = st.recursive(
    SCALARS | st.binary(max_size=4),
    lambda inner: st.lists(inner, max_size=4) | st.tuples(inner, inner)
    | st.dictionaries(KEYS, inner, max_size=3) | st.dictionaries(st.integers(), inner, max_size=2),
    max_leaves=25)


def old_text(record: dict[str, Any]) -> str:
    """How a run record was stored before: json round trip (default=str), then codec.dumps."""
    return encode_value(json.loads(json.dumps(record, default=str)), LIMIT, "s", "k")


def new_text(record: dict[str, Any]) -> str:
    return encode_value(stored_record(record), LIMIT, "s", "k")


@settings(max_examples=300, deadline=None)
@given(VALUES)
def test_the_stored_text_is_the_old_text(value: Any) -> None:
    record = {"run_id": "run-1", "status": "running", "value": value, "updated_at": 1.5}
    old = old_text(record)
    assert codec.loads(new_text(record)) == codec.loads(old)
    if not key_clash(value):  # an int key and its text in one object: decoded alike (the last wins)
        assert new_text(record) == old


def key_clash(value: Any) -> bool:
    if isinstance(value, dict):
        names = [json.dumps({k: 0}) for k in value]
        return len(set(names)) < len(names) or any(key_clash(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return any(key_clash(v) for v in value)
    return False


def test_dollar_keys_and_deep_values_go_through_the_codec() -> None:
    tagged = {"run_id": "r", "args": {"$bytes": "aGk="}, "other": {"$map": [[1, 2]]}}
    assert not isinstance(stored_record(tagged), codec.Encoded)
    assert codec.loads(new_text(tagged)) == tagged  # user data that looks tagged stays user data
    plain = {"run_id": "r", "messages": [{"role": "user", "text": "ü \u2028 \"{\\\"$x\\\": 1}\""}], "n": math.inf}
    assert isinstance(stored_record(plain), codec.Encoded)
    assert new_text(plain) == old_text(plain)
    deep: Any = "leaf"
    for _ in range(codec.MAX_DEPTH + 5):
        deep = [deep]
    with pytest.raises(InvalidArgument, match="nested deeper"):  # refused as before
        encode_value(stored_record({"run_id": "r", "deep": deep}), LIMIT, "s", "k")


def test_what_json_cannot_hold_is_stored_as_text(tmp_path: Path) -> None:
    state = State(SQLiteStateBackend(tmp_path / "state.db"))
    try:
        store = AgentRunStore(state)
        record = {"run_id": "run-x", "status": "done", "when": object(), "tuple": (1, 2), "bytes": b"\xff"}
        asyncio.run(store.asave(record))
        got = store.get("run-x")
        assert got is not None
        assert got["tuple"] == [1, 2] and got["bytes"] == "b'\\xff'" and got["when"].startswith("<object object")
        assert got["updated_at"] == record["updated_at"]
    finally:
        state.close()


class PlainValuesBackend(MemoryStateBackend):
    """A store of another kind (as a plugin's would be): it gets plain values, never Encoded."""

    stores_encoded = False
    seen: list[Any]

    def set(self, scope: str, key: str, value: Any, expires_at: float | None = None) -> None:
        self.seen.append(value)
        super().set(scope, key, value, expires_at)


def test_a_store_of_another_kind_gets_plain_values() -> None:
    backend = PlainValuesBackend()
    backend.seen = []
    state = State(backend)
    try:
        store = AgentRunStore(state)
        asyncio.run(store.asave({"run_id": "run-p", "status": "running", "tuple": (1, 2)}))
        assert backend.seen == [{"run_id": "run-p", "status": "running", "tuple": [1, 2],
                                 "updated_at": backend.seen[0]["updated_at"]}]
        assert store.get("run-p") == backend.seen[0]
    finally:
        state.close()
