"""Cell files: every cell runs from a file named the way JupyterLab's debugger computes it
(``tmpFilePrefix + murmur2(code, seed) + ".lua"``), so stack frames and breakpoints line up.

murmur2 is written here (20 lines) rather than imported from ipykernel because importing
``ipykernel.compiler`` pulls in IPython and would double the kernel's start-up time.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from pathlib import Path

HASH_SEED = 0xC70F6907
SUFFIX = ".lua"


def murmur2_x86(data: str, seed: int = HASH_SEED) -> int:
    """MurmurHash2 (32-bit) of the UTF-8 bytes of ``data``, as JupyterLab computes it."""
    m = 0x5BD1E995
    raw = data.encode("utf-8")
    length = len(raw)
    h = (seed ^ length) & 0xFFFFFFFF
    rounded = length & ~3
    for i in range(0, rounded, 4):
        k = raw[i] | raw[i + 1] << 8 | raw[i + 2] << 16 | raw[i + 3] << 24
        k = (k * m) & 0xFFFFFFFF
        k ^= k >> 24
        k = (k * m) & 0xFFFFFFFF
        h = ((h * m) & 0xFFFFFFFF) ^ k
    tail = length & 3
    if tail >= 3:
        h ^= raw[rounded + 2] << 16
    if tail >= 2:
        h ^= raw[rounded + 1] << 8
    if tail >= 1:
        h ^= raw[rounded]
        h = (h * m) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * m) & 0xFFFFFFFF
    h ^= h >> 15
    return h


class CellFiles:
    """Names (and writes) the per-cell source files and maps them back to ``[N]`` labels."""

    def __init__(self, prefix: str | None = None) -> None:
        self.prefix = prefix or os.path.join(tempfile.gettempdir(), f"aikit_{os.getpid()}") + os.sep
        self._labels: dict[str, str] = {}
        self._paths: dict[str, str] = {}  # code -> path, for cells run again
        self._pattern: re.Pattern[str] | None = None

    def path_for(self, code: str) -> str:
        """The file a cell with this source runs from."""
        return f"{self.prefix}{murmur2_x86(code)}{SUFFIX}"

    def write(self, code: str, label: str) -> str:
        """Write the cell's source to its file, remember its display label, return the path."""
        path = self._paths.get(code)
        if path is None:
            path = self.path_for(code)
            try:
                Path(self.prefix).mkdir(parents=True, exist_ok=True)
                Path(path).write_text(code, encoding="utf-8")
                self._paths[code] = path
            except OSError:
                pass  # the file only serves debuggers; a full disk must not stop execution
        if self._labels.get(path) != label:
            self._labels[path] = label
            self._pattern = None
        return path

    def dump(self, code: str) -> str:
        """Write a cell's source to its file before it runs (JupyterLab's ``dumpCell``), so
        breakpoints can be set in it; returns the path."""
        path = self.path_for(code)
        Path(self.prefix).mkdir(parents=True, exist_ok=True)
        Path(path).write_text(code, encoding="utf-8")
        self._paths[code] = path
        return path

    def paths(self) -> list[str]:
        """The cell files run (or dumped) so far."""
        return list(dict.fromkeys([*self._labels, *self._paths.values()]))

    def cleanup(self) -> None:
        """Remove the cell files written here, and their folder once empty (at shutdown)."""
        for path in self._paths.values():
            with contextlib.suppress(OSError):
                os.remove(path)
        self._paths.clear()
        with contextlib.suppress(OSError):
            os.rmdir(self.prefix)

    def prettify(self, text: str) -> str:
        """Replace cell file paths in messages and tracebacks by their labels (``[3]``)."""
        if not self._labels:
            return text
        if self._pattern is None:
            alternatives = "|".join(re.escape(p) for p in sorted(self._labels, key=len, reverse=True))
            self._pattern = re.compile(alternatives)
        return self._pattern.sub(lambda m: self._labels[m.group(0)], text)
