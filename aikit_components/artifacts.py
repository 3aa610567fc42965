"""Artifacts: named, versioned, content-addressed outputs (text or bytes) with a mime type.

- Content is stored once per sha256 at ``<data_dir>/blobs/<sha[:2]>/<sha>``, written atomically
  (temporary file in the same directory, fsync, ``os.replace``, fsync of the directory) *before*
  the index row is committed, so an acknowledged artifact survives a crash. Identical content is
  stored once.
- The index lives in ``<data_dir>/sessions.sqlite`` (table ``artifacts``, primary key
  ``(name, version)``). Each ``put`` of a name gets the next version (1, 2, ...) under SQLite's
  write lock (``BEGIN IMMEDIATE``), so concurrent writers in several processes never share or lose
  a version. Versions are never reused, even after a delete.
- ``get`` verifies the blob's sha256 and raises :class:`IOFailure` when it does not match.
- Content over ``max_bytes`` (default 100 MiB, config key ``artifacts.max_bytes``) is refused
  with :class:`ResourceExhausted`; an OS failure (disk full, ...) is an :class:`IOFailure` and
  leaves no index row.

With ``[storage] url`` (PostgreSQL, see :mod:`aikit_components.storage.settings`) the index is in
PostgreSQL, and the content either in a directory every kernel shares (``artifact_blobs =
"directory"``, ``blobs_dir``) or in the database itself (``"database"``, the default with a URL:
table ``artifact_blobs``, written in the same transaction as the index row, so a failure leaves
neither).

Events (with an EventBus): ``artifact.put`` (payload :meth:`ArtifactInfo.to_dict`) and
``artifact.deleted`` (``{"name", "versions"}``).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .codec import lua_type_name
from .errors import AikitError, InvalidArgument, IOFailure, NotFound, ResourceExhausted
from .events import EventBus
from .sessions import DatabaseStore, check_metadata, check_name, load_metadata, open_database, os_error, publish, record_dict
from .storage.settings import StorageSettings

DEFAULT_MAX_BYTES = 100 * 1024 * 1024
MAX_BYTES_CONFIG_KEY = "artifacts.max_bytes"
TEXT_MIME = "text/plain"
BINARY_MIME = "application/octet-stream"
_TEMP_PREFIX = ".tmp-"
_STALE_TEMP_S = 3600.0
_CHUNK = 1 << 20


@dataclass(frozen=True, slots=True)
class ArtifactInfo:
    """One stored version of an artifact (without its content)."""

    name: str
    version: int
    sha256: str
    size: int
    mime: str
    metadata: dict[Any, Any] = field(default_factory=dict)
    session_id: str | None = None
    created_at: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return record_dict(self)


_COLUMNS = "name, version, sha256, size, mime, metadata, session_id, created_at"


def _info_from_row(row: tuple[Any, ...]) -> ArtifactInfo:
    name, version, sha, size, mime, metadata, session_id, created = row
    return ArtifactInfo(name, version, sha, size, mime, load_metadata(metadata), session_id, created)


def _human(size: int) -> str:
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if size >= scale:
            return f"{size / scale:.1f} {unit} ({size:,} bytes)"
    return f"{size:,} bytes"


def _check_version(version: Any) -> int:
    if isinstance(version, float) and version.is_integer():
        version = int(version)
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise InvalidArgument(f"version must be a positive integer, got {version!r}", details={"argument": "version"})
    return version


def _check_mime(mime: Any) -> str:
    if not isinstance(mime, str):
        raise InvalidArgument(f"mime must be a string, got {lua_type_name(mime)}", details={"argument": "mime"})
    if not mime or len(mime) > 255 or "/" not in mime or any(ord(c) < 32 or ord(c) == 127 for c in mime):
        raise InvalidArgument(f"mime must look like type/subtype (e.g. text/markdown, image/png), got {mime!r}",
                              details={"argument": "mime"})
    return mime


def _fsync_dir(path: Path) -> None:
    """Make a rename or creation in ``path`` durable (where the platform supports it)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return  # e.g. Windows: directories cannot be opened
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.EBADF, errno.ENOTSUP, errno.EACCES):
            raise
    finally:
        os.close(fd)


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


