"""The State component on both stores: exact round trips, scopes, TTL, atomic update and
compare-and-set (across threads and processes), hooks, events, limits, durability, I/O errors.

Every SQLite file lives under ``tmp_path``, so the tests are safe to run in parallel (xdist)."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from aikit_components.errors import AikitError, Cancelled, InvalidArgument, IOFailure, PermissionDenied, ResourceExhausted
from aikit_components.events import EventBus
from aikit_components.hooks import HookRegistry, HookResult
from aikit_components.state import MISSING, State
from aikit_components.storage import MemoryStateBackend, SQLiteStateBackend, StateBackend
from aikit_components.storage.postgres import PostgresDatabase
from aikit_components.storage.postgres_state import PostgresStateBackend
from tests.support.processes import finish, start_python, wait_until
from tests.support.threads import run_in_threads

REPO = Path(__file__).resolve().parent.parent
NESTED = {"a": [1, 2.0, "x", None], "m": {1: "one", 3: "three"}, "b": b"\xff\x00", "e": {}, "l": []}


class FakeClock:
    def __init__(self, t: float = 1_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


def same(a: Any, b: Any) -> bool:
    """Equality that also demands equal types (1 is not 1.0, True is not 1, [] is not {})."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(type(k) is type(next(k2 for k2 in b if k2 == k)) and same(v, b[k])
                                            for k, v in a.items())
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return a == b


class Kind(str):
    """A backend name; for ``postgres`` also the URL of this test's schema."""

    url = ""


def make_backend(kind: str, tmp_path: Path) -> StateBackend:
    if kind == "memory":
        return MemoryStateBackend()
    if kind == "postgres":
        assert isinstance(kind, Kind) and kind.url
        return PostgresStateBackend(PostgresDatabase(kind.url, pool_max=8))
    return SQLiteStateBackend(tmp_path / "data" / "state.sqlite")


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def kind(request: pytest.FixtureRequest) -> Kind:
    kind = Kind(request.param)
    if kind == "postgres":
        kind.url = request.getfixturevalue("pg_url")
    return kind


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def state(kind: str, tmp_path: Path, clock: FakeClock):
    st = State(make_backend(kind, tmp_path), session_id="sess-1", clock=clock)
    yield st
    st.close()


