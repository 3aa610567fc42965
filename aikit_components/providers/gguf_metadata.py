"""Read a GGUF file's metadata (key-value section) without loading the model or llama.cpp.

The local provider asks one question of a model file: does it carry a chat template
(``tokenizer.chat_template``)? If it does, llama.cpp's chat endpoint formats the conversation with
it, so an instruct model (Qwen, Llama, Gemma-it, Phi) is prompted the way it was trained.
Format: https://github.com/ggml-org/ggml/blob/master/docs/gguf.md (little-endian; strings are a
uint64 length and UTF-8 bytes).
"""

from __future__ import annotations

import functools
import os
import struct
from pathlib import Path
from typing import Any, BinaryIO

__all__ = ["GGUFError", "read_chat_template", "read_metadata"]

CHAT_TEMPLATE_KEY = "tokenizer.chat_template"
_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
_STRING, _ARRAY = 8, 9


class GGUFError(ValueError):
    """The file is not a GGUF file this reader understands."""


def _read(f: BinaryIO, fmt: str) -> Any:
    size = struct.calcsize(fmt)
    data = f.read(size)
    if len(data) != size:
        raise GGUFError("the file ends inside its metadata")
    return struct.unpack(fmt, data)[0]


def _string(f: BinaryIO) -> str:
    length = _read(f, "<Q")
    data = f.read(length)
    if len(data) != length:
        raise GGUFError("the file ends inside a string")
    return data.decode("utf-8", errors="replace")


def _value(f: BinaryIO, kind: int, keep: bool) -> Any:
    if kind in _SCALARS:
        return _read(f, _SCALARS[kind])
    if kind == _STRING:
        if keep:
            return _string(f)
        f.seek(_read(f, "<Q"), 1)
        return None
    if kind == _ARRAY:
        item_kind, count = _read(f, "<I"), _read(f, "<Q")
        if item_kind in _SCALARS and not keep:
            f.seek(struct.calcsize(_SCALARS[item_kind]) * count, 1)
            return None
        items = [_value(f, item_kind, keep) for _ in range(count)]
        return items if keep else None
    raise GGUFError(f"unknown metadata value type {kind}")


def read_metadata(path: str | Path, keys: set[str] | None = None) -> dict[str, Any]:
    """The metadata of the GGUF at ``path`` (only ``keys`` when given: other values are skipped)."""
    found: dict[str, Any] = {}
    with open(path, "rb") as f:
        if f.read(4) != b"GGUF":
            raise GGUFError(f"{path} is not a GGUF file")
        version = _read(f, "<I")
        if version < 2:
            raise GGUFError(f"{path} is GGUF version {version}; only version 2 and later are read")
        _read(f, "<Q")  # tensor count
        for _ in range(_read(f, "<Q")):
            key = _string(f)
            keep = keys is None or key in keys
            value = _value(f, _read(f, "<I"), keep)
            if keep:
                found[key] = value
                if keys is not None and len(found) == len(keys):
                    break
    return found


def read_chat_template(path: str | Path) -> str | None:
    """The model's chat template (Jinja), or None when it has none (a base model). Remembered per
    file version: reading past a large vocabulary takes a second or two."""
    return _chat_template(os.path.realpath(path), os.stat(path).st_mtime_ns)


@functools.lru_cache(maxsize=16)
def _chat_template(path: str, mtime_ns: int) -> str | None:
    template = read_metadata(path, {CHAT_TEMPLATE_KEY}).get(CHAT_TEMPLATE_KEY)
    return template if isinstance(template, str) and template.strip() else None