class ArtifactStore(DatabaseStore):
    """Put, get, list, version and delete artifacts under ``data_dir``."""

    def __init__(self, data_dir: Path | str, events: EventBus | None = None,
                 max_bytes: int = DEFAULT_MAX_BYTES, *, storage: StorageSettings | None = None) -> None:
        if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 1:
            raise InvalidArgument(f"{MAX_BYTES_CONFIG_KEY} must be a positive integer, got {max_bytes!r}",
                                  details={"argument": "max_bytes"})
        storage = storage or StorageSettings()
        self.db = open_database(data_dir, storage)
        self.events = events
        self.max_bytes = max_bytes
        self.blobs_dir = storage.blobs_path(self.db.data_dir)
        #: content in the database (table artifact_blobs) rather than files under blobs_dir
        self.blobs_in_db = storage.blobs_in_database

    def blob_path(self, sha256: str) -> Path:
        """Where the content with this sha256 is (or would be) stored."""
        return self.blobs_dir / sha256[:2] / sha256

    # ------------------------------------------------------------------ put
    def put(self, name: str, content: str | bytes, mime: str | None = None,
            metadata: dict[Any, Any] | None = None, session_id: str | None = None) -> ArtifactInfo:
        """Store ``content`` as the next version of ``name``. A str is stored UTF-8 encoded with
        mime ``text/plain`` by default; bytes default to ``application/octet-stream``."""
        check_name(name, "artifact name")
        if isinstance(content, str):
            try:
                data = content.encode("utf-8")
            except UnicodeEncodeError as exc:
                raise InvalidArgument(f"artifact {name!r}: text content is not valid Unicode ({exc.reason})",
                                      details={"argument": "content"}) from None
            default_mime = TEXT_MIME
        elif isinstance(content, (bytes, bytearray, memoryview)):
            data = bytes(content)
            default_mime = BINARY_MIME
        else:
            raise InvalidArgument(f"artifact {name!r}: content must be a string or bytes, got {lua_type_name(content)}",
                                  details={"argument": "content"})
        mime = default_mime if mime is None else _check_mime(mime)
        meta = check_metadata(metadata)
        if session_id is not None:
            check_name(session_id, "session id")
        size = len(data)
        if size > self.max_bytes:
            raise ResourceExhausted(
                f"artifact {name!r} is {_human(size)}, over the limit of {_human(self.max_bytes)}; "
                f"store less, or raise the limit with the config key {MAX_BYTES_CONFIG_KEY}",
                details={"name": name, "size": size, "limit": self.max_bytes, "config_key": MAX_BYTES_CONFIG_KEY},
            )
        sha = hashlib.sha256(data).hexdigest()
        action = f"cannot store artifact {name!r}"

        created = False if self.blobs_in_db else self._write_blob(sha, data, action)  # durable before the row
        now = time.time()
        try:
            with self.db.transaction(action) as conn:
                if self.blobs_in_db:  # same transaction as the row: both or neither
                    conn.execute("INSERT INTO artifact_blobs (sha256, data) VALUES (?, ?) "
                                 "ON CONFLICT (sha256) DO NOTHING", (sha, data))
                # Blobs are only removed under this same write lock: if ours is still there now,
                # it stays until our row references it. If a delete removed it meanwhile, rewrite it.
                elif not self.blob_path(sha).exists():
                    created = self._write_blob(sha, data, action) or created
                last = conn.execute("SELECT last_version FROM artifact_names WHERE name = ?", (name,)).fetchone()
                top = conn.execute("SELECT MAX(version) FROM artifacts WHERE name = ?", (name,)).fetchone()
                version = max(last[0] if last else 0, top[0] or 0) + 1
                conn.execute(f"INSERT INTO artifacts ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                             (name, version, sha, size, mime, meta, session_id, now))
                conn.execute(
                    "INSERT INTO artifact_names (name, last_version) VALUES (?, ?) "
                    "ON CONFLICT (name) DO UPDATE SET last_version = excluded.last_version",
                    (name, version),
                )
        except BaseException:
            if created:
                with contextlib.suppress(Exception):
                    self._discard_if_unreferenced(sha)
            raise
        info = ArtifactInfo(name, version, sha, size, mime, load_metadata(meta), session_id, now)
        publish(self.events, "artifact.put", info.to_dict(), "artifacts")
        return info

    def _write_blob(self, sha: str, data: bytes, action: str) -> bool:
        """Make sure the blob for ``sha`` is on disk and intact; True when this call wrote it."""
        path = self.blob_path(sha)
        try:
            if path.stat().st_size == len(data) and _file_sha256(path) == sha:
                return False  # dedup: identical content is already stored
        except OSError:
            pass  # missing or unreadable: (re)write it
        shard = path.parent
        try:
            if not shard.is_dir():
                shard.mkdir(parents=True, exist_ok=True)
                _fsync_dir(shard.parent)
            fd, tmp = tempfile.mkstemp(prefix=_TEMP_PREFIX, dir=shard)
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(tmp, path)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise
            _fsync_dir(shard)
        except OSError as exc:
            raise os_error(exc, action, path) from exc
        return True

    def _discard_if_unreferenced(self, sha: str) -> bool:
        """Remove the blob for ``sha`` when no index row references it (under the write lock)."""
        with self.db.transaction(f"cannot remove blob {sha}") as conn:
            if conn.execute("SELECT 1 FROM artifacts WHERE sha256 = ? LIMIT 1", (sha,)).fetchone():
                return False
            if self.blobs_in_db:
                return conn.execute("DELETE FROM artifact_blobs WHERE sha256 = ?", (sha,)).rowcount > 0
            try:
                os.unlink(self.blob_path(sha))
            except FileNotFoundError:
                return False
            except OSError as exc:
                raise os_error(exc, f"cannot remove blob {sha}", self.blob_path(sha)) from exc
            return True

    # ------------------------------------------------------------------ read
    def info(self, name: str, version: int | None = None) -> ArtifactInfo:
        """The index entry of ``name`` (its latest version when ``version`` is None)."""
        check_name(name, "artifact name")
        if version is None:
            rows = self.db.query("cannot read artifacts",
                                 f"SELECT {_COLUMNS} FROM artifacts WHERE name = ? ORDER BY version DESC LIMIT 1",
                                 (name,))
        else:
            version = _check_version(version)
            rows = self.db.query("cannot read artifacts",
                                 f"SELECT {_COLUMNS} FROM artifacts WHERE name = ? AND version = ?",
                                 (name, version))
        if not rows:
            raise self._not_found(name, version)
        return _info_from_row(rows[0])

    def get(self, name: str, version: int | None = None) -> tuple[ArtifactInfo, bytes]:
        """``(info, content)`` of ``name`` (latest version when ``version`` is None). The content
        is checked against its sha256; a corrupt or missing blob is an :class:`IOFailure`."""
        info = self.info(name, version)
        path = self.blob_path(info.sha256)
        label = f"artifact {name!r} version {info.version}"
        if self.blobs_in_db:
            rows = self.db.query(f"cannot read {label}", "SELECT data FROM artifact_blobs WHERE sha256 = ?",
                                 (info.sha256,))
            if not rows:
                self.info(name, info.version)  # deleted meanwhile -> NotFound
                raise IOFailure(f"{label} is lost: its content (sha256 {info.sha256}) is missing from the database",
                                details={"name": name, "version": info.version, "sha256": info.sha256})
            return info, bytes(rows[0][0])
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            self.info(name, info.version)  # deleted meanwhile -> NotFound
            raise IOFailure(f"{label} is lost: its content file {path} is missing",
                            details={"name": name, "version": info.version, "path": str(path)}) from None
        except OSError as exc:
            raise os_error(exc, f"cannot read {label}", path) from exc
        actual = hashlib.sha256(data).hexdigest()
        if actual != info.sha256:
            raise IOFailure(
                f"{label} is corrupt: its content file {path} has sha256 {actual}, expected {info.sha256}",
                details={"name": name, "version": info.version, "path": str(path),
                         "expected_sha256": info.sha256, "actual_sha256": actual},
            )
        return info, data

    def list(self, session_id: str | None = None, prefix: str | None = None) -> list[ArtifactInfo]:
        """The latest version of each name, sorted by name; only versions put in ``session_id``
        and names starting with ``prefix`` when given."""
        where: list[str] = []
        params: list[Any] = []
        if session_id is not None:
            check_name(session_id, "session id")
            where.append("session_id = ?")
            params.append(session_id)
        if prefix is not None:
            if not isinstance(prefix, str):
                raise InvalidArgument(f"prefix must be a string, got {lua_type_name(prefix)}",
                                      details={"argument": "prefix"})
            if prefix:
                where.append("substr(name, 1, ?) = ?")
                params += [len(prefix), prefix]
        clause = ("WHERE " + " AND ".join(where)) if where else ""
        rows = self.db.query(
            "cannot list artifacts",
            f"SELECT {', '.join('a.' + c.strip() for c in _COLUMNS.split(','))} FROM artifacts a "
            f"JOIN (SELECT name, MAX(version) AS v FROM artifacts {clause} GROUP BY name) m "
            "ON a.name = m.name AND a.version = m.v ORDER BY a.name",
            tuple(params),
        )
        return [_info_from_row(r) for r in rows]

    def versions(self, name: str) -> list[ArtifactInfo]:
        """Every stored version of ``name``, oldest first (empty when there is none)."""
        check_name(name, "artifact name")
        rows = self.db.query("cannot read artifacts",
                             f"SELECT {_COLUMNS} FROM artifacts WHERE name = ? ORDER BY version", (name,))
        return [_info_from_row(r) for r in rows]

    # ------------------------------------------------------------------ delete / gc
    def delete(self, name: str, version: int | None = None) -> int:
        """Remove one version of ``name`` (every version when ``version`` is None) from the index;
        returns how many were removed. Content no longer referenced is removed from disk."""
        check_name(name, "artifact name")
        if version is not None:
            version = _check_version(version)
        cond, params = ("name = ?", (name,)) if version is None else ("name = ? AND version = ?", (name, version))
        with self.db.transaction(f"cannot delete artifact {name!r}") as conn:
            rows = conn.execute(f"SELECT version, sha256 FROM artifacts WHERE {cond}", params).fetchall()
            if not rows:
                raise self._not_found(name, version)
            conn.execute(f"DELETE FROM artifacts WHERE {cond}", params)
        # The rows are gone (committed); blobs go next, each re-checked under the write lock.
        for sha in sorted({sha for _, sha in rows}):
            with contextlib.suppress(AikitError):
                self._discard_if_unreferenced(sha)
        versions = sorted(v for v, _ in rows)
        publish(self.events, "artifact.deleted", {"name": name, "versions": versions}, "artifacts")
        return len(versions)

    def gc(self) -> dict[str, int]:
        """Remove content files no index row references and stale temporary files (left by a
        crash mid-write). Returns ``{"blobs": n, "temp_files": n}``."""
        removed = {"blobs": 0, "temp_files": 0}
        if self.blobs_in_db:
            with self.db.transaction("cannot collect unused artifact content") as conn:
                removed["blobs"] = conn.execute(
                    "DELETE FROM artifact_blobs b WHERE NOT EXISTS "
                    "(SELECT 1 FROM artifacts a WHERE a.sha256 = b.sha256)").rowcount
            return removed
        if not self.blobs_dir.is_dir():
            return removed
        with self.db.transaction("cannot collect unused artifact content") as conn:
            used = {row[0] for row in conn.execute("SELECT DISTINCT sha256 FROM artifacts")}
            cutoff = time.time() - _STALE_TEMP_S
            for shard in self.blobs_dir.iterdir():
                if not shard.is_dir():
                    continue
                for entry in shard.iterdir():
                    try:
                        if entry.name.startswith(_TEMP_PREFIX):
                            if entry.stat().st_mtime < cutoff:
                                entry.unlink()
                                removed["temp_files"] += 1
                        elif entry.name not in used:
                            entry.unlink()
                            removed["blobs"] += 1
                    except FileNotFoundError:
                        continue
                    except OSError as exc:
                        raise os_error(exc, "cannot collect unused artifact content", entry) from exc
        return removed

    def _not_found(self, name: str, version: int | None) -> NotFound:
        if version is None:
            return NotFound(f"no artifact named {name!r} (list() shows the stored artifacts)", details={"name": name})
        known = [v.version for v in self.versions(name)]
        if not known:
            return NotFound(f"no artifact named {name!r} (so no version {version})",
                            details={"name": name, "version": version})
        shown = ", ".join(map(str, known[-10:])) + (" ..." if len(known) > 10 else "")
        return NotFound(f"artifact {name!r} has no version {version} (stored versions: {shown})",
                        details={"name": name, "version": version, "versions": known})


__all__ = ["ArtifactInfo", "ArtifactStore", "DEFAULT_MAX_BYTES", "MAX_BYTES_CONFIG_KEY"]