def env() -> dict[str, str]:
    e = {k: v for k, v in os.environ.items() if not k.startswith("AIKIT_") or k == "AIKIT_TRUST_PROJECT_CONFIG"}
    e["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
    return e


# -- basic operations --------------------------------------------------------------------------


def test_backends_satisfy_protocol(tmp_path: Path) -> None:
    for kind in ("memory", "sqlite"):
        backend = make_backend(kind, tmp_path)
        assert isinstance(backend, StateBackend)
        backend.close()


def test_nested_value_round_trips_exactly(state: State) -> None:
    state.set("global", "v", NESTED)
    got = state.get("global", "v")
    assert same(got, NESTED), got
    assert type(got["a"][0]) is int and type(got["a"][1]) is float
    assert isinstance(got["m"], dict) and isinstance(got["e"], dict) and isinstance(got["l"], list)


@pytest.mark.parametrize("value", [
    None, True, False, 0, -7, 2**62, 1.0, -0.5, 1e300, "", "héllo ☃", b"\x00\x01\xfe",
    [], {}, [[], [{}]], {"$map": 1}, {"$bytes": "AA=="}, {2: [1.5, {"x": True}], "k": None},
    {1.5: "f", 2: "i", True: "b"}, list(range(100)), {"deep": [[[[[[1]]]]]]},
])
def test_scalar_and_edge_values_round_trip(state: State, value: Any) -> None:
    state.set("global", "v", value)
    assert same(state.get("global", "v", default="absent"), value)


def test_nan_and_infinity_round_trip(state: State) -> None:
    state.set("global", "f", [float("inf"), float("-inf"), float("nan")])
    got = state.get("global", "f")
    assert got[0] == float("inf") and got[1] == float("-inf") and got[2] != got[2]


def test_get_default_and_exists(state: State) -> None:
    assert state.get("global", "nope") is None
    assert state.get("global", "nope", default=42) == 42
    assert not state.exists("global", "nope")
    state.set("global", "none", None)
    assert state.exists("global", "none")
    assert state.get("global", "none", default=42) is None


def test_returned_values_are_copies(state: State) -> None:
    value = {"list": [1, 2]}
    state.set("global", "v", value)
    value["list"].append(3)
    got = state.get("global", "v")
    got["list"].append(4)
    assert state.get("global", "v") == {"list": [1, 2]}


def test_overwrite_and_delete(state: State) -> None:
    state.set("global", "k", 1)
    state.set("global", "k", "two")
    assert state.get("global", "k") == "two"
    assert state.delete("global", "k") is True
    assert state.delete("global", "k") is False
    assert state.get("global", "k") is None
    assert state.keys("global") == []


def test_keys_with_prefix_sorted(state: State) -> None:
    for key in ["b/2", "a/1", "a/2", "a", "ab", "b/1", "é/1", "\U0010ffff", "a\U0010ffffz", "🙂x"]:
        state.set("global", key, key)
    state.set("user:alice", "a/9", 1)
    assert state.keys("global") == sorted(["b/2", "a/1", "a/2", "a", "ab", "b/1", "é/1", "\U0010ffff",
                                           "a\U0010ffffz", "🙂x"])
    assert state.keys("global", "a/") == ["a/1", "a/2"]
    assert state.keys("global", "a") == ["a", "a/1", "a/2", "ab", "a\U0010ffffz"]
    assert state.keys("global", prefix="a\U0010ffff") == ["a\U0010ffffz"]
    assert state.keys("global", "\U0010ffff") == ["\U0010ffff"]
    assert state.keys("global", "é") == ["é/1"]
    assert state.keys("global", "🙂") == ["🙂x"]
    assert state.keys("global", "zzz") == []
    assert state.keys("user:alice") == ["a/9"]


def test_keys_with_glob_and_like_characters(state: State) -> None:
    for key in ["%a", "_b", "*c", "[d", "?e", "x"]:
        state.set("global", key, 1)
    assert state.keys("global", "%") == ["%a"]
    assert state.keys("global", "_") == ["_b"]
    assert state.keys("global", "*") == ["*c"]
    assert state.keys("global", "[") == ["[d"]


def test_scopes_are_isolated(state: State) -> None:
    scopes = ["global", "session", "user:alice", "user:bob", "agent:planner", "workflow:w1", "tenant:acme"]
    for i, scope in enumerate(scopes):
        state.set(scope, "k", i)
    for i, scope in enumerate(scopes):
        assert state.get(scope, "k") == i
        assert state.keys(scope) == ["k"]


def test_session_scope_maps_to_session_id(kind: str, tmp_path: Path) -> None:
    backend = make_backend(kind, tmp_path)
    one = State(backend, session_id="one")
    two = State(backend, session_id="two")
    one.set("session", "k", 1)
    two.set("session", "k", 2)
    assert one.get("session", "k") == 1 and two.get("session", "k") == 2
    assert one.get("session:one", "k") == 1  # the resolved name (as in events) is accepted
    assert backend.get("session:two", "k") == (True, 2)
    with pytest.raises(InvalidArgument, match="another session"):
        one.get("session:two", "k")
    with pytest.raises(InvalidArgument, match="needs a session"):
        State(backend).get("session", "k")
    backend.close()


def test_bytes_scope_and_key_accepted(state: State) -> None:
    state.set(b"global", b"key", 1)
    assert state.get("global", "key") == 1


# -- validation --------------------------------------------------------------------------------


@pytest.mark.parametrize("scope", ["", "globals", "user", "user:", "user: ", "users:x", "session:", "team:x",
                                   "user:" + "x" * 300, "agent:a\nb", None, 5, ["global"], b"\xff"])
def test_bad_scope_is_invalid_argument(state: State, scope: Any) -> None:
    with pytest.raises(InvalidArgument) as info:
        state.get(scope, "k")
    assert info.value.code == "invalid_argument"
    if isinstance(scope, str) and ":" not in scope and scope:
        assert "user:<id>" in info.value.message and "tenant:<id>" in info.value.message


@pytest.mark.parametrize("key", ["", "x" * 1025, None, 3, 1.5, ("a",), "bad\ud800"])
def test_bad_key_is_invalid_argument(state: State, key: Any) -> None:
    for call in (lambda: state.get("global", key), lambda: state.set("global", key, 1),
                 lambda: state.delete("global", key), lambda: state.update("global", key, lambda v: v),
                 lambda: state.compare_and_set("global", key, MISSING, 1)):
        with pytest.raises(InvalidArgument) as info:
            call()
        assert info.value.code == "invalid_argument"


def test_longest_key_accepted(state: State) -> None:
    state.set("global", "k" * 1024, 1)
    assert state.get("global", "k" * 1024) == 1


@pytest.mark.parametrize("ttl", [0, -1, float("nan"), float("inf"), "10", True, [1]])
def test_bad_ttl_is_invalid_argument(state: State, ttl: Any) -> None:
    with pytest.raises(InvalidArgument) as info:
        state.set("global", "k", 1, ttl=ttl)
    assert info.value.code == "invalid_argument"
    assert state.get("global", "k") is None


@pytest.mark.parametrize("value", [object(), {"a": {1, 2}}, [lambda: 1], {"k": Path("/")}])
def test_unsupported_value_is_invalid_argument(state: State, value: Any) -> None:
    state.set("global", "k", "before")
    for call in (lambda: state.set("global", "k", value), lambda: state.update("global", "k", lambda old: value),
                 lambda: state.compare_and_set("global", "k", "before", value)):
        with pytest.raises(InvalidArgument) as info:
            call()
        assert info.value.code == "invalid_argument"
    assert state.get("global", "k") == "before"


def test_cyclic_value_is_invalid_argument(state: State) -> None:
    value: list[Any] = []
    value.append(value)
    with pytest.raises(InvalidArgument):
        state.set("global", "k", value)


def test_update_needs_callable(state: State) -> None:
    with pytest.raises(InvalidArgument):
        state.update("global", "k", 5)


def test_value_size_limit(kind: str, tmp_path: Path) -> None:
    st = State(make_backend(kind, tmp_path), max_value_bytes=1000)
    st.set("global", "k", "small")
    for call in (lambda: st.set("global", "k", "x" * 2000), lambda: st.update("global", "k", lambda v: "é" * 600),
                 lambda: st.compare_and_set("global", "k", "small", ["x"] * 500)):
        with pytest.raises(ResourceExhausted) as info:
            call()
        assert info.value.code == "resource_exhausted"
        assert "1000 bytes" in info.value.message and "max_value_bytes" in info.value.message
    assert st.get("global", "k") == "small"
    st.set("global", "k", "x" * 990)  # 992 bytes with the quotes
    st.close()


def test_default_limit_is_16_mib(tmp_path: Path) -> None:
    st = State(MemoryStateBackend())
    assert st.backend.max_value_bytes == 16 * 1024 * 1024
    with pytest.raises(ResourceExhausted, match="16777216"):
        st.set("global", "big", "x" * (16 * 1024 * 1024))


# -- TTL ---------------------------------------------------------------------------------------


def test_ttl_expiry_with_injected_clock(state: State, clock: FakeClock) -> None:
    state.set("global", "t", "temp", ttl=10)
    state.set("global", "p", "perm")
    clock.advance(9.9)
    assert state.get("global", "t") == "temp"
    assert state.keys("global") == ["p", "t"]
    clock.advance(0.2)
    assert state.get("global", "t") is None
    assert not state.exists("global", "t")
    assert state.keys("global") == ["p"]
    assert state.delete("global", "t") is False
    assert state.update("global", "t", lambda old: ["saw", old]) == ["saw", None]
    assert state.get("global", "t") == ["saw", None]
    clock.advance(1000)
    assert state.get("global", "t") == ["saw", None]  # the update after expiry set no TTL


def test_ttl_expired_entry_counts_as_missing_for_cas(state: State, clock: FakeClock) -> None:
    state.set("global", "lock", "owner-1", ttl=5)
    assert state.compare_and_set("global", "lock", MISSING, "owner-2", ttl=5) is False
    clock.advance(6)
    assert state.compare_and_set("global", "lock", "owner-1", "owner-3") is False
    assert state.compare_and_set("global", "lock", MISSING, "owner-2", ttl=5) is True
    assert state.get("global", "lock") == "owner-2"


def test_update_and_cas_keep_expiry_set_replaces_it(state: State, clock: FakeClock) -> None:
    state.set("global", "n", 0, ttl=10)
    clock.advance(5)
    state.update("global", "n", lambda v: v + 1)
    assert state.compare_and_set("global", "n", 1, 2) is True
    clock.advance(4)
    assert state.get("global", "n") == 2
    clock.advance(2)
    assert state.get("global", "n") is None  # original 10 s window kept
    state.set("global", "n", 0, ttl=10)
    state.update("global", "n", lambda v: v + 1, ttl=100)  # an explicit ttl replaces it
    clock.advance(50)
    assert state.get("global", "n") == 1
    state.set("global", "n", 5)  # set without ttl: no expiry
    clock.advance(10_000)
    assert state.get("global", "n") == 5


def test_expired_entries_are_purged(kind: str, tmp_path: Path, clock: FakeClock) -> None:
    backend = make_backend(kind, tmp_path)
    st = State(backend, clock=clock)
    for i in range(20):
        st.set("global", f"k{i}", i, ttl=1)
    st.set("global", "keep", 1)
    clock.advance(2)
    assert backend.purge_expired() == 20
    assert st.keys("global") == ["keep"]
    backend.close()


def test_ttl_with_real_clock(tmp_path: Path) -> None:
    st = State.open_default(tmp_path)
    st.set("global", "kept", 1, ttl=600)  # read back at once: a short ttl could run out on a busy machine
    assert st.get("global", "kept") == 1
    st.set("global", "t", 1, ttl=0.05)
    assert wait_until(lambda: st.get("global", "t") is None, 30)  # gone once its 50 ms have passed
    assert st.get("global", "kept") == 1
    st.close()


# -- update and compare-and-set ----------------------------------------------------------------


def test_update_returns_new_value(state: State) -> None:
    assert state.update("global", "c", lambda v: (v or 0) + 1) == 1
    assert state.update("global", "c", lambda v: (v or 0) + 1) == 2
    assert state.update("global", "m", lambda v: {**(v or {}), 1: "x"}) == {1: "x"}
    assert same(state.get("global", "m"), {1: "x"})


def test_update_fn_error_writes_nothing(state: State) -> None:
    state.set("global", "c", 1)

    def boom(old: Any) -> Any:
        raise ZeroDivisionError("nope")

    with pytest.raises(ZeroDivisionError):
        state.update("global", "c", boom)
    assert state.get("global", "c") == 1
    state.update("global", "c", lambda v: v + 1)  # the store is still usable (no dangling transaction)
    assert state.get("global", "c") == 2


def test_update_fn_may_use_state(state: State) -> None:
    def fn(old: Any) -> Any:
        state.set("global", "side", "written inside")
        return state.update("global", "inner", lambda v: (v or 0) + 10) + (old or 0)

    assert state.update("global", "outer", fn) == 10
    assert state.get("global", "side") == "written inside"
    assert state.get("global", "inner") == 10


def test_compare_and_set_semantics(state: State) -> None:
    assert state.compare_and_set("global", "k", MISSING, {"v": 1}) is True
    assert state.compare_and_set("global", "k", MISSING, {"v": 2}) is False
    assert state.compare_and_set("global", "k", {"v": 2}, {"v": 3}) is False
    assert state.compare_and_set("global", "k", {"v": 1}, {"v": 3}) is True
    assert state.get("global", "k") == {"v": 3}
    assert state.compare_and_set("global", "k", {"v": 3.0}, [1, 2]) is True  # numbers compare by value
    assert state.compare_and_set("global", "k", (1, 2), [True]) is True  # a tuple is an array
    assert state.compare_and_set("global", "k", [1], "x") is False  # True is not 1
    state.set("global", "m", {"a": 1, "b": [1, {2: 3}]})
    assert state.compare_and_set("global", "m", {"b": [1, {2: 3}], "a": 1}, "ok") is True  # map order ignored
    state.set("global", "s", "text")
    assert state.compare_and_set("global", "s", b"text", "bytes-equal") is True  # UTF-8 bytes read back as str
    state.set("global", "none", None)
    assert state.compare_and_set("global", "none", MISSING, 1) is False
    assert state.compare_and_set("global", "none", None, 1) is True
    assert state.compare_and_set("global", "absent", None, 1) is False


def counted_in_threads(state: State, key: str, threads: int, times: int) -> Any:
    """``key`` of scope global after ``threads`` threads each added 1 to it ``times`` times with
    ``update``."""
    def work(_: int) -> None:
        for _ in range(times):
            state.update("global", key, lambda v: (v or 0) + 1)

    run_in_threads(threads, work)
    return state.get("global", key)


def test_update_atomic_under_threads(state: State) -> None:
    assert counted_in_threads(state, "counter", threads=10, times=200) == 2000


def test_cas_loop_under_threads(state: State) -> None:
    def work(_: int) -> None:
        for _ in range(50):
            while True:
                cur = state.get("global", "n", 0)
                if state.compare_and_set("global", "n", cur if state.exists("global", "n") else MISSING, cur + 1):
                    break

    run_in_threads(4, work)
    assert state.get("global", "n") == 200


UPDATER = """
import sys
from aikit_components.state import State
st = State.open_default(sys.argv[1])
for _ in range(int(sys.argv[2])):
    st.update("global", "counter", lambda v: (v or 0) + 1)
st.close()
print("updated", sys.argv[2])
"""


def test_update_atomic_across_processes(tmp_path: Path) -> None:
    data = tmp_path / "shared"
    State.open_default(data).close()
    procs = [start_python(UPDATER, str(data), "200", env=env()) for _ in range(4)]
    for p in procs:
        assert finish(p) == "updated 200\n"
    st = State.open_default(data)
    assert st.get("global", "counter") == 800
    st.close()


PG_WORKER = """
import sys
from aikit_components.state import MISSING, State
from aikit_components.storage.postgres import PostgresDatabase
from aikit_components.storage.postgres_state import PostgresStateBackend
st = State(PostgresStateBackend(PostgresDatabase(sys.argv[1], pool_max=2)))
won = 0
for i in range(int(sys.argv[2])):
    st.update("global", "counter", lambda v: (v or 0) + 1)
    while True:  # a compare-and-set loop: read, compute, retry when another process got there first
        old = st.get("global", "cas", MISSING)
        if st.compare_and_set("global", "cas", old, (0 if old is MISSING else old) + 1):
            break
    won += st.compare_and_set("global", f"claim-{i}", MISSING, sys.argv[3])
st.close()
print("done", won)
"""


def test_update_and_cas_atomic_across_processes_on_postgres(pg_url: str) -> None:
    procs = [start_python(PG_WORKER, pg_url, "100", f"w{n}", env=env()) for n in range(4)]
    wins = [int(finish(p).split()[1]) for p in procs]
    st = State(PostgresStateBackend(PostgresDatabase(pg_url)))
    assert st.get("global", "counter") == 400
    assert st.get("global", "cas") == 400
    assert sum(wins) == 100  # each claim-<i> went to exactly one process
    assert {st.get("global", f"claim-{i}") for i in range(100)} <= {"w0", "w1", "w2", "w3"}
    st.close()


SETTER = """
import sys
from aikit_components.state import State
st = State.open_default(sys.argv[1])
for i in range(200):
    st.set("global", f"{sys.argv[2]}-{i:03d}", {"writer": sys.argv[2], "i": i})
st.close()
print("set 200")
"""


def test_concurrent_sets_from_two_processes_all_survive(tmp_path: Path) -> None:
    data = tmp_path / "shared"
    procs = [start_python(SETTER, str(data), name, env=env()) for name in ("a", "b")]
    here = State.open_default(data)  # and this process writes meanwhile, through the same file
    for i in range(100):
        here.set("global", f"c-{i:03d}", i)
    for p in procs:
        assert finish(p) == "set 200\n"
    keys = here.keys("global")
    assert len(keys) == 500
    assert here.get("global", "a-199") == {"writer": "a", "i": 199}
    assert here.get("global", "b-000") == {"writer": "b", "i": 0}
    here.close()


# -- durability and errors ---------------------------------------------------------------------


CRASHER = """
import os, sys
from aikit_components.state import State
st = State.open_default(sys.argv[1])
st.set("global", "survives", {"n": 1, "f": 1.0, "m": {1: "one"}})
st.update("global", "counter", lambda v: (v or 0) + 5)
print("written", flush=True)
os._exit(0)  # no close, no checkpoint, no cleanup
"""


def test_write_is_durable_when_set_returns(tmp_path: Path) -> None:
    data = tmp_path / "d"
    assert finish(start_python(CRASHER, str(data), env=env())) == "written\n"
    st = State.open_default(data)
    assert same(st.get("global", "survives"), {"n": 1, "f": 1.0, "m": {1: "one"}})
    assert st.get("global", "counter") == 5
    st.close()


def test_sqlite_file_settings(tmp_path: Path) -> None:
    backend = SQLiteStateBackend(tmp_path / "state.sqlite")
    conn = backend._conn()
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    assert conn.execute("PRAGMA busy_timeout").fetchone()[0] == 10_000
    backend.close()


def test_connection_per_thread(tmp_path: Path) -> None:
    backend = SQLiteStateBackend(tmp_path / "state.sqlite")
    seen = []
    t = threading.Thread(target=lambda: seen.append(backend._conn()))
    t.start()
    t.join()
    assert seen[0] is not backend._conn()
    backend.close()


def test_data_dir_is_a_file(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    with pytest.raises(IOFailure) as info:
        State.open_default(blocker)
    assert "not a directory" in info.value.message and str(blocker) in info.value.message
    with pytest.raises(IOFailure):
        State.open_default(blocker / "deeper")


def test_data_dir_env_is_a_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    monkeypatch.setenv("AIKIT_DATA_DIR", str(blocker))
    with pytest.raises(IOFailure, match="AIKIT_DATA_DIR"):
        State.open_default()


def test_open_default_uses_data_dir_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIKIT_DATA_DIR", str(tmp_path / "env-data"))
    st = State.open_default()
    st.set("global", "k", 1)
    st.close()
    assert (tmp_path / "env-data" / "state.sqlite").is_file()


def test_db_path_is_a_directory(tmp_path: Path) -> None:
    (tmp_path / "state.sqlite").mkdir()
    with pytest.raises(IOFailure, match="is a directory"):
        State.open_default(tmp_path)


def test_corrupt_database_file(tmp_path: Path) -> None:
    (tmp_path / "state.sqlite").write_bytes(b"this is not a database at all " * 200)
    with pytest.raises(IOFailure) as info:
        State.open_default(tmp_path)
    assert "not a SQLite database" in info.value.message and info.value.code == "io_error"


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root ignores file permissions")
def test_read_only_database(tmp_path: Path) -> None:
    st = State.open_default(tmp_path)
    st.set("global", "k", 1)
    st.close()
    for p in tmp_path.iterdir():
        p.chmod(0o444)
    tmp_path.chmod(0o555)
    try:
        with pytest.raises((PermissionDenied, IOFailure)):
            State.open_default(tmp_path).set("global", "k", 2)
    finally:
        tmp_path.chmod(0o755)


def test_read_only_connection_is_permission_denied(tmp_path: Path) -> None:
    st = State.open_default(tmp_path)
    st.set("global", "k", 1)
    st.backend._conn().execute("PRAGMA query_only = 1")
    with pytest.raises(PermissionDenied) as info:
        st.set("global", "k", 2)
    assert "read-only" in info.value.message
    assert st.get("global", "k") == 1
    st.close()


def test_disk_full_is_io_failure_and_keeps_data(tmp_path: Path) -> None:
    st = State.open_default(tmp_path)
    st.set("global", "keep", {"v": 1})
    st.set("global", "counter", 1)
    conn = st.backend._conn()
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    conn.execute(f"PRAGMA max_page_count = {pages}")  # the database may not grow: like a full disk
    big = "x" * 200_000
    for call in (lambda: st.set("global", "big", big), lambda: st.update("global", "counter", lambda v: big),
                 lambda: st.compare_and_set("global", "counter", 1, big)):
        with pytest.raises(IOFailure) as info:
            call()
        assert "full" in info.value.message and info.value.details["path"].endswith("state.sqlite")
    assert st.get("global", "keep") == {"v": 1}
    assert st.get("global", "counter") == 1
    st.update("global", "counter", lambda v: v + 1)  # small writes still work; no stuck transaction
    st.close()
    again = State.open_default(tmp_path)
    assert again.get("global", "counter") == 2 and again.get("global", "big") is None
    again.close()


def test_closed_store_raises(state: State) -> None:
    state.set("global", "k", 1)
    state.close()
    with pytest.raises(AikitError):
        state.get("global", "k")
    with pytest.raises(AikitError):
        state.set("global", "k", 2)


# -- hooks and events --------------------------------------------------------------------------


@pytest.fixture
def hooked(kind: str, tmp_path: Path):
    hooks, bus = HookRegistry(), EventBus()
    st = State(make_backend(kind, tmp_path), events=bus, hooks=hooks, session_id="s")
    yield st, hooks, bus
    st.close()


def test_hook_cancel(hooked) -> None:
    st, hooks, _ = hooked
    st.set("global", "k", "orig")
    hooks.register("state.write.before", lambda ctx: HookResult.cancel("read-only key")
                   if ctx.payload["key"] == "k" else None)
    for call in (lambda: st.set("global", "k", 1), lambda: st.delete("global", "k"),
                 lambda: st.update("global", "k", lambda v: 2), lambda: st.compare_and_set("global", "k", "orig", 3)):
        with pytest.raises(Cancelled) as info:
            call()
        assert info.value.code == "cancelled" and "read-only key" in info.value.message
    assert st.get("global", "k") == "orig"
    st.set("global", "other", 1)
    assert st.get("global", "other") == 1


def test_hook_modify(hooked) -> None:
    st, hooks, _ = hooked
    seen = []

    def in_place(ctx):
        seen.append(dict(ctx.payload))
        if isinstance(ctx.payload["value"], int):
            ctx.payload["value"] *= 10

    hooks.register("state.write.before", in_place, priority=10)
    hooks.register("state.write.before",
                   lambda ctx: HookResult.modify({**ctx.payload, "value": [ctx.payload["value"]]})
                   if ctx.payload["op"] != "delete" else None)
    st.set("global", "a", 1)
    assert st.get("global", "a") == [10]
    assert st.update("global", "b", lambda v: 2) == [20]
    assert st.get("global", "b") == [20]
    assert st.compare_and_set("global", "c", MISSING, 3) is True
    assert st.get("global", "c") == [30]
    assert seen[0] == {"scope": "global", "key": "a", "value": 1, "op": "set"}
    assert [s["op"] for s in seen] == ["set", "update", "compare_and_set"]


def test_hook_replace_skips_write(hooked) -> None:
    st, hooks, bus = hooked
    sub = bus.subscribe("state.*")
    hooks.register("state.write.before", lambda ctx: HookResult.replace("from-hook"))
    st.set("global", "k", 1)
    assert st.get("global", "k") is None
    assert st.update("global", "k", lambda v: 2) == "from-hook"
    assert st.get("global", "k") is None
    assert st.compare_and_set("global", "k", MISSING, 3) is True  # the hook's value, as a bool
    assert st.get("global", "k") is None
    assert sub.drain() == []


def test_raising_hook_does_not_break_write(hooked) -> None:
    st, hooks, _ = hooked
    errors = []
    hooks.on_error = lambda point, name, exc: errors.append((point, str(exc)))

    def bad(ctx):
        raise RuntimeError("hook bug")

    hooks.register("state.write.before", bad)
    hooks.register("state.write.after", bad)
    st.set("global", "k", 1)
    assert st.update("global", "k", lambda v: v + 1) == 2
    assert st.get("global", "k") == 2
    assert ("state.write.before", "hook bug") in errors and ("state.write.after", "hook bug") in errors


def test_failed_writes_fire_state_write_error_and_state_failed(kind: str, tmp_path: Path) -> None:
    """Every write op that fails reports itself (hook and event) and still raises; a hook's
    cancel is a decision, not a failure of the store: no state.write.error hook, but the
    operation did not happen, so it is published as state.failed with code cancelled (as every
    cancelled operation is)."""
    hooks, bus = HookRegistry(), EventBus()
    st = State(make_backend(kind, tmp_path), events=bus, hooks=hooks, session_id="s", max_value_bytes=100)
    seen: list[dict] = []
    hooks.register("state.write.error", lambda ctx: seen.append(ctx.payload))
    failed = bus.subscribe("state.failed")
    st.set("global", "k", "small")

    def broken_updater(old):
        raise ValueError("updater bug")

    with pytest.raises(ResourceExhausted):
        st.set("global", "k", "x" * 500)
    with pytest.raises(ResourceExhausted):
        st.compare_and_set("global", "k", "small", "y" * 500)
    with pytest.raises(ValueError, match="updater bug"):
        st.update("global", "k", broken_updater)
    assert [(p["op"], p["error"]["code"]) for p in seen] == [
        ("set", "resource_exhausted"), ("compare_and_set", "resource_exhausted"), ("update", "internal_error")]
    assert seen[0]["scope"] == "global" and seen[0]["key"] == "k" and "100 bytes" in seen[0]["error"]["message"]
    assert [(e.payload["op"], e.payload["code"]) for e in failed.drain()] == [
        ("set", "resource_exhausted"), ("compare_and_set", "resource_exhausted"), ("update", "internal_error")]
    assert st.get("global", "k") == "small"
    hooks.register("state.write.before", lambda ctx: HookResult.cancel("frozen"))
    with pytest.raises(Cancelled):
        st.set("global", "k", "z")
    with pytest.raises(Cancelled):
        st.update("global", "k", lambda v: "z")
    assert len(seen) == 3
    assert [(e.payload["op"], e.payload["code"]) for e in failed.drain()] == [("set", "cancelled"), ("update", "cancelled")]
    st.close()


def test_after_hook_sees_written_value(hooked) -> None:
    st, hooks, _ = hooked
    after = []
    hooks.register("state.write.after", lambda ctx: after.append(dict(ctx.payload)))
    st.set("session", "k", 1)
    st.update("session", "k", lambda v: v + 1)
    assert st.compare_and_set("session", "k", 99, 5) is False  # no write, no after hook
    st.delete("session", "k")
    st.delete("session", "k")  # nothing to delete: no after hook
    assert after == [
        {"scope": "session:s", "key": "k", "value": 1, "op": "set"},
        {"scope": "session:s", "key": "k", "value": 2, "op": "update"},
        {"scope": "session:s", "key": "k", "value": None, "op": "delete"},
    ]


def test_events_published_without_values(hooked) -> None:
    st, _, bus = hooked
    sub = bus.subscribe("state.*")
    st.set("user:alice", "k", {"secret": "s3cr3t"})
    st.update("user:alice", "k", lambda v: 1)
    st.compare_and_set("user:alice", "k", 1, 2)
    st.compare_and_set("user:alice", "k", 1, 3)  # fails: no event
    st.delete("user:alice", "k")
    st.delete("user:alice", "k")  # absent: no event
    st.get("user:alice", "k")
    events = sub.drain()
    assert all(e.payload.pop("duration_ms") >= 0 for e in events)
    assert [(e.topic, e.payload) for e in events] == [
        ("state.written", {"scope": "user:alice", "key": "k", "op": "set"}),
        ("state.written", {"scope": "user:alice", "key": "k", "op": "update"}),
        ("state.written", {"scope": "user:alice", "key": "k", "op": "compare_and_set"}),
        ("state.deleted", {"scope": "user:alice", "key": "k", "op": "delete"}),
    ]
    assert all(e.source == "state" for e in events)


def test_update_hook_runs_inside_atomic_section(hooked) -> None:
    st, hooks, _ = hooked
    hooks.register("state.write.before", lambda ctx: HookResult.modify({**ctx.payload, "value": ctx.payload["value"] + 1}))
    assert counted_in_threads(st, "n", threads=4, times=50) == 400


# -- every operation in one pass, and packaging ----------------------------------------------------


def test_every_operation_in_one_pass(state: State) -> None:
    state.set("global", "k", NESTED)
    assert same(state.get("global", "k"), NESTED)
    assert state.get("global", "absent", 7) == 7
    assert state.exists("global", "k")
    assert state.keys("global") == ["k"]
    assert state.update("global", "n", lambda v: (v or 0) + 1) == 1
    assert state.compare_and_set("global", "n", 1, 2) is True
    assert state.delete("global", "k") is True
    assert state.keys("global", prefix="n") == ["n"]


def test_components_import_no_kernel_modules() -> None:
    code = ("import sys, aikit_components.state, aikit_components.storage, aikit_components.storage.sqlite\n"
            "bad = [m for m in ('zmq', 'lupa', 'jupyter_client', 'aikit_kernel') if m in sys.modules]\n"
            "assert not bad, bad\n")
    subprocess.run([sys.executable, "-c", code], env=env(), check=True, timeout=60)


def test_sqlite_error_codes_are_python_311_compatible() -> None:
    # translate_error relies on sqlite_errorcode (Python >= 3.11)
    try:
        sqlite3.connect(":memory:").execute("SELEC")
    except sqlite3.Error as exc:
        assert isinstance(exc.sqlite_errorcode, int)
