"""Reading one config file: TOML parsing with errors that name the file and line, and finding
the line that assigns a given dotted key (so validation errors can point at it)."""

from __future__ import annotations

import re
import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from .secrets import wrap_secrets

_LINE_COL = re.compile(r"\s*\(at line (\d+), column (\d+)\)\s*$")
_HEADER = re.compile(r"^\[\[?(?P<key>[^\[\]]+?)\]\]?\s*(?:#.*)?$")
_KEY_PART = r"""(?:[A-Za-z0-9_-]+|"(?:[^"\\\n]|\\.)*"|'[^'\n]*')"""
_ASSIGN = re.compile(rf"^(?P<key>{_KEY_PART}(?:\s*\.\s*{_KEY_PART})*)\s*=")


def _key_path(text: str) -> tuple[str, ...] | None:
    """The keys of a dotted TOML key (``a."b.c".d`` -> ``("a", "b.c", "d")``), parsed by tomllib."""
    try:
        node: Any = tomllib.loads(f"{text} = 0")
    except tomllib.TOMLDecodeError:
        return None
    parts: list[str] = []
    while isinstance(node, dict) and len(node) == 1:
        (key, node), = node.items()
        parts.append(key)
    return tuple(parts)


class SourceFile:
    """One parsed config file. Its repr names only the path: the text may hold secrets."""

    def __init__(self, path: Path, label: str) -> None:
        self.path = path
        self.label = label
        try:
            raw = path.read_bytes()
        except OSError as exc:
            raise ConfigError(
                f"cannot read the {label} config file {path}: {exc.strerror or exc}",
                details={"file": str(path)},
            ) from None
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            line = raw[: exc.start].count(b"\n") + 1
            raise ConfigError(
                f"{path}, line {line}: the config file is not valid UTF-8",
                details={"file": str(path), "line": line},
            ) from None
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            msg = str(exc)
            match = _LINE_COL.search(msg)
            details: dict[str, Any] = {"file": str(path)}
            where = str(path)
            if match:
                msg = msg[: match.start()]
                details["line"], details["column"] = int(match.group(1)), int(match.group(2))
                where = f"{path}, line {details['line']}, column {details['column']}"
            raise ConfigError(f"{where}: invalid TOML: {msg}", details=details) from None
        self._lines = text.splitlines()
        self.data: dict[str, Any] = wrap_secrets(data)

    def __repr__(self) -> str:
        return f"<config file {self.path}>"

    def line_of(self, path: Sequence[str]) -> int | None:
        """The line assigning the dotted key ``path`` (or the closest enclosing one), 1-based."""
        target = tuple(path)
        table: tuple[str, ...] = ()
        best, best_len = None, -1
        for number, line in enumerate(self._lines, 1):
            stripped = line.strip()
            if not stripped or stripped.startswith("#"):
                continue
            header = _HEADER.match(stripped)
            if header:
                parts = _key_path(header.group("key").strip())
                if parts is None:
                    continue
                table = parts
                candidate = parts
            else:
                assign = _ASSIGN.match(stripped)
                if not assign:
                    continue
                parts = _key_path(assign.group("key"))
                if parts is None:
                    continue
                candidate = table + parts
            if candidate == target:
                return number
            if len(candidate) < len(target) and target[: len(candidate)] == candidate and len(candidate) > best_len:
                best, best_len = number, len(candidate)
        return best

    def where(self, path: Sequence[str]) -> str:
        line = self.line_of(path)
        return f"{self.path}, line {line}" if line else str(self.path)

    def details(self, path: Sequence[str]) -> dict[str, Any]:
        line = self.line_of(path)
        out: dict[str, Any] = {"file": str(self.path), "key": ".".join(path)}
        if line:
            out["line"] = line
        return out


def file_locator(source: SourceFile) -> Any:
    """A :class:`Validator` locator pointing at the line of ``source`` that sets a key."""
    return lambda path: (source.where(path), source.details(path))
