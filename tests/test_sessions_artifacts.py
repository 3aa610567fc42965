"""Sessions and artifacts on real files (each test has its own tmp_path data directory)."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from aikit_components import artifacts as artifacts_mod
from aikit_components.artifacts import ArtifactInfo, ArtifactStore
from aikit_components.errors import InvalidArgument, IOFailure, NotFound, ResourceExhausted
from aikit_components.events import EventBus
from aikit_components.sessions import SessionInfo, SessionStore, new_session_id
from aikit_components.storage.settings import StorageSettings
from tests.support.threads import run_in_threads

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(params=["sqlite", "postgres"])
def storage(request: pytest.FixtureRequest) -> StorageSettings:
    """The [storage] settings of the backend under test (PostgreSQL: this test's own schema)."""
    if request.param == "postgres":
        return StorageSettings(url=request.getfixturevalue("pg_url"), pool_max=8, artifact_blobs="directory")
    return StorageSettings()


def blob_files(data_dir: Path) -> list[Path]:
    blobs = data_dir / "blobs"
    return sorted(p for p in blobs.rglob("*") if p.is_file()) if blobs.exists() else []


# ====================================================================== sessions
def test_session_lifecycle(tmp_path: Path, storage: StorageSettings) -> None:
    bus = EventBus()
    sub = bus.subscribe("session.*")
    store = SessionStore(tmp_path, storage=storage, events=bus)
    a = store.create("first", {"user": "ada", "tags": ["x"]})
    b = store.create()
    c = store.create("third")
    assert isinstance(a, SessionInfo) and a.status == "active" and a.active
    assert a.name == "first" and a.metadata == {"user": "ada", "tags": ["x"]}
    assert b.name is None and b.metadata == {}
    assert len({a.id, b.id, c.id}) == 3

    # newest first
    assert [s.id for s in store.list()] == [c.id, b.id, a.id]
    assert [s.id for s in store.list(limit=2)] == [c.id, b.id]

    done = store.complete(b.id)
    assert done.status == "completed" and done.completed_at is not None and done.completed_at >= b.created_at
    failed = store.complete(c.id, status="failed")
    assert failed.status == "failed"
    assert [s.id for s in store.list(status="active")] == [a.id]
    assert [s.id for s in store.list(status="completed")] == [b.id]
    assert [s.id for s in store.list(status="failed")] == [c.id]

    resumed = store.resume(b.id)
    assert resumed.status == "active" and resumed.completed_at is None
    assert resumed.updated_at >= done.updated_at and resumed.created_at == b.created_at
    assert store.get(b.id) == resumed

    d = resumed.to_dict()
    assert json.loads(json.dumps(d)) == d
    assert set(d) == {"id", "name", "status", "created_at", "updated_at", "completed_at", "metadata"}

    topics = [e.topic for e in sub.drain()]
    assert topics == ["session.created"] * 3 + ["session.completed"] * 2 + ["session.resumed"]


def test_session_unknown_id_and_bad_arguments(tmp_path: Path, storage: StorageSettings) -> None:
    store = SessionStore(tmp_path, storage=storage)
    for call in (store.get, store.resume, store.complete):
        with pytest.raises(NotFound) as info:
            call("s-nope")
        assert "s-nope" in info.value.message and info.value.code == "not_found"
    s = store.create()
    with pytest.raises(InvalidArgument):
        store.complete(s.id, status="active")
    with pytest.raises(InvalidArgument):
        store.list(status="weird")
    with pytest.raises(InvalidArgument):
        store.list(limit=0)
    with pytest.raises(InvalidArgument):
        store.create(metadata=["not", "a", "dict"])  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument):
        store.create(name="x" * 256)


def test_session_ids_sort_by_time_and_are_unique() -> None:
    ids = [new_session_id(1_700_000_000.0 + i * 0.001) for i in range(50)]
    assert ids == sorted(ids)
    assert ids[0].startswith("s-20231114-")
    assert len(set(new_session_id(1_700_000_000.0) for _ in range(200))) == 200


