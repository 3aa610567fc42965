"""The vector index of a collection: exact search while it is small, HNSW (hnswlib) beyond.

- Below ``exact_threshold`` vectors, search is an exact dot product over a numpy matrix (on unit
  vectors, cosine similarity): exact results, no build cost, sub-millisecond at that size.
- From ``exact_threshold`` on, an hnswlib graph (``space="ip"``) answers; ``M`` and
  ``ef_construction`` shape the graph, ``ef_search`` trades recall for speed per query.
- Metadata filters come in as the set of allowed chunk ids. A selective filter (at most
  ``exact_threshold`` ids, or ``filter_exact_ratio`` of the collection) is answered exactly over
  just those vectors; a broad one by hnswlib's filtered search, checked: if it returns fewer
  hits than it should, the exact search over the allowed ids answers instead. Filtered results
  are therefore correct, not merely fewer.
- Deletes mark labels deleted (hnswlib keeps them out of results) and their slots are reused.
- Persistence: ``save(path, generation)`` writes the graph atomically beside a small JSON
  stamp; :meth:`load` accepts the file only if its stamp matches the store's generation.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["IndexParams", "VectorIndex"]


class IndexParams:
    """Tunable index settings (validated)."""

    FIELDS = ("M", "ef_construction", "ef_search", "exact_threshold")

    def __init__(self, M: int = 16, ef_construction: int = 200, ef_search: int = 64, exact_threshold: int = 5000,
                 filter_exact_ratio: float = 0.05) -> None:
        from ..errors import InvalidArgument

        for name, value, low in (("M", M, 2), ("ef_construction", ef_construction, 1), ("ef_search", ef_search, 1),
                                 ("exact_threshold", exact_threshold, 0)):
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise InvalidArgument(f"index option {name} must be an integer >= {low}, got {value!r}")
        self.M = M
        self.ef_construction = ef_construction
        self.ef_search = ef_search
        self.exact_threshold = exact_threshold
        self.filter_exact_ratio = filter_exact_ratio

    def to_dict(self) -> dict[str, Any]:
        return {"M": self.M, "ef_construction": self.ef_construction, "ef_search": self.ef_search,
                "exact_threshold": self.exact_threshold}


class VectorIndex:
    """See the module docstring. Labels are chunk ids (int64). Thread-safe."""

    def __init__(self, dim: int, params: IndexParams | None = None, *, threads: int | None = None) -> None:
        self.dim = dim
        self.params = params or IndexParams()
        self.threads = threads or max(1, os.cpu_count() or 1)
        self._lock = threading.RLock()
        self._exact: dict[int, np.ndarray] = {}
        self._matrix: tuple[np.ndarray, np.ndarray] | None = None  # (ids, vectors), rebuilt lazily
        self._hnsw: Any = None
        self._live = 0

    # ------------------------------------------------------------------ state
    @property
    def kind(self) -> str:
        return "hnsw" if self._hnsw is not None else "exact"

    def __len__(self) -> int:
        return self._live if self._hnsw is not None else len(self._exact)

    def set_ef(self, ef_search: int) -> None:
        with self._lock:
            self.params.ef_search = ef_search
            if self._hnsw is not None:
                self._hnsw.set_ef(ef_search)

    # ------------------------------------------------------------------ writes
    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        ids = np.asarray(ids, dtype=np.int64)
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if len(ids) == 0:
            return
        with self._lock:
            if self._hnsw is None and len(self._exact) + len(ids) < self.params.exact_threshold:
                self._exact.update(zip(ids.tolist(), vectors))
                self._matrix = None
                return
            if self._hnsw is None:
                self._to_hnsw(len(ids))
            self._hnsw_add(ids, vectors)

    def remove(self, ids: list[int]) -> None:
        with self._lock:
            if self._hnsw is None:
                for i in ids:
                    self._exact.pop(int(i), None)
                self._matrix = None
                return
            for i in ids:
                try:
                    self._hnsw.mark_deleted(int(i))
                    self._live -= 1
                except RuntimeError:  # not in the index (or already deleted)
                    pass

    def _to_hnsw(self, extra: int) -> None:
        import hnswlib

        index = hnswlib.Index(space="ip", dim=self.dim)
        index.init_index(max_elements=max(1024, (len(self._exact) + extra) * 2), M=self.params.M,
                         ef_construction=self.params.ef_construction, allow_replace_deleted=True)
        index.set_ef(self.params.ef_search)
        index.set_num_threads(self.threads)
        self._hnsw, self._live = index, 0
        if self._exact:
            ids = np.fromiter(self._exact.keys(), dtype=np.int64, count=len(self._exact))
            self._hnsw_add(ids, np.stack(list(self._exact.values())))
        self._exact, self._matrix = {}, None

    def _hnsw_add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        index = self._hnsw
        needed = index.get_current_count() + len(ids)
        if needed > index.get_max_elements():
            index.resize_index(max(needed, index.get_max_elements() * 2))
        index.add_items(vectors, ids, num_threads=self.threads, replace_deleted=True)
        self._live += len(ids)

    # ------------------------------------------------------------------ search
    def search(self, vector: np.ndarray, k: int, allowed: list[int] | None = None) -> list[tuple[int, float]]:
        """The ``k`` nearest chunk ids with cosine similarity, best first; only ``allowed`` ids
        when given."""
        query = np.ascontiguousarray(vector, dtype=np.float32).reshape(1, -1)
        with self._lock:
            if allowed is not None:
                return self._search_allowed(query, k, allowed)
            if self._hnsw is None:
                ids, matrix = self._exact_matrix()
                return _top(ids, matrix @ query[0], k)
            k = min(k, self._live)
            if k <= 0:
                return []
            labels, distances = self._hnsw.knn_query(query, k=k)
            return [(int(label), 1.0 - float(d)) for label, d in zip(labels[0], distances[0])]

    def _search_allowed(self, query: np.ndarray, k: int, allowed: list[int]) -> list[tuple[int, float]]:
        if not allowed:
            return []
        if self._hnsw is None:
            present = [i for i in allowed if i in self._exact]
            if not present:
                return []
            matrix = np.stack([self._exact[i] for i in present])
            return _top(np.asarray(present, dtype=np.int64), matrix @ query[0], k)
        small = len(allowed) <= self.params.exact_threshold or len(allowed) <= self.params.filter_exact_ratio * self._live
        if not small:
            allowed_set = set(allowed)
            want = min(k, len(allowed_set))
            try:
                labels, distances = self._hnsw.knn_query(query, k=want, filter=lambda label: label in allowed_set)
                if labels.shape[1] == want:
                    return [(int(label), 1.0 - float(d)) for label, d in zip(labels[0], distances[0])]
            except RuntimeError:  # hnswlib: fewer than k reachable under the filter
                pass
        ids = np.asarray(allowed, dtype=np.int64)
        matrix = np.asarray(self._hnsw.get_items(ids, return_type="numpy"), dtype=np.float32)
        return _top(ids, matrix @ query[0], k)

    def _exact_matrix(self) -> tuple[np.ndarray, np.ndarray]:
        if self._matrix is None:
            ids = np.fromiter(self._exact.keys(), dtype=np.int64, count=len(self._exact))
            matrix = np.stack(list(self._exact.values())) if self._exact else np.zeros((0, self.dim), np.float32)
            self._matrix = (ids, matrix)
        return self._matrix

    # ------------------------------------------------------------------ persistence
    def save(self, path: Path, generation: int) -> None:
        """Write the HNSW graph (nothing in exact mode: the store is enough) with its stamp."""
        with self._lock:
            stamp = path.with_suffix(".json")
            if self._hnsw is None:
                for p in (path, stamp):
                    p.unlink(missing_ok=True)
                return
            tmp = path.with_name(path.name + ".tmp")
            self._hnsw.save_index(str(tmp))
            os.replace(tmp, path)
            stamp_tmp = stamp.with_name(stamp.name + ".tmp")
            stamp_tmp.write_text(json.dumps({"generation": generation, "live": self._live, "dim": self.dim,
                                             "M": self.params.M, "ef_construction": self.params.ef_construction}))
            os.replace(stamp_tmp, stamp)

    def load(self, path: Path, generation: int) -> bool:
        """Load a saved graph if its stamp matches ``generation`` (and the dimension)."""
        import hnswlib

        stamp_path = path.with_suffix(".json")
        try:
            stamp = json.loads(stamp_path.read_text())
        except (OSError, ValueError):
            return False
        if stamp.get("generation") != generation or stamp.get("dim") != self.dim or not path.exists():
            return False
        index = hnswlib.Index(space="ip", dim=self.dim)
        try:
            index.load_index(str(path), allow_replace_deleted=True)
        except RuntimeError:
            return False
        index.set_ef(self.params.ef_search)
        index.set_num_threads(self.threads)
        with self._lock:
            self._hnsw, self._live, self._exact, self._matrix = index, int(stamp.get("live", 0)), {}, None
            self.params.M = int(stamp.get("M", self.params.M))
            self.params.ef_construction = int(stamp.get("ef_construction", self.params.ef_construction))
        return True

    def stats(self) -> dict[str, Any]:
        with self._lock:
            info: dict[str, Any] = {"kind": self.kind, "vectors": len(self), "dim": self.dim, **self.params.to_dict()}
            if self._hnsw is not None:
                info["capacity"] = self._hnsw.get_max_elements()
                info["deleted_slots"] = self._hnsw.get_current_count() - self._live
            return info


def _top(ids: np.ndarray, scores: np.ndarray, k: int) -> list[tuple[int, float]]:
    if len(ids) == 0 or k <= 0:
        return []
    k = min(k, len(ids))
    part = np.argpartition(-scores, k - 1)[:k]
    order = part[np.argsort(-scores[part], kind="stable")]
    return [(int(ids[i]), float(scores[i])) for i in order]
