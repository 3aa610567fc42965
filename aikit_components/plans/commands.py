"""``hooks.json``: which commands the shell agent runs for a task (by task id) or a queue (by name).

(The file keeps the task-exec-kit's name; its entries are command mappings, not aikit hooks:
interception points are aikit's ``HookRegistry``, see ``aikit_components.hooks``.)

Accepted forms for an entry (the first is the task-exec-kit form)::

    {
      "TASK-002": {"commands": [{"cmd": ["echo", "building"], "cwd": ".", "timeout_s": 30}]},
      "TASK-003": {"cmd": ["python3", "-m", "pytest", "-q"], "env": {"CI": "1"}},
      "TASK-004": ["echo", "one argv list"],
      "TASK-005": "echo split like a shell would, but run without one",
      "Queue B — Checks": {"commands": ["echo first", ["echo", "second"]]},
      "_comment": "keys starting with _ or $ are ignored"
    }

A string is split with :func:`shlex.split` and run **without** a shell (no pipes, globbing or
variable expansion); to use shell syntax write ``["sh", "-c", "..."]`` and add ``sh`` to
``security.allowed_commands`` yourself (likewise ``python3`` above: no interpreter is allowed by
default, since it runs any code with the user's rights). ``cwd`` is relative to the directory of the hooks file
(a command without one runs in the current working directory). ``timeout`` is accepted as an
alias of ``timeout_s``.

A task's commands are the entry for its id, else the entry for its queue's name, else the queue's
``hooks`` field in the plan.
"""

from __future__ import annotations

import os
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ValidationError
from .files import find_config_file, read_json_file
from .model import Plan, Queue, Task

_HOOK_KEYS = {"commands", "cmd", "cwd", "timeout_s", "timeout", "env", "description"}
_COMMAND_KEYS = {"cmd", "cwd", "timeout_s", "timeout", "env", "description"}


@dataclass
class CommandSpec:
    """One command of a hook: an argv list (never a shell string), its directory, timeout and env."""

    argv: list[str]
    cwd: Path | None = None
    timeout_s: float | None = None
    env: dict[str, str] = field(default_factory=dict)

    @property
    def display(self) -> str:
        return shlex.join(self.argv)


@dataclass
class TaskCommands:
    """The commands mapped to a task id or a queue name (one entry of ``hooks.json``)."""

    key: str
    commands: list[CommandSpec]
    origin: str = "hooks.json"


def _timeout(value: Any, where: str, problems: list[str]) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        problems.append(f"{where}: timeout_s must be a number of seconds greater than 0, got {value!r}")
        return None
    return float(value)


def _env(value: Any, where: str, problems: list[str]) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        problems.append(f"{where}: env must be an object of NAME: value strings")
        return {}
    env: dict[str, str] = {}
    for k, v in value.items():
        if not isinstance(k, str) or not k or "=" in k or "\x00" in k:
            problems.append(f"{where}: environment variable name {k!r} is invalid")
        elif not isinstance(v, str) or "\x00" in v:
            problems.append(f"{where}: environment variable {k!r} must be a string, got {v!r}")
        else:
            env[k] = v
    return env


def _argv(value: Any, where: str, problems: list[str]) -> list[str] | None:
    if isinstance(value, str):
        try:
            argv = shlex.split(value)
        except ValueError as exc:
            problems.append(f"{where}: cannot split {value!r} into arguments: {exc}")
            return None
        if not argv:
            problems.append(f"{where}: the command is empty")
            return None
        return argv
    if isinstance(value, list) and value and all(isinstance(a, str) for a in value):
        if any("\x00" in a for a in value):
            problems.append(f"{where}: command arguments must not contain NUL bytes")
            return None
        return list(value)
    problems.append(f"{where}: a command is a non-empty list of strings (argv) or a string, got {value!r}; "
                    "fix: write it as [\"program\", \"argument\"]")
    return None


def _cwd(value: Any, base: Path | None, where: str, problems: list[str]) -> Path | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip() or "\x00" in value:
        problems.append(f"{where}: cwd must be a non-empty path string, got {value!r}")
        return None
    path = Path(value).expanduser()
    if not path.is_absolute():
        path = (base or Path.cwd()) / path
    return path