def test_sessions_persist_across_reopen(tmp_path: Path, storage: StorageSettings) -> None:
    store = SessionStore(tmp_path, storage=storage)
    a = store.create("kept", {"n": 1})
    store.complete(a.id)
    store.close()
    again = SessionStore(tmp_path, storage=storage)
    got = again.get(a.id)
    assert got.name == "kept" and got.status == "completed" and got.metadata == {"n": 1}
    assert [s.id for s in again.list()] == [a.id]
    assert again.resume(a.id).status == "active"
    again.close()
    if storage.postgres:
        return
    # the database file is in WAL mode
    assert (tmp_path / "sessions.sqlite").exists()


def test_session_complete_then_resume(tmp_path: Path, storage: StorageSettings) -> None:
    store = SessionStore(tmp_path, storage=storage)
    s = store.create("resumed")
    assert store.complete(s.id).status == "completed"
    store.resume(s.id)
    assert store.get(s.id).status == "active"
    assert [x.id for x in store.list()] == [s.id]


# ====================================================================== artifacts
def test_put_get_text_and_bytes(tmp_path: Path, storage: StorageSettings) -> None:
    store = ArtifactStore(tmp_path, storage=storage)
    t = store.put("notes.md", "héllo wörld")
    assert isinstance(t, ArtifactInfo)
    assert (t.name, t.version, t.mime, t.size) == ("notes.md", 1, "text/plain", len("héllo wörld".encode()))
    assert t.sha256 == hashlib.sha256("héllo wörld".encode()).hexdigest()
    info, data = store.get("notes.md")
    assert info == t and data.decode("utf-8") == "héllo wörld"

    raw = bytes(range(256)) * 10
    b = store.put("img.bin", raw)
    assert b.mime == "application/octet-stream"
    assert store.get("img.bin")[1] == raw
    assert store.put("empty", b"").size == 0 and store.get("empty")[1] == b""
    # the blob is where the contract says
    assert (tmp_path / "blobs" / b.sha256[:2] / b.sha256).read_bytes() == raw


def test_mime_and_metadata_round_trip(tmp_path: Path, storage: StorageSettings) -> None:
    store = ArtifactStore(tmp_path, storage=storage)
    meta = {"source": "agent", "score": 0.5, "n": 3, "tags": ["a", "b"], "nested": {"ok": True}, "none": None}
    put = store.put("chart", b"\x89PNG...", mime="image/png", metadata=meta, session_id="s-1")
    store.close()
    info, _ = ArtifactStore(tmp_path, storage=storage).get("chart")
    assert info.mime == "image/png" and info.metadata == meta and info.session_id == "s-1"
    assert info == put
    d = info.to_dict()
    assert json.loads(json.dumps(d)) == d
    with pytest.raises(InvalidArgument):
        store.put("x", "a", mime="png")
    with pytest.raises(InvalidArgument):
        store.put("x", "a", metadata="no")  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument):
        store.put("x", 42)  # type: ignore[arg-type]


def test_versions(tmp_path: Path, storage: StorageSettings) -> None:
    store = ArtifactStore(tmp_path, storage=storage)
    v1 = store.put("report", "first")
    v2 = store.put("report", "second")
    assert (v1.version, v2.version) == (1, 2)
    assert store.get("report")[1] == b"second"
    assert store.get("report", 1)[1] == b"first"
    assert store.get("report", 2)[0] == v2
    assert store.info("report").version == 2
    assert [v.version for v in store.versions("report")] == [1, 2]
    assert store.versions("nothing") == []
    with pytest.raises(NotFound) as err:
        store.get("report", 3)
    assert "'report'" in err.value.message and "3" in err.value.message
    with pytest.raises(NotFound) as err:
        store.get("missing")
    assert "'missing'" in err.value.message
    with pytest.raises(InvalidArgument):
        store.get("report", 0)


def test_dedup_same_content_one_blob(tmp_path: Path, storage: StorageSettings) -> None:
    store = ArtifactStore(tmp_path, storage=storage)
    a = store.put("a", "same content")
    b = store.put("b", "same content")
    c = store.put("a", "same content")
    assert a.sha256 == b.sha256 == c.sha256 and c.version == 2
    assert len(blob_files(tmp_path)) == 1
    store.put("d", "other")
    assert len(blob_files(tmp_path)) == 2


