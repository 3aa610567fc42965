"""The execution plan: queues of tasks, as written to and read from ``plan.json``.

Shape (version 1, the task-exec-kit ``ExecutionPlan``)::

    {
      "version": 1,
      "source": "sot.md",
      "generated_at": "2025-01-31T12:00:00Z",
      "queues": [
        {"name": "Queue A — Bootstrap",
         "tasks": [{"id": "TASK-001", "title": "Create the workspace", "layer": "execution",
                    "queue": "Queue A — Bootstrap",
                    "metadata": {"line": 7, "checked": false, "depends_on": [], "notes": []}}],
         "hooks": null}
      ]
    }

:func:`plan_from_dict` validates a plan (hand-edited plans included) and reports every problem
at once; :func:`load_plan` / :func:`save_plan` read and write the file.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..errors import IOFailure, NotFound, ValidationError
from .files import read_json_file

PLAN_VERSION = 1
DEFAULT_LAYER = "execution"
#: A task id: ``TASK-`` and at least three digits (``TASK-001``, ``TASK-1234``).
TASK_ID_PATTERN = r"TASK-\d{3,}"
TASK_ID_RE = re.compile(rf"(?<![\w-])({TASK_ID_PATTERN})(?![\w-])")
_TASK_ID_FULL = re.compile(rf"^{TASK_ID_PATTERN}$")
LAYER_RE = re.compile(r"^[A-Za-z][\w-]*$")


def is_task_id(text: object) -> bool:
    """True when ``text`` is a well-formed task id (``TASK-`` + at least three digits)."""
    return isinstance(text, str) and bool(_TASK_ID_FULL.match(text))


def utc_now() -> str:
    """The current UTC time as ISO 8601 with a ``Z`` suffix (microsecond precision)."""
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


@dataclass
class Task:
    """One task of a queue. ``metadata`` holds ``line``, ``checked``, ``depends_on``, ``notes`` and,
    when given, ``agent`` and ``parent``."""

    id: str
    title: str
    layer: str = DEFAULT_LAYER
    queue: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def checked(self) -> bool:
        return bool(self.metadata.get("checked", False))

    @property
    def depends_on(self) -> list[str]:
        return list(self.metadata.get("depends_on") or [])

    @property
    def agent(self) -> str | None:
        return self.metadata.get("agent") or None

    @property
    def line(self) -> int | None:
        return self.metadata.get("line")

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "title": self.title, "layer": self.layer, "queue": self.queue,
                "metadata": self.metadata}


@dataclass
class Queue:
    """A named queue (a heading of the SOT) and its tasks in document order."""

    name: str
    tasks: list[Task] = field(default_factory=list)
    hooks: Any = None

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "tasks": [t.to_dict() for t in self.tasks], "hooks": self.hooks}


@dataclass
class Plan:
    """An execution plan: the queues of a SOT file, in document order."""

    source: str
    queues: list[Queue] = field(default_factory=list)
    generated_at: str = field(default_factory=lambda: utc_now().split(".")[0] + "Z")
    version: int = PLAN_VERSION
    #: Where the plan was loaded from (not serialised); relative hook paths resolve against it.
    path: Path | None = field(default=None, compare=False, repr=False)

    def tasks(self) -> list[tuple[Queue, Task]]:
        """Every (queue, task) pair in document order."""
        return [(q, t) for q in self.queues for t in q.tasks]

    def task(self, task_id: str) -> Task:
        for _, t in self.tasks():
            if t.id == task_id:
                return t
        raise NotFound(f"no task {task_id!r} in the plan")

    def to_dict(self) -> dict[str, Any]:
        return {"version": self.version, "source": self.source, "generated_at": self.generated_at,
                "queues": [q.to_dict() for q in self.queues]}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, ensure_ascii=False) + "\n"


def dependency_problems(tasks: list[Task]) -> list[tuple[Task, str]]:
    """Unknown, self and cyclic dependencies among ``tasks`` as (task, message) pairs."""
    ids = {t.id: t for t in tasks}
    problems: list[tuple[Task, str]] = []
    for t in tasks:
        for dep in t.depends_on:
            if dep == t.id:
                problems.append((t, f"task {t.id} depends on itself"))
            elif dep not in ids:
                problems.append((t, f"task {t.id} depends on {dep}, which is not a task of this plan"))
    # Cycles (over known dependencies only), reported once each.
    state: dict[str, int] = {}  # 1 = on the stack, 2 = done
    reported: set[frozenset[str]] = set()

    def visit(tid: str, stack: list[str]) -> None:
        state[tid] = 1
        stack.append(tid)
        for dep in ids[tid].depends_on:
            if dep not in ids or dep == tid:
                continue
            if state.get(dep) == 1:
                cycle = stack[stack.index(dep):] + [dep]
                key = frozenset(cycle)
                if key not in reported:
                    reported.add(key)
                    problems.append((ids[dep], "dependency cycle: " + " -> ".join(cycle)))
            elif dep not in state:
                visit(dep, stack)
        stack.pop()
        state[tid] = 2

    for t in tasks:
        if t.id not in state:
            visit(t.id, [])
    return problems


def _objects(items: Any, at: str, problems: list[str]) -> Iterator[tuple[int, str, dict[str, Any]]]:
    """(index, where, item) of each object in ``items``, the list at ``at``; what is not a list, or
    not an object in it, is a problem."""
    if not isinstance(items, list):
        problems.append(f"{at}: expected a list")
        return
    for index, item in enumerate(items):
        where = f"{at}[{index}]"
        if isinstance(item, dict):
            yield index, where, item
        else:
            problems.append(f"{where}: expected an object")


def plan_from_dict(data: Any, *, where: str = "plan") -> Plan:
    """Build a :class:`Plan` from its JSON form; raise :class:`ValidationError` listing every problem."""
    problems: list[str] = []
    if not isinstance(data, dict):
        raise ValidationError(f"{where} is not a plan", [f"expected a JSON object, got {type(data).__name__}"])
    version = data.get("version")
    if version != PLAN_VERSION:
        problems.append(f"version: expected {PLAN_VERSION}, got {version!r}")
    source = data.get("source", "")
    if not isinstance(source, str):
        problems.append("source: expected a string")
        source = str(source)
    generated_at = data.get("generated_at", "")
    if not isinstance(generated_at, str):
        problems.append("generated_at: expected a string")
        generated_at = str(generated_at)
    queues: list[Queue] = []
    seen: dict[str, str] = {}
    for qi, at, rq in _objects(data.get("queues"), "queues", problems):
        name = rq.get("name")
        if not isinstance(name, str) or not name.strip():
            problems.append(f"{at}.name: expected a non-empty string")
            name = f"queue {qi + 1}"
        hooks = rq.get("hooks")
        if hooks is not None and not isinstance(hooks, (dict, list, str)):
            problems.append(f"{at}.hooks: expected null, an object, a list or a string")
        queue = Queue(name=name, hooks=hooks)
        for _, tat, rt in _objects(rq.get("tasks"), f"{at}.tasks", problems):
            tid = rt.get("id")
            if not is_task_id(tid):
                problems.append(f"{tat}.id: {tid!r} is not a task id (TASK- and at least three digits, e.g. TASK-001)")
                continue
            if tid in seen:
                problems.append(f"{tat}.id: duplicate task id {tid} (also in {seen[tid]})")
                continue
            seen[tid] = tat
            title = rt.get("title", tid)
            if not isinstance(title, str):
                problems.append(f"{tat}.title: expected a string")
                title = str(title)
            layer = rt.get("layer", DEFAULT_LAYER)
            if not isinstance(layer, str) or not LAYER_RE.match(layer):
                problems.append(f"{tat}.layer: expected a word such as 'execution', got {layer!r}")
                layer = DEFAULT_LAYER
            tqueue = rt.get("queue", name)
            if tqueue != name:
                problems.append(f"{tat}.queue: {tqueue!r} does not match its queue's name {name!r}")
            metadata = rt.get("metadata", {})
            if metadata is None:
                metadata = {}
            if not isinstance(metadata, dict):
                problems.append(f"{tat}.metadata: expected an object")
                metadata = {}
            deps = metadata.get("depends_on", [])
            if deps is None:
                deps = []
            if not isinstance(deps, list) or not all(is_task_id(d) for d in deps):
                problems.append(f"{tat}.metadata.depends_on: expected a list of task ids")
                metadata = {**metadata, "depends_on": []}
            agent = metadata.get("agent")
            if agent is not None and not (isinstance(agent, str) and LAYER_RE.match(agent)):
                problems.append(f"{tat}.metadata.agent: expected an agent name such as 'shell', got {agent!r}")
            if not isinstance(metadata.get("checked", False), bool):
                problems.append(f"{tat}.metadata.checked: expected true or false")
            queue.tasks.append(Task(id=tid, title=title, layer=layer, queue=name, metadata=metadata))
        queues.append(queue)
    plan = Plan(source=source, queues=queues, generated_at=generated_at,
                version=version if isinstance(version, int) else PLAN_VERSION)
    for _task, message in dependency_problems([t for _, t in plan.tasks()]):
        problems.append(message)
    if problems:
        raise ValidationError(f"{where} is not a valid plan:", problems, details={"plan": where})
    return plan


def load_plan(path: str | os.PathLike[str]) -> Plan:
    """Read and validate a plan file."""
    p = Path(path)
    data = read_json_file(p, "plan file", missing_hint=f" (create one with `aikit plan --sot SOT.md --out {p}`)")
    plan = plan_from_dict(data, where=str(p))
    plan.path = p.resolve()
    return plan


def save_plan(plan: Plan, path: str | os.PathLike[str]) -> Path:
    """Write ``plan`` as JSON (atomically: a temporary file renamed into place)."""
    p = Path(path)
    tmp = p.with_name(f".{p.name}.{os.getpid()}.tmp")
    try:
        if p.parent and not p.parent.exists():
            p.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(plan.to_json(), encoding="utf-8")
        os.replace(tmp, p)
    except OSError as exc:
        try:
            tmp.unlink()
        except OSError:
            pass
        raise IOFailure(f"cannot write plan file {str(p)!r}: {exc.strerror or exc}", details={"path": str(p)}) from None
    return p