def parse_entry(key: str, value: Any, *, base_dir: Path | None, where: str, problems: list[str],
                origin: str = "hooks.json") -> TaskCommands | None:
    """Parse one hooks entry, appending problems (prefixed by ``where``) to ``problems``."""
    known_problems = len(problems)
    defaults: dict[str, Any] = {}
    entries: list[Any]
    if isinstance(value, (str,)) or (isinstance(value, list) and value and all(isinstance(a, str) for a in value)):
        entries = [value]
    elif isinstance(value, list):
        entries = list(value)
    elif isinstance(value, dict):
        unknown = sorted(set(value) - _HOOK_KEYS)
        if unknown:
            problems.append(f"{where}: unknown key(s) {', '.join(map(repr, unknown))}; fix: remove or rename them "
                            f"(known: {', '.join(sorted(_HOOK_KEYS))})")
        if "commands" in value and "cmd" in value:
            problems.append(f"{where}: give either 'commands' (a list) or 'cmd' (one command), not both")
        if "commands" in value:
            if not isinstance(value["commands"], list):
                problems.append(f"{where}.commands: expected a list of commands")
                return None
            entries = list(value["commands"])
        elif "cmd" in value:
            entries = [{"cmd": value["cmd"]}]
        else:
            problems.append(f"{where}: no 'commands' or 'cmd' given; fix: add \"cmd\": [\"program\", \"argument\"] "
                            "or \"commands\": [...]")
            return None
        defaults = value
    else:
        problems.append(f"{where}: expected an object, a list or a string, got {type(value).__name__}; fix: "
                        "write the command as [\"program\", \"argument\"] or {\"cmd\": [...]}")
        return None
    default_timeout = _timeout(defaults.get("timeout_s", defaults.get("timeout")), where, problems)
    default_env = _env(defaults.get("env"), where, problems)
    default_cwd = _cwd(defaults.get("cwd"), base_dir, where, problems)
    commands: list[CommandSpec] = []
    for i, entry in enumerate(entries):
        cwhere = f"{where}.commands[{i}]" if len(entries) > 1 or "commands" in defaults else where
        if isinstance(entry, dict):
            unknown = sorted(set(entry) - _COMMAND_KEYS)
            if unknown:
                problems.append(f"{cwhere}: unknown key(s) {', '.join(map(repr, unknown))}; fix: remove or rename "
                                f"them (known: {', '.join(sorted(_COMMAND_KEYS))})")
            if "cmd" not in entry:
                problems.append(f"{cwhere}: missing 'cmd'; fix: add \"cmd\": [\"program\", \"argument\"]")
                continue
            argv = _argv(entry["cmd"], cwhere, problems)
            timeout = _timeout(entry.get("timeout_s", entry.get("timeout")), cwhere, problems)
            env = {**default_env, **_env(entry.get("env"), cwhere, problems)}
            cwd = _cwd(entry.get("cwd"), base_dir, cwhere, problems) if "cwd" in entry else default_cwd
        else:
            argv = _argv(entry, cwhere, problems)
            timeout, env, cwd = None, dict(default_env), default_cwd
        if argv is not None:
            commands.append(CommandSpec(argv=argv, cwd=cwd, timeout_s=timeout if timeout is not None else default_timeout,
                                        env=env))
    if not commands and len(problems) == known_problems:
        problems.append(f"{where}: the command list is empty; fix: list at least one command or remove the entry")
    return TaskCommands(key=key, commands=commands, origin=origin)


@dataclass
class CommandMap:
    """The command mappings of a run: ``hooks.json`` entries plus the plan's queue-level ``hooks`` fields."""

    entries: dict[str, TaskCommands] = field(default_factory=dict)
    path: Path | None = None
    queue_hooks: dict[str, TaskCommands] = field(default_factory=dict)

    def for_task(self, task: Task, queue: Queue) -> TaskCommands | None:
        """The commands of ``task``: its id's entry, else its queue's entry, else the plan's queue hooks."""
        return self.entries.get(task.id) or self.entries.get(queue.name) or self.queue_hooks.get(queue.name)

    def unused_keys(self, plan: Plan) -> list[str]:
        """hooks.json keys that match no task id and no queue name (probably typos)."""
        names = {q.name for q in plan.queues} | {t.id for _, t in plan.tasks()}
        return [k for k in self.entries if k not in names]

    def add_plan_hooks(self, plan: Plan) -> None:
        """Parse the plan's queue ``hooks`` fields (cwd relative to the plan file); raise on problems."""
        problems: list[str] = []
        base = plan.path.parent if plan.path else None
        for qi, queue in enumerate(plan.queues):
            if queue.hooks:
                hook = parse_entry(queue.name, queue.hooks, base_dir=base, where=f"queues[{qi}].hooks",
                                  problems=problems, origin="plan")
                if hook is not None:
                    self.queue_hooks[queue.name] = hook
        if problems:
            raise ValidationError("the plan's queue hooks are not valid:", problems)


def hooks_from_dict(data: Any, *, base_dir: Path | None = None, where: str = "hooks.json") -> CommandMap:
    """Build a :class:`CommandMap` from the parsed JSON of a hooks file; raise listing every problem."""
    if not isinstance(data, dict):
        raise ValidationError(f"{where} is not valid:", [f"expected a JSON object mapping task ids or queue names "
                                                         f"to commands, got {type(data).__name__}"])
    problems: list[str] = []
    entries: dict[str, TaskCommands] = {}
    for key, value in data.items():
        if key.startswith(("_", "$")):
            continue
        hook = parse_entry(key, value, base_dir=base_dir, where=f"{where}: {key!r}", problems=problems, origin=where)
        if hook is not None:
            entries[key] = hook
    if problems:
        raise ValidationError(f"{where} is not valid:", problems, details={"path": where})
    return CommandMap(entries=entries)


def load_hooks(path: str | os.PathLike[str]) -> CommandMap:
    """Read a hooks file; relative ``cwd`` values resolve against its directory."""
    p = Path(path)
    data = read_json_file(p, "hooks file")
    commands = hooks_from_dict(data, base_dir=p.resolve().parent, where=str(p))
    commands.path = p.resolve()
    return commands


def find_hooks_file(plan_path: Path | None, cwd: Path | None = None) -> Path | None:
    """The default hooks file: ``hooks.json`` or ``config/hooks.json`` next to the plan, then in the
    working directory; None when there is none."""
    return find_config_file("hooks.json", plan_path, cwd)