def test_list_latest_per_name_by_session_and_prefix(tmp_path: Path, storage: StorageSettings) -> None:
    store = ArtifactStore(tmp_path, storage=storage)
    store.put("b/one", "1", session_id="s-A")
    store.put("a/two", "2", session_id="s-A")
    store.put("b/one", "1 again", session_id="s-B")
    store.put("c", "3", session_id="s-B")
    listed = store.list()
    assert [(i.name, i.version) for i in listed] == [("a/two", 1), ("b/one", 2), ("c", 1)]
    assert [(i.name, i.version) for i in store.list(session_id="s-A")] == [("a/two", 1), ("b/one", 1)]
    assert [(i.name, i.version) for i in store.list(session_id="s-B")] == [("b/one", 2), ("c", 1)]
    assert [i.name for i in store.list(prefix="b/")] == ["b/one"]
    assert [i.name for i in store.list(prefix="")] == ["a/two", "b/one", "c"]
    assert store.list(prefix="B/") == []  # case-sensitive
    assert store.list(session_id="s-none") == []


def test_delete_versions_and_blobs(tmp_path: Path, storage: StorageSettings) -> None:
    bus = EventBus()
    sub = bus.subscribe("artifact.*")
    store = ArtifactStore(tmp_path, storage=storage, events=bus)
    store.put("x", "one")
    store.put("x", "two")
    store.put("y", "two")  # shares the blob of x v2
    assert len(blob_files(tmp_path)) == 2

    assert store.delete("x", 1) == 1
    assert [v.version for v in store.versions("x")] == [2]
    assert len(blob_files(tmp_path)) == 1  # "one" is unreferenced now
    assert store.delete("x") == 1
    assert store.versions("x") == []
    assert len(blob_files(tmp_path)) == 1  # still used by y
    assert store.get("y")[1] == b"two"
    with pytest.raises(NotFound):
        store.delete("x")
    with pytest.raises(NotFound):
        store.get("x")
    # versions are never reused after a delete
    assert store.put("x", "three").version == 3
    store.delete("y")
    store.delete("x")
    assert blob_files(tmp_path) == []
    topics = [e.topic for e in sub.drain()]
    assert topics.count("artifact.put") == 4 and topics.count("artifact.deleted") == 4
    assert store.gc() == {"blobs": 0, "temp_files": 0}


def test_size_limit_error_message(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path, max_bytes=10)
    assert store.put("ok", b"0123456789").size == 10
    with pytest.raises(ResourceExhausted) as err:
        store.put("big", b"01234567890")
    e = err.value
    assert e.code == "resource_exhausted"
    assert "'big'" in e.message and "11 bytes" in e.message and "10 bytes" in e.message
    assert "artifacts.max_bytes" in e.message
    assert e.details == {"name": "big", "size": 11, "limit": 10, "config_key": "artifacts.max_bytes"}
    with pytest.raises(ResourceExhausted):
        store.put("big", "ééééééé")  # 7 characters, 14 UTF-8 bytes
    with pytest.raises(NotFound):
        store.info("big")
    assert len(blob_files(tmp_path)) == 1
    big = ArtifactStore(tmp_path / "b")
    with pytest.raises(ResourceExhausted) as err:
        big.put("huge", b"\0" * (100 * 1024 * 1024 + 1))
    assert "100.0 MiB" in err.value.message
    with pytest.raises(InvalidArgument):
        ArtifactStore(tmp_path, max_bytes=0)


@pytest.mark.parametrize("bad", ["", "x" * 256, "a\x00b", None, 5])
def test_bad_names(tmp_path: Path, bad: object, storage: StorageSettings) -> None:
    store = ArtifactStore(tmp_path, storage=storage)
    with pytest.raises(InvalidArgument):
        store.put(bad, "content")  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument):
        store.get(bad)  # type: ignore[arg-type]
    assert store.list() == [] and blob_files(tmp_path) == []


def test_long_and_unicode_names_are_fine(tmp_path: Path, storage: StorageSettings) -> None:
    store = ArtifactStore(tmp_path, storage=storage)
    for name in ("x" * 255, "résumé/ünïcode 名前", "../../etc/passwd", " spaced "):
        store.put(name, name)
        assert store.get(name)[1] == name.encode()
    assert not (tmp_path.parent / "etc").exists()


