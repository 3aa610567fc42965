"""State: small JSON-like values under (scope, key), shared by cells, tools, agents, workflows
and kernels on the same data directory.

Scopes::

    global            one namespace for everything on this data directory
    session           this kernel session's own namespace (stored as "session:<session_id>")
    user:<id>  agent:<name>  workflow:<id>  tenant:<id>

Values are what a Lua table can hold (None, bool, int, float, str, bytes, lists, dicts with any
scalar keys, nested) and read back exactly: arrays stay arrays, maps stay maps, ``2`` stays an
integer and ``2.0`` a float.

Writes (``set``, ``delete``, ``update``, ``compare_and_set``) fire the hook points
``state.write.before`` (payload ``{scope, key, value, op}``: a hook may cancel -> the write
raises ``cancelled``; modify ``value``; or replace -> the write is skipped and the operation
returns the hook's value) and ``state.write.after``, and publish ``state.written`` /
``state.deleted`` events with ``{scope, key, op}`` (never the value). For ``update`` the before
hook runs after ``fn`` computed the new value, inside the atomic section. A write that fails
(a full disk, a value too large, an updater that raised) fires ``state.write.error`` (payload
``{scope, key, op, error = {code, message, details}}``, observe only) and publishes
``state.failed`` ``{scope, key, op, code, message}`` before the error reaches the caller.

:meth:`State.aset` is ``set`` for coroutines on an event loop: the same operation (hooks and
events on the loop, in the same order) whose value is encoded on the loop while the commit (and
its fsync) runs in a writer thread shared by the store's writes made meanwhile (one transaction
and one fsync for all of them); the loop serves other tasks until the commit is done.
"""

from __future__ import annotations

import dataclasses
import math
import os
import threading
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import codec, config
from .control.group_commit import GroupCommit
from .errors import InvalidArgument, IOFailure, PermissionDenied
from .events import EventBus
from .hooks import HookRegistry
from .operations import Operation, OperationKind, Pipeline, honours
from .operations.standard import standard_pipeline
from .storage.base import DEFAULT_MAX_VALUE_BYTES, StateBackend, encode_value

__all__ = ["MISSING", "MAX_KEY_LENGTH", "MAX_SCOPE_ID_LENGTH", "SCOPE_FORMS", "State"]

MAX_KEY_LENGTH = 1024
MAX_SCOPE_ID_LENGTH = 256
SCOPE_FORMS = "global, session, user:<id>, agent:<name>, workflow:<id>, tenant:<id>"
_PREFIXED = ("user", "agent", "workflow", "tenant")


class _Missing:
    """The "no such key" marker for :meth:`State.compare_and_set` (``expected=MISSING``)."""

    _instance: _Missing | None = None

    def __new__(cls) -> _Missing:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "MISSING"

    def __bool__(self) -> bool:
        return False

    def __reduce__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()


class _Replaced(Exception):
    """Raised inside an update's atomic section when a hook replaced the write."""

    def __init__(self, value: Any) -> None:
        super().__init__("replaced by hook")
        self.value = value


_REPLACED_RESULT: dict[str, Callable[[Any], Any]] = {
    "set": lambda value: None, "delete": bool, "compare_and_set": bool, "update": lambda value: value}


def _write_happened(op: Operation, result: Any) -> bool:
    """A delete of an absent key, a compare-and-set that lost, a replaced update wrote nothing."""
    if op.meta.get("replaced"):
        return False
    return bool(result) if op.name in ("delete", "compare_and_set") else True


STATE_WRITE = OperationKind(
    "state.write",
    hook_prefix="state.write",
    honours=honours(before="cancel replace"),
    topics=(None, "state.written", "state.failed"),
    source="state",
    describe=lambda op: f"state {op.name} of {op.payload['scope']}/{op.payload['key']}",
    event_fields=lambda op: {"scope": op.payload["scope"], "key": op.payload["key"], "op": op.name},
    after_payload=lambda op, result: {**op.payload, "op": op.name},
    error_payload=lambda op, error: {"scope": op.payload["scope"], "key": op.payload["key"], "op": op.name,
                                     "error": error.to_dict()},
    replaced=lambda op, value: _REPLACED_RESULT[op.name](value),
    happened=_write_happened,
    converts_errors=False,
)
STATE_DELETE = dataclasses.replace(STATE_WRITE, topics=(None, "state.deleted", "state.failed"))
STATE_UPDATE = dataclasses.replace(STATE_WRITE, defers_before=True)


