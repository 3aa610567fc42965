"""Parse a source-of-truth (SOT) markdown file into a :class:`~.model.Plan`.

The format (documented with an example in ``docs/plans.md``):

- A heading (``#`` to ``######``) names a queue; the tasks below it, up to the next heading,
  belong to it. Headings without tasks are only structure and make no queue.
- A task is a checklist line with a task id: ``- [ ] TASK-001 Title`` (``*``, ``+`` and ``1.``
  list markers work too; ``[x]`` marks it done). The id may be anywhere on the line, bare or in
  backticks or bold; the first one is the task's id and the rest of the line is its title.
- An optional trailing annotation sets dependencies, the layer and the agent:
  ``(depends: TASK-001, TASK-002; layer: audit; agent: shell)``.
- Lines indented below a task (text, bullets, checklist items without an id) are its notes; a
  checklist line with an id indented below a task is a task of its own (``metadata.parent``).
- Fenced code blocks and HTML comments are skipped.
- For compatibility with the Python task-exec-kit, ``1. **Queue A — Name**`` also opens a queue
  and ``- Tasks: `TASK-001`, `TASK-002``` lists tasks (titled by their ids).

Problems (a checklist line without an id, a malformed id or checkbox, a duplicate id, a task
outside any queue, an unknown dependency, a cycle) are collected with their line numbers rather
than raised one at a time: :func:`parse_sot` returns them next to the plan.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ValidationError
from .files import read_text_file
from .model import DEFAULT_LAYER, LAYER_RE, TASK_ID_RE, Plan, Queue, Task, dependency_problems, is_task_id

ANNOTATION_KEYS = ("depends", "layer", "agent")

_FENCE_RE = re.compile(r"^\s{0,3}(`{3,}|~{3,})")
_HEADING_RE = re.compile(r"^\s{0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
_LEGACY_QUEUE_RE = re.compile(r"^\s*\d+\.\s*\*\*(Queue\s+\S+\s+[—–-]+\s+.+?)\*\*\s*$")
_LEGACY_TASKS_RE = re.compile(r"^\s*[-*+]\s+Tasks:\s*(.*)$")
_LEGACY_ID_RE = re.compile(r"`([^`]+)`")
_CHECKLIST_RE = re.compile(r"^(\s*)(?:[-*+]|\d+[.)])\s+\[([ xX])\](?:\s+(.*?))?\s*$")
# Something that was meant to be a checkbox but is not one: "- []", "- [ x]", "-[ ]", "- [-]",
# "[ ] text" without a list marker. A markdown link ("- [text](url)") is not flagged.
_BAD_CHECKBOX_RE = re.compile(r"^\s*(?:(?:[-*+]|\d+[.)])\s*)?\[\s{0,2}[xX✓✔*~\-]?\s{0,2}\](?![(:])")
_LIST_ITEM_RE = re.compile(r"^\s*(?:[-*+]|\d+[.)])\s+")
_ID_LOOKALIKE_RE = re.compile(r"(?<![\w-])(?:[Tt][Aa][Ss][Kk][-_#]\w*|TASK-[\w-]*)")
_ANNOTATION_RE = re.compile(r"\(([^()]*)\)\s*$")


@dataclass
class SotProblem:
    """A malformed or inconsistent line of the SOT file (``line`` is 1-based; 0 = the whole file)."""

    line: int
    message: str
    text: str = ""

    def format(self, source: str) -> str:
        where = f"{source}:{self.line}" if self.line else source
        shown = f"\n    {self.text.strip()}" if self.text.strip() else ""
        return f"{where}: {self.message}{shown}"

    def to_dict(self) -> dict[str, object]:
        return {"line": self.line, "message": self.message, "text": self.text}


@dataclass
class SotResult:
    """What :func:`parse_sot` found: the plan and the problems (empty when the file is clean)."""

    plan: Plan
    problems: list[SotProblem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def raise_for_problems(self) -> Plan:
        """Return the plan, or raise :class:`ValidationError` listing every problem."""
        if self.problems:
            raise ValidationError(f"{self.plan.source} has {len(self.problems)} problem(s):",
                                  [p.format(self.plan.source) for p in self.problems],
                                  details={"source": self.plan.source})
        return self.plan


@dataclass
class _Open:
    indent: int
    task: Task


def _expand(line: str) -> str:
    return line.expandtabs(4)


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def _clean_heading(text: str) -> str:
    text = text.strip()
    for mark in ("**", "__", "`", "*", "_"):
        if len(text) > 2 * len(mark) and text.startswith(mark) and text.endswith(mark):
            text = text[len(mark):-len(mark)].strip()
    return text.rstrip(":").strip()


def _clean_title(text: str) -> str:
    text = re.sub(r"\(\s*\)|\[\s*\]", " ", text)
    text = re.sub(r"\s+", " ", text).strip()
    return text.strip(" :—–-|").strip()


class _Parser:
    def __init__(self, text: str, source: str) -> None:
        self.lines = text.splitlines()
        self.plan = Plan(source=source)
        self.problems: list[SotProblem] = []
        self.queue: Queue | None = None
        self.queues: dict[str, Queue] = {}
        self.heading: tuple[str, int] | None = None  # the current heading (name, line) before it has tasks
        self.first_line: dict[str, int] = {}
        self.stack: list[_Open] = []

    def problem(self, lineno: int, message: str, text: str = "") -> None:
        self.problems.append(SotProblem(lineno, message, text))

    # ---------------------------------------------------------------- structure
    def open_queue(self, name: str) -> None:
        self.heading = (name, 0)
        self.queue = None
        self.stack = []

    def current_queue(self) -> Queue | None:
        if self.queue is None and self.heading is not None:
            name = self.heading[0]
            queue = self.queues.get(name)
            if queue is None:  # a repeated heading adds to the queue of the same name
                queue = self.queues[name] = Queue(name=name)
                self.plan.queues.append(queue)
            self.queue = queue
        return self.queue

    def add_task(self, lineno: int, raw: str, task_id: str, title: str, *, checked: bool,
                 metadata: dict[str, object], parent: str | None = None) -> Task | None:
        queue = self.current_queue()
        if queue is None:
            self.problem(lineno, f"task {task_id} is not under a queue heading (add a '## Queue name' line above it)", raw)
            return None
        if task_id in self.first_line:
            self.problem(lineno, f"duplicate task id {task_id} (first defined on line {self.first_line[task_id]})", raw)
            return None
        self.first_line[task_id] = lineno
        meta: dict[str, object] = {"line": lineno, "checked": checked, "depends_on": [], "notes": []}
        meta.update(metadata)
        if parent:
            meta["parent"] = parent
        layer = str(meta.pop("layer", DEFAULT_LAYER))
        task = Task(id=task_id, title=title or task_id, layer=layer, queue=queue.name, metadata=meta)
        queue.tasks.append(task)
        return task

    # ---------------------------------------------------------------- task lines
    def annotation(self, lineno: int, raw: str, body: str) -> tuple[str, dict[str, object]] | None:
        """Split a trailing ``(key: value; ...)`` annotation off ``body``; None when there is none."""
        m = _ANNOTATION_RE.search(body)
        if not m:
            return None
        parts = [p.strip() for p in m.group(1).split(";") if p.strip()]
        pairs: list[tuple[str, str]] = []
        for part in parts:
            key, sep, value = part.partition(":")
            if not sep:
                return None
            pairs.append((key.strip().lower(), value.strip()))
        if not pairs or not any(k in ANNOTATION_KEYS for k, _ in pairs):
            return None  # ordinary parenthesised text, e.g. "(see the wiki)"
        meta: dict[str, object] = {}
        for key, value in pairs:
            if key == "depends":
                deps: list[str] = []
                for token in re.split(r"[,\s]+", value):
                    token = token.strip("`*")
                    if not token:
                        continue
                    if not is_task_id(token):
                        self.problem(lineno, f"malformed task id {token!r} in depends: (expected TASK- and at least "
                                             "three digits, e.g. TASK-001)", raw)
                    elif token not in deps:
                        deps.append(token)
                meta["depends_on"] = deps
            elif key == "layer":
                if not LAYER_RE.match(value):
                    self.problem(lineno, f"layer {value!r} is not a word (e.g. layer: audit)", raw)
                else:
                    meta["layer"] = value
            elif key == "agent":
                if not LAYER_RE.match(value):
                    self.problem(lineno, f"agent {value!r} is not an agent name (e.g. agent: shell)", raw)
                else:
                    meta["agent"] = value
            else:
                self.problem(lineno, f"unknown annotation {key!r} (known: {', '.join(ANNOTATION_KEYS)})", raw)
        return body[:m.start()].rstrip(), meta

    def checklist(self, lineno: int, raw: str, indent: int, mark: str, body: str) -> None:
        checked = mark in "xX"
        while self.stack and self.stack[-1].indent >= indent:
            self.stack.pop()
        annotated = self.annotation(lineno, raw, body)
        text, metadata = annotated if annotated is not None else (body, {})
        m = TASK_ID_RE.search(text)
        if m is None:
            lookalike = _ID_LOOKALIKE_RE.search(text)
            starts_with_id = lookalike is not None and not text[:lookalike.start()].strip(" `*_[")
            if lookalike and (starts_with_id or not self.stack):
                self.problem(lineno, f"malformed task id {lookalike.group(0)!r} (expected TASK- and at least three "
                                     "digits, e.g. TASK-001)", raw)
            elif self.stack:  # a sub-item of the task above: part of its notes
                self.note(raw, indent)
            else:
                self.problem(lineno, "checklist item has no task id (write it as '- [ ] TASK-001 Title', or "
                                     "indent it below a task to make it a note)", raw)
            return
        task_id = m.group(1)
        # Drop the id together with the backticks or bold markers around it.
        start, end = m.start(1), m.end(1)
        while start > 0 and text[start - 1] in "`*_[":
            start -= 1
        while end < len(text) and text[end] in "`*_]":
            end += 1
        title = _clean_title(text[:start] + " " + text[end:])
        parent = self.stack[-1].task.id if self.stack else None
        task = self.add_task(lineno, raw, task_id, title, checked=checked, metadata=metadata, parent=parent)
        if task is not None:
            self.stack.append(_Open(indent, task))

    def note(self, raw: str, indent: int) -> None:
        while self.stack and self.stack[-1].indent >= indent:
            self.stack.pop()
        if self.stack:
            text = _LIST_ITEM_RE.sub("", raw, count=1).strip() if _LIST_ITEM_RE.match(raw) else raw.strip()
            notes = self.stack[-1].task.metadata.setdefault("notes", [])
            assert isinstance(notes, list)
            notes.append(text)

    def legacy_tasks(self, lineno: int, raw: str, rest: str) -> None:
        for token in _LEGACY_ID_RE.findall(rest):
            if is_task_id(token):
                self.add_task(lineno, raw, token, token, checked=False, metadata={})
            elif _ID_LOOKALIKE_RE.fullmatch(token):
                self.problem(lineno, f"malformed task id {token!r} (expected TASK- and at least three digits, "
                                     "e.g. TASK-001)", raw)
        self.stack = []

    # ---------------------------------------------------------------- driver
    def run(self) -> SotResult:
        fence: str | None = None
        in_comment = False
        for lineno, original in enumerate(self.lines, start=1):
            raw = _expand(original.rstrip("\r"))
            stripped = raw.strip()
            if fence is not None:
                if stripped.startswith(fence):
                    fence = None
                continue
            if in_comment:
                if "-->" in raw:
                    in_comment = False
                continue
            fm = _FENCE_RE.match(raw)
            if fm:
                fence = fm.group(1)[0] * 3
                continue
            if stripped.startswith("<!--"):
                if "-->" not in stripped:
                    in_comment = True
                continue
            if not stripped:
                continue
            hm = _HEADING_RE.match(raw)
            if hm:
                self.open_queue(_clean_heading(hm.group(2)))
                continue
            lq = _LEGACY_QUEUE_RE.match(raw)
            if lq:
                self.open_queue(re.sub(r"\s+[—–-]+\s+", " — ", lq.group(1).strip(), count=1))
                continue
            indent = _indent(raw)
            cm = _CHECKLIST_RE.match(raw)
            if cm:
                self.checklist(lineno, raw, indent, cm.group(2), (cm.group(3) or "").strip())
                continue
            if _BAD_CHECKBOX_RE.match(raw):
                self.problem(lineno, "malformed checklist item (write '- [ ] TASK-001 Title' or '- [x] TASK-001 Title')",
                             raw)
                continue
            lt = _LEGACY_TASKS_RE.match(raw)
            if lt and self.heading is not None:
                self.legacy_tasks(lineno, raw, lt.group(1))
                continue
            if indent > 0 and self.stack:
                self.note(raw, indent)
            else:
                self.stack = []
        all_tasks = [t for _, t in self.plan.tasks()]
        for task, message in dependency_problems(all_tasks):
            line = task.line or 0
            self.problem(line, message, self.lines[line - 1] if 0 < line <= len(self.lines) else "")
        # Keep the plan runnable even with problems (for --lenient): drop the dependencies in error.
        ids = {t.id for t in all_tasks}
        for t in all_tasks:
            t.metadata["depends_on"] = [d for d in t.depends_on if d in ids and d != t.id]
        for _ in range(len(all_tasks)):
            cyclic = dependency_problems(all_tasks)
            if not cyclic:
                break
            for task, _message in cyclic:
                task.metadata["depends_on"] = []
        if not self.plan.tasks() and not self.problems:
            self.problem(0, "no tasks found: write queues as headings and tasks as checklist lines, e.g. "
                            "'## Queue A' then '- [ ] TASK-001 Set up the workspace'")
        self.problems.sort(key=lambda p: p.line)
        return SotResult(self.plan, self.problems)


def parse_sot(text: str, source: str = "sot.md") -> SotResult:
    """Parse SOT markdown ``text``; ``source`` is recorded in the plan and used in messages."""
    return _Parser(text, source).run()


def parse_sot_file(path: str | os.PathLike[str]) -> SotResult:
    """Read and parse a SOT file; the plan's ``source`` is the path relative to the working directory."""
    p = Path(path)
    text = read_text_file(p, "SOT file", expected="markdown file")
    try:
        source = os.path.relpath(p)
    except ValueError:  # another drive (Windows)
        source = str(p.resolve())
    return parse_sot(text, source)