def test_corrupted_and_missing_blob_detected(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path)
    info = store.put("doc", "precious text")
    path = store.blob_path(info.sha256)
    path.write_bytes(b"precious texT")
    with pytest.raises(IOFailure) as err:
        store.get("doc")
    assert "corrupt" in err.value.message and info.sha256 in err.value.message and "'doc'" in err.value.message
    # putting the same content again repairs the blob
    assert store.put("doc", "precious text").version == 2
    assert store.get("doc", 1)[1] == b"precious text"
    path.unlink()
    with pytest.raises(IOFailure) as err:
        store.get("doc")
    assert "missing" in err.value.message


_WORKER = textwrap.dedent("""
    import json, os, sys, time
    from pathlib import Path
    from aikit_components.artifacts import ArtifactStore
    from aikit_components.storage.settings import StorageSettings
    data_dir, go, n, tag = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    store = ArtifactStore(data_dir, storage=StorageSettings(url=sys.argv[5], artifact_blobs=sys.argv[6]))
    store.list()  # open the database before the start signal
    deadline = time.monotonic() + 30
    while not go.exists() and time.monotonic() < deadline:
        time.sleep(0.001)
    versions = [store.put("shared", f"{tag}-{i}".encode(), metadata={"tag": tag, "i": i}).version for i in range(n)]
    print(json.dumps(versions))
""")