def _text(value: Any, what: str) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, (bytes, bytearray)):
        try:
            return bytes(value).decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidArgument(f"{what} must be UTF-8 text, got bytes that are not UTF-8") from None
    raise InvalidArgument(f"{what} must be a string, got {type(value).__name__}")


def _utf8_ok(text: str) -> bool:
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


# (scope, key, value, expires_at): one write for a store's writer thread.
_Row = tuple[str, str, Any, "float | None"]
_writers: weakref.WeakKeyDictionary[Any, GroupCommit[_Row]] = weakref.WeakKeyDictionary()
_writers_lock = threading.Lock()


def _writer(backend: Any) -> GroupCommit[_Row] | None:
    """The group-commit writer of ``backend``'s :meth:`State.aset` writes (one per durable store,
    shared by every State over it); None for a store that is not durable (in memory: its writes
    cost no wait worth a thread)."""
    if not getattr(backend, "durable", False):
        return None
    with _writers_lock:
        writer = _writers.get(backend)
        if writer is None:
            store = weakref.ref(backend)  # not a strong reference: the writer must not keep its store alive

            def commit(batch: list[_Row]) -> None:
                target = store()
                if target is None:
                    raise IOFailure("the state store has been closed")
                if hasattr(target, "set_rows"):  # one transaction (the built-in stores)
                    target.set_rows(batch)
                else:  # a write each: a failed batch is written again one by one (upserts: harmless)
                    for scope, key, value, expires_at in batch:
                        target.set(scope, key, value, expires_at)

            writer = _writers[backend] = GroupCommit(commit, "aikit-state")
        return writer


