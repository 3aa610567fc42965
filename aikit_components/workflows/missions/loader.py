"""Reading mission YAML: the source (path or text), the node tree with line numbers, and
problems collected with their line and reported in file order."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from ...errors import AikitError, NotFound


class MissionProblems:
    """Problems collected with their line, reported in file order."""
    def __init__(self) -> None:
        self.items: list[tuple[int, int, str]] = []  # (line or 0, order, text)

    def add(self, line: int | None, text: str, step: str | None = None) -> None:
        where = f"step {step!r}" if step is not None else ""
        if line:
            where = f"{where} (line {line})" if where else f"line {line}"
        self.items.append((line or 0, len(self.items), f"{where}: {text}" if where else text))

    def sorted(self) -> list[str]:
        return [text for _, _, text in sorted(self.items)]


def child_node(node: Any, key: str) -> Any:
    """The YAML node under ``key`` of a mapping node, or None."""
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            if isinstance(k, yaml.ScalarNode) and k.value == key:
                return v
    return None


def key_line(node: Any, key: str) -> int | None:
    """The line (from 1) of ``key`` in a mapping node, or None."""
    if isinstance(node, yaml.MappingNode):
        for k, _ in node.value:
            if isinstance(k, yaml.ScalarNode) and k.value == key:
                return k.start_mark.line + 1
    return None


def node_line(node: Any) -> int | None:
    """The line (from 1) where ``node`` starts, or None."""
    return node.start_mark.line + 1 if node is not None else None


def read_source(source: str | os.PathLike[str]) -> tuple[str, str | None]:
    """(text, path) for a path or YAML text."""
    if isinstance(source, os.PathLike) or (isinstance(source, str) and "\n" not in source
                                           and (source.endswith((".yaml", ".yml")) or os.path.isfile(source))):
        path = Path(source)
        try:
            return path.read_text(encoding="utf-8"), str(path.resolve())
        except FileNotFoundError:
            raise NotFound(f"mission file {str(path)!r} does not exist", details={"path": str(path)}) from None
        except (OSError, UnicodeDecodeError) as exc:
            raise AikitError(f"cannot read mission file {str(path)!r}: {exc}", code="io_error") from None
    if not isinstance(source, str):
        raise TypeError(f"expected a mission path or YAML text, got {type(source).__name__}")
    return source, None


def compose(text: str, problems: MissionProblems) -> tuple[Any, Any]:
    """(node tree, data) of YAML ``text``; (None, None) after reporting invalid YAML."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
        return node, data
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        what = " ".join(str(p) for p in (getattr(exc, "context", None), getattr(exc, "problem", None)) if p) or str(exc)
        problems.add(mark.line + 1 if mark else None, f"invalid YAML: {what}")
        return None, None
    finally:
        loader.dispose()