def test_concurrent_puts_from_two_processes(tmp_path: Path, storage: StorageSettings) -> None:
    n = 25
    go = tmp_path / "go"
    data_dir = tmp_path / "data"
    ArtifactStore(data_dir, storage=storage).close()  # create the schema first
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)}
    procs = [
        subprocess.Popen([sys.executable, "-c", _WORKER, str(data_dir), str(go), str(n), tag, storage.url,
                          storage.artifact_blobs],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        for tag in ("p1", "p2")
    ]
    time.sleep(0.3)
    go.touch()
    results = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        results.append(json.loads(out))
    for versions in results:
        assert versions == sorted(versions) and len(versions) == n
    everything = sorted(results[0] + results[1])
    assert everything == list(range(1, 2 * n + 1))  # distinct, consecutive, none lost
    store = ArtifactStore(data_dir, storage=storage)
    stored = store.versions("shared")
    assert [v.version for v in stored] == everything
    for v in stored:  # each version holds what its writer put
        assert store.get("shared", v.version)[1] == f"{v.metadata['tag']}-{v.metadata['i']}".encode()


def test_concurrent_puts_from_threads(tmp_path: Path, storage: StorageSettings) -> None:
    store = ArtifactStore(tmp_path, storage=storage)
    got: list[int] = []
    lock = threading.Lock()

    def work(k: int) -> None:
        for i in range(10):
            v = store.put("t", f"{k}-{i}").version
            with lock:
                got.append(v)

    run_in_threads(4, work)
    assert sorted(got) == list(range(1, 41))


@pytest.mark.parametrize("target", ["replace", "fsync"])
def test_disk_full_leaves_no_index_row(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, target: str) -> None:
    store = ArtifactStore(tmp_path)
    store.put("doc", "v1")

    def disk_full(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(artifacts_mod.os, target, disk_full)
    with pytest.raises(IOFailure) as err:
        store.put("doc", "v2 that does not fit")
    e = err.value
    assert e.code == "io_error" and "ENOSPC" in e.message and "'doc'" in e.message
    assert "free some disk space" in e.message and e.details["errno"] == "ENOSPC"
    with pytest.raises(IOFailure):
        store.put("new", "nothing")
    monkeypatch.undo()

    assert [v.version for v in store.versions("doc")] == [1]
    assert store.versions("new") == [] and [i.name for i in store.list()] == ["doc"]
    assert len(blob_files(tmp_path)) == 1  # no temp file, no half-written blob
    assert store.put("doc", "v2 that does not fit").version == 2  # usable again


def test_database_full_leaves_no_row_and_no_orphan_blob(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path)
    store.put("doc", "v1")
    conn = store.db.connection()
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    conn.execute(f"PRAGMA max_page_count = {pages}")
    with pytest.raises(IOFailure) as err:
        store.put("doc", "v2", metadata={"pad": "x" * 200_000})
    assert "full" in err.value.message
    conn.execute("PRAGMA max_page_count = 1073741823")
    assert [v.version for v in store.versions("doc")] == [1]
    assert len(blob_files(tmp_path)) == 1  # the blob written for v2 was removed again
    assert store.put("doc", "v2").version == 2


def test_artifacts_persist_and_share_the_sessions_file(tmp_path: Path, storage: StorageSettings) -> None:
    sessions = SessionStore(tmp_path, storage=storage)
    s = sessions.create("run")
    arts = ArtifactStore(tmp_path, storage=storage)
    arts.put("out.txt", "result", session_id=s.id)
    arts.close()
    sessions.close()
    files = [] if storage.postgres else ["sessions.sqlite"]  # PostgreSQL: no database file at all
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix == ".sqlite") == files
    again = ArtifactStore(tmp_path, storage=storage)
    assert [i.name for i in again.list(session_id=s.id)] == ["out.txt"]
    assert again.get("out.txt")[1] == b"result"
    assert SessionStore(tmp_path, storage=storage).get(s.id).name == "run"


def test_gc_removes_orphans_and_stale_temp_files(tmp_path: Path, storage: StorageSettings) -> None:
    store = ArtifactStore(tmp_path, storage=storage)
    info = store.put("keep", "keep me")
    orphan = tmp_path / "blobs" / "ab" / ("ab" + "0" * 62)
    orphan.parent.mkdir(parents=True, exist_ok=True)
    orphan.write_bytes(b"orphan")
    stale = orphan.parent / ".tmp-crashed"
    stale.write_bytes(b"half")
    old = time.time() - 7200
    os.utime(stale, (old, old))
    fresh = orphan.parent / ".tmp-inflight"
    fresh.write_bytes(b"in progress")
    assert store.gc() == {"blobs": 1, "temp_files": 1}
    assert fresh.exists() and store.blob_path(info.sha256).exists()
    assert store.get("keep")[1] == b"keep me"


def test_artifact_versions_keep_their_mime(tmp_path: Path, storage: StorageSettings) -> None:
    store = ArtifactStore(tmp_path, storage=storage)
    a = store.put("a", "1")
    b = store.put("a", b"2", mime="application/x-thing")
    assert (a.version, b.version) == (1, 2)
    info, data = store.get("a", 1)
    assert data == b"1" and info.mime == "text/plain"
    assert store.info("a").mime == "application/x-thing"
    assert [i.name for i in store.list()] == ["a"]
    assert len(store.versions("a")) == 2
    assert store.delete("a") == 2


def test_components_do_not_import_kernel_side_packages() -> None:
    code = ("import sys, aikit_components.sessions, aikit_components.artifacts;"
            "bad = [m for m in ('zmq', 'lupa', 'jupyter_client', 'aikit_kernel') if m in sys.modules];"
            "print(bad); sys.exit(1 if bad else 0)")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stdout + result.stderr


# ====================================================================== PostgreSQL specifics
def test_artifact_content_in_the_database(tmp_path: Path, pg_url: str) -> None:
    storage = StorageSettings(url=pg_url)  # content in the database: the default with a url
    store = ArtifactStore(tmp_path, storage=storage)
    one = store.put("a", b"\x00\xffsame")
    store.put("b", b"\x00\xffsame")  # dedup: one row of content
    store.put("c", "other")
    assert blob_files(tmp_path) == []  # nothing on disk
    assert store.get("a") == (one, b"\x00\xffsame")
    store.delete("a")
    assert store.get("b")[1] == b"\x00\xffsame"  # still referenced by b
    store.delete("b")
    assert store.db.query("count", "SELECT count(*) FROM artifact_blobs") == [(1,)]
    again = ArtifactStore(tmp_path / "elsewhere", storage=storage)  # another kernel, another data dir
    assert again.get("c")[1] == b"other"
    again.close()
    store.close()


def test_artifact_blobs_in_a_shared_directory(tmp_path: Path, pg_url: str) -> None:
    shared = tmp_path / "shared-blobs"
    storage = StorageSettings(url=pg_url, artifact_blobs="directory", blobs_dir=str(shared))
    first = ArtifactStore(tmp_path / "kernel1", storage=storage)
    first.put("report", "from kernel 1")
    second = ArtifactStore(tmp_path / "kernel2", storage=storage)
    assert second.get("report")[1] == b"from kernel 1"
    assert sum(1 for p in shared.rglob("*") if p.is_file()) == 1
    first.close()
    second.close()