class State:
    """The State component over a :class:`~aikit_components.storage.base.StateBackend`.

    ``clock`` (seconds, like :func:`time.time`) overrides the backend's clock for TTLs; tests
    pass a fake one. ``max_value_bytes`` overrides the backend's limit on a value's encoded size.
    """

    def __init__(self, backend: StateBackend, events: EventBus | None = None, hooks: HookRegistry | None = None,
                 session_id: str | None = None, *, clock: Callable[[], float] | None = None,
                 max_value_bytes: int | None = None, source: str = "state", pipeline: Pipeline | None = None) -> None:
        self.backend = backend
        self.events = events
        self.hooks = hooks
        self.pipeline = pipeline if pipeline is not None else standard_pipeline(events, hooks)
        self._scopes: dict[Any, str] = {}
        self._session_id = session_id
        self.source = source
        if clock is not None:
            backend.clock = clock
        if max_value_bytes is not None:
            if not isinstance(max_value_bytes, int) or max_value_bytes <= 0:
                raise InvalidArgument(f"max_value_bytes must be a positive integer, got {max_value_bytes!r}")
            backend.max_value_bytes = max_value_bytes

    @property
    def session_id(self) -> str | None:
        """The session that scope ``session`` maps to (``session:<session_id>``)."""
        return self._session_id

    @session_id.setter
    def session_id(self, value: str | None) -> None:
        self._session_id = value
        self._scopes = {}

    @classmethod
    def open_default(cls, data_dir: str | os.PathLike[str] | None = None, *, filename: str = "state.sqlite",
                     events: EventBus | None = None, hooks: HookRegistry | None = None,
                     pipeline: Pipeline | None = None,
                     session_id: str | None = None, clock: Callable[[], float] | None = None,
                     max_value_bytes: int = DEFAULT_MAX_VALUE_BYTES, busy_timeout: float = 10.0,
                     synchronous: str = "FULL") -> State:
        """The SQLite-backed State at ``<data_dir>/state.sqlite`` (data_dir defaults to
        :func:`aikit_components.config.data_dir`)."""
        from .storage.sqlite import SQLiteStateBackend

        if data_dir is None:
            try:
                data_dir = config.data_dir()
            except PermissionError as exc:
                raise PermissionDenied(f"cannot create the aikit data directory: {exc}") from None
            except OSError as exc:
                raise IOFailure(f"cannot use the aikit data directory ({exc.strerror or exc}: "
                                f"{exc.filename}); set AIKIT_DATA_DIR to a writable directory") from None
        kwargs: dict[str, Any] = {"max_value_bytes": max_value_bytes, "busy_timeout": busy_timeout,
                                  "synchronous": synchronous}
        if clock is not None:
            kwargs["clock"] = clock
        backend = SQLiteStateBackend(Path(data_dir) / filename, **kwargs)
        return cls(backend, events=events, hooks=hooks, session_id=session_id, pipeline=pipeline)

    def __repr__(self) -> str:
        return f"State({self.backend!r}, session_id={self.session_id!r})"

    def __enter__(self) -> State:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        self.backend.close()

    # -- validation --------------------------------------------------------------------------

    def resolve_scope(self, scope: Any) -> str:
        """The stored scope name for ``scope`` (``session`` -> ``session:<id>``), or
        InvalidArgument naming the allowed forms."""
        try:
            cached = self._scopes.get(scope)
        except TypeError:  # unhashable
            cached = None
        if cached is not None:
            return cached
        text = _text(scope, "scope")
        resolved = self._resolve(text)
        if len(self._scopes) >= 4096:
            self._scopes.clear()
        self._scopes[scope] = resolved
        return resolved

    def _resolve(self, text: str) -> str:
        if text == "global":
            return text
        if text == "session" or text.startswith("session:"):
            if self.session_id is None:
                raise InvalidArgument("scope 'session' needs a session, and this State has none; "
                                      f"use one of: {SCOPE_FORMS}", details={"scope": text})
            own = f"session:{self.session_id}"
            if text not in ("session", own):
                raise InvalidArgument(f"scope {text!r} belongs to another session; use 'session' for this one",
                                      details={"scope": text})
            return own
        kind, sep, ident = text.partition(":")
        if not sep or kind not in _PREFIXED:
            raise InvalidArgument(f"unknown state scope {text!r}; use one of: {SCOPE_FORMS}",
                                  details={"scope": text, "allowed": SCOPE_FORMS})
        if not ident or ident.strip() == "":
            raise InvalidArgument(f"scope {text!r} needs a non-empty id after '{kind}:' (e.g. '{kind}:alice')",
                                  details={"scope": text})
        if len(ident) > MAX_SCOPE_ID_LENGTH:
            raise InvalidArgument(f"the id in scope '{kind}:...' is {len(ident)} characters; the limit is "
                                  f"{MAX_SCOPE_ID_LENGTH}", details={"scope": text[:80]})
        if any(ord(c) < 32 or ord(c) == 127 for c in ident) or not _utf8_ok(ident):
            raise InvalidArgument(f"scope {text!r} contains control characters or invalid text",
                                  details={"scope": text})
        return text

    @staticmethod
    def _key(key: Any) -> str:
        if type(key) is not str:
            key = _text(key, "state key")
        if not key:
            raise InvalidArgument("state key must be a non-empty string")
        if len(key) > MAX_KEY_LENGTH:
            raise InvalidArgument(f"state key is {len(key)} characters; the limit is {MAX_KEY_LENGTH}",
                                  details={"key": key[:80]})
        if not _utf8_ok(key):
            raise InvalidArgument("state key contains invalid text (lone surrogates)", details={"key": repr(key)[:80]})
        return key

    def _expires(self, ttl: Any) -> float | None:
        if ttl is None:
            return None
        if isinstance(ttl, bool) or not isinstance(ttl, (int, float)) or not math.isfinite(ttl) or ttl <= 0:
            raise InvalidArgument(f"ttl must be a positive number of seconds, got {ttl!r}", details={"ttl": repr(ttl)})
        return self.backend.clock() + ttl

    # -- the write operation ----------------------------------------------------------------

    def _write(self, op_name: str, scope: str, key: str, value: Any, handler: Callable[[Operation], Any],
               kind: OperationKind = STATE_WRITE) -> Any:
        """Run one write as an operation (hooks ``state.write.*``, events ``state.*``)."""
        op = Operation(kind, op_name, {"scope": scope, "key": key, "value": value, "op": op_name},
                       meta={"source": self.source})
        return self.pipeline.run(op, handler)

    # -- sync surface ------------------------------------------------------------------------

    def get(self, scope: str, key: str, default: Any = None) -> Any:
        """The value at (scope, key), or ``default`` when absent or expired."""
        found, value = self.backend.get(self.resolve_scope(scope), self._key(key))
        return value if found else default

    def exists(self, scope: str, key: str) -> bool:
        return self.backend.get(self.resolve_scope(scope), self._key(key))[0]

    def set(self, scope: str, key: str, value: Any, ttl: float | None = None) -> None:
        """Store ``value`` (durable on return with the SQLite store); ``ttl`` seconds, or forever."""
        scope, key = self.resolve_scope(scope), self._key(key)
        expires_at = self._expires(ttl)
        if not self.pipeline.watches(STATE_WRITE):  # nobody intercepts or listens: just write
            return self.backend.set(scope, key, value, expires_at)
        self._write("set", scope, key, value,
                    lambda op: self.backend.set(scope, key, op.payload.get("value"), expires_at))
        return None

    async def aset(self, scope: str, key: str, value: Any, ttl: float | None = None) -> None:
        """:meth:`set` for coroutines: the value is encoded now (later changes to it are not
        stored), the commit runs in the store's writer thread with the other writes queued
        meanwhile, and the loop serves other tasks until it is durable, when this returns. The
        operation's hooks and events run on the loop as for :meth:`set`, the after-stage once
        the write is committed. A store that is not durable is written at once."""
        scope, key = self.resolve_scope(scope), self._key(key)
        expires_at = self._expires(ttl)
        writer = _writer(self.backend)
        if writer is None:
            return self.set(scope, key, value, ttl)

        async def commit(value: Any) -> None:
            text = encode_value(value, self.backend.max_value_bytes, scope, key)
            stored = codec.Encoded(text) if getattr(self.backend, "stores_encoded", False) else codec.loads(text)
            await writer.aput((scope, key, stored, expires_at))

        if not self.pipeline.watches(STATE_WRITE):  # nobody intercepts or listens: just write
            return await commit(value)
        op = Operation(STATE_WRITE, "set", {"scope": scope, "key": key, "value": value, "op": "set"},
                       meta={"source": self.source})
        await self.pipeline.arun(op, lambda op: commit(op.payload.get("value")))
        return None

    def delete(self, scope: str, key: str) -> bool:
        """Remove the key; True when it existed."""
        scope, key = self.resolve_scope(scope), self._key(key)
        if not self.pipeline.watches(STATE_DELETE):
            return self.backend.delete(scope, key)
        return self._write("delete", scope, key, None, lambda op: self.backend.delete(scope, key), STATE_DELETE)

    def keys(self, scope: str, prefix: str = "") -> list[str]:
        """The live keys of ``scope`` that start with ``prefix``, sorted."""
        prefix = _text(prefix, "prefix") if prefix else ""
        if len(prefix) > MAX_KEY_LENGTH or not _utf8_ok(prefix):
            raise InvalidArgument(f"prefix must be valid text of at most {MAX_KEY_LENGTH} characters")
        return self.backend.keys(self.resolve_scope(scope), prefix)

    def update(self, scope: str, key: str, fn: Callable[[Any], Any], ttl: float | None = None) -> Any:
        """Atomically replace the value with ``fn(old)`` (``old`` is None when absent) and return
        the new value. Atomic across threads and, with SQLite, across processes. ``ttl=None``
        keeps the entry's current expiry. If ``fn`` raises, nothing is written."""
        if not callable(fn):
            raise InvalidArgument(f"update needs a function, got {type(fn).__name__}")
        scope, key = self.resolve_scope(scope), self._key(key)
        expires_at = self._expires(ttl)
        if not self.pipeline.watches(STATE_UPDATE):
            return self.backend.update(scope, key, fn, expires_at)

        def run(op: Operation) -> Any:
            def guarded(old: Any) -> Any:  # inside the atomic section: the hooks see the new value
                op.payload["value"] = fn(old)
                early = self.pipeline.run_before(op)
                if early is not None:
                    raise _Replaced(early[0])
                return op.payload.get("value")

            try:
                return self.backend.update(scope, key, guarded, expires_at)
            except _Replaced as replaced:
                op.meta["replaced"] = True
                return replaced.value

        return self._write("update", scope, key, None, run, STATE_UPDATE)

    def compare_and_set(self, scope: str, key: str, expected: Any, new: Any, ttl: float | None = None) -> bool:
        """Store ``new`` only if the current value equals ``expected`` (``MISSING``: only if the
        key is absent). Returns whether it was stored. Numbers compare by value (1 == 1.0),
        tables structurally. ``ttl=None`` keeps the entry's current expiry."""
        scope, key = self.resolve_scope(scope), self._key(key)
        expires_at = self._expires(ttl)
        expected_found = expected is not MISSING
        if not self.pipeline.watches(STATE_WRITE):
            return self.backend.compare_and_set(scope, key, expected_found, expected if expected_found else None,
                                                new, expires_at)
        return self._write("compare_and_set", scope, key, new, lambda op: self.backend.compare_and_set(
            scope, key, expected_found, expected if expected_found else None, op.payload.get("value"), expires_at))

