"""How a mission ``step_type`` maps its parameters onto an aikit step: :class:`StepType`,
:class:`Mapped` and the parameter renaming with ``DROP`` / ``Refuse``."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

TEMPLATE_RE = re.compile(r"\{\{.*?\}\}", re.S)


class _Drop:
    """A mission parameter accepted and ignored (it has no effect in aikit)."""


class Refuse:
    """A mission parameter aikit cannot honour: a problem with a hint."""

    def __init__(self, hint: str) -> None:
        self.hint = hint


DROP = _Drop()


@dataclass
class Mapped:
    """A step type's parameters mapped onto an aikit step."""

    kind: str
    target: Any = None
    params: dict[str, Any] = field(default_factory=dict)
    names: dict[str, str] = field(default_factory=dict)  # aikit parameter -> the mission's name for it
    problems: list[tuple[str | None, str]] = field(default_factory=list)  # (mission parameter, message)
    schema_tool: str | None = None  # validate params against this tool's schema


@dataclass(frozen=True)
class StepType:
    """How one mission ``step_type`` becomes an aikit step: ``kind`` and ``tool`` (the target),
    ``aliases`` (mission parameter -> tool parameter; ``DROP`` ignores one, ``Refuse`` rejects
    it with a hint) or ``build`` (a function ``params -> Mapped`` for the non-trivial ones)."""

    name: str
    kind: str
    tool: str | None = None
    aliases: Mapping[str, Any] = field(default_factory=dict)
    summary: str = ""
    build: Callable[[dict[str, Any]], Mapped] | None = None

    def map(self, params: dict[str, Any]) -> Mapped:
        if self.build is not None:
            return self.build(params)
        mapped = Mapped(self.kind, self.tool, schema_tool=self.tool)
        rename_into(mapped, params, self.aliases)
        return mapped

    def describe(self) -> str:
        """``write_file`` / ``kind llm`` / ..., for tables."""
        return self.summary or (self.tool if self.tool else f"kind {self.kind}")


def rename_into(mapped: Mapped, params: dict[str, Any], aliases: Mapping[str, Any]) -> None:
    """Copy ``params`` into ``mapped`` under their aikit names (``aliases``), reporting refused and doubled ones."""
    for key, value in params.items():
        new = aliases.get(key, key)
        if new is DROP:
            continue
        if isinstance(new, Refuse):
            mapped.problems.append((key, new.hint))
            continue
        if new in mapped.params:
            mapped.problems.append((key, f"given twice (as {mapped.names[new]!r} and {key!r}); keep one"))
            continue
        mapped.params[new] = value
        mapped.names[new] = key


def tool_step(name: str, tool: str, summary: str = "", **aliases: Any) -> StepType:
    """A step type that calls ``tool`` with its parameters renamed by ``aliases``."""
    return StepType(name, "tool", tool, aliases, summary)
