"""``manifest.json``: the kit's agents and layers.

```json
{
  "version": 1,
  "agents": {
    "build":    {"kind": "shell", "timeout_s": 600, "env": {"CI": "1"}},
    "stub":     {"kind": "noop", "description": "board tasks are tracked, not executed"},
    "reviewer": {"kind": "llm", "model": "default", "system": "You review one task.", "max_steps": 4}
  },
  "layers": {
    "board": {"agent": "stub"},
    "execution": {"agent": "build"},
    "audit": {"agent": "reviewer"}
  }
}
```

- ``agents`` names agents a task can select (``(agent: NAME)``) or a layer can default to. Each
  has a ``kind``: ``noop`` (an evidence stub), ``shell`` (the task's hooks.json commands, with
  this agent's ``timeout_s`` and ``env``) or ``llm`` (an aikit agent, :class:`AgentSpec` fields,
  asked to carry out the task). ``noop`` and ``shell`` always exist and cannot be redefined.
- ``layers`` declares the layers tasks may use; when it is given, a task in an undeclared layer
  is an error. A layer's ``agent`` runs its tasks that have no ``agent:`` annotation (a noop
  layer agent thus keeps the layer's commands in hooks.json from running).

Keys starting with ``_`` or ``$`` are ignored everywhere (comments, ``$schema``). Every problem
names the file, the field and the fix. The field table is in ``docs/plans.md``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..agents import AgentSpec
from ..errors import AikitError, NotFound, ValidationError
from .files import find_config_file, read_json_file
from .model import LAYER_RE, Plan

MANIFEST_VERSION = 1
#: The agents that exist without a manifest.
BUILTIN_AGENTS = ("noop", "shell")
AGENT_KINDS = ("noop", "shell", "llm")

_TOP_KEYS = ("version", "agents", "layers")
_COMMON_AGENT_KEYS = ("kind", "description")
_KIND_KEYS = {
    "noop": (),
    "shell": ("timeout_s", "env"),
    "llm": ("model", "system", "tools", "fallback", "max_steps", "temperature", "max_tokens"),
}
_LAYER_KEYS = ("agent", "description")


@dataclass
class AgentConfig:
    """One plan agent: its kind and that kind's settings."""

    name: str
    kind: str
    description: str = ""
    #: shell: the default timeout of each command (instead of ``--timeout``); None: the run's.
    timeout_s: float | None = None
    #: shell: environment variables added for every command (a command's own ``env`` wins).
    env: dict[str, str] = field(default_factory=dict)
    #: llm: the aikit agent that carries out the task.
    spec: AgentSpec | None = None


@dataclass
class LayerConfig:
    """One declared layer and the agent its tasks default to."""

    name: str
    agent: str | None = None
    description: str = ""


def builtin_agents() -> dict[str, AgentConfig]:
    return {"noop": AgentConfig("noop", "noop", "writes an evidence stub; executes nothing"),
            "shell": AgentConfig("shell", "shell", "runs the task's hooks.json commands through the security policy")}


@dataclass
class Manifest:
    """The agents and layers of a run (the built-in agents when there is no ``manifest.json``)."""

    agents: dict[str, AgentConfig] = field(default_factory=builtin_agents)
    layers: dict[str, LayerConfig] = field(default_factory=dict)
    path: Path | None = None

    @property
    def where(self) -> str:
        return str(self.path) if self.path else "manifest.json"

    def agent(self, name: str) -> AgentConfig:
        try:
            return self.agents[name]
        except KeyError:
            raise NotFound(f"unknown agent {name!r} (known: {', '.join(sorted(self.agents))})") from None

    def layer_agent(self, layer: str) -> str | None:
        """The agent a layer's tasks default to, if the manifest names one."""
        config = self.layers.get(layer)
        return config.agent if config is not None else None

    def plan_problems(self, plan: Plan) -> list[str]:
        """Tasks whose layer is not declared (only when the manifest declares layers)."""
        if not self.layers:
            return []
        declared = ", ".join(sorted(self.layers))
        return [f"{task.id}: layer {task.layer!r} is not declared in {self.where} (declared: {declared}); "
                f"add it under \"layers\" or fix the task's layer" for _, task in plan.tasks()
                if task.layer not in self.layers]


def _unknown(data: dict[str, Any], known: tuple[str, ...], where: str, problems: list[str]) -> None:
    unknown = sorted(k for k in data if k not in known and not k.startswith(("_", "$")))
    if unknown:
        problems.append(f"{where}: unknown key(s) {', '.join(map(repr, unknown))}; fix: remove them "
                        f"(known: {', '.join(known) if known else 'none'})")


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _agent(name: str, data: Any, where: str, problems: list[str]) -> AgentConfig | None:
    if not isinstance(data, dict):
        problems.append(f"{where}: expected an object such as {{\"kind\": \"shell\"}}, got {type(data).__name__}")
        return None
    kind = data.get("kind")
    if kind not in AGENT_KINDS:
        problems.append(f"{where}.kind: expected one of {', '.join(AGENT_KINDS)}, got {kind!r}; "
                        f"fix: set \"kind\" to the kind of agent {name!r} is")
        return None
    _unknown(data, _COMMON_AGENT_KEYS + _KIND_KEYS[kind], where, problems)
    description = data.get("description", "")
    if not isinstance(description, str):
        problems.append(f"{where}.description: expected a string; fix: quote it")
        description = ""
    config = AgentConfig(name=name, kind=kind, description=description)
    if kind == "shell":
        timeout = data.get("timeout_s")
        if timeout is not None and (not _number(timeout) or timeout <= 0):
            problems.append(f"{where}.timeout_s: expected a number of seconds greater than 0, got {timeout!r}")
        elif timeout is not None:
            config.timeout_s = float(timeout)
        env = data.get("env", {})
        if not isinstance(env, dict) or not all(isinstance(k, str) and k and "=" not in k and isinstance(v, str)
                                                for k, v in env.items()):
            problems.append(f"{where}.env: expected an object of NAME: \"value\" strings, got {env!r}")
        else:
            config.env = dict(env)
    elif kind == "llm":
        fields = {k: data[k] for k in _KIND_KEYS["llm"] if k in data}
        for key in ("model", "system"):
            if key in fields and not isinstance(fields[key], str):
                problems.append(f"{where}.{key}: expected a string, got {fields[key]!r}")
                return None
        for key in ("tools", "fallback"):
            if key in fields and not (isinstance(fields[key], list) and all(isinstance(t, str) for t in fields[key])):
                problems.append(f"{where}.{key}: expected a list of names, got {fields[key]!r}")
                return None
        spec = AgentSpec(name=name, **fields)
        try:
            spec.validate()
        except AikitError as exc:
            for problem in exc.details.get("problems") or [exc.message]:
                problems.append(f"{where}.{problem.replace(': ', ': expected ', 1)}")
            return None
        config.spec = spec
    return config


def manifest_from_dict(data: Any, *, where: str = "manifest.json") -> Manifest:
    """Build a :class:`Manifest` from the parsed JSON of a manifest file; raise
    :class:`ValidationError` listing every problem (each naming the field and the fix)."""
    if not isinstance(data, dict):
        raise ValidationError(f"{where} is not valid:", [f"expected a JSON object with \"agents\" and \"layers\", "
                                                         f"got {type(data).__name__}"], details={"path": where})
    problems: list[str] = []
    _unknown(data, _TOP_KEYS, "(top level)", problems)
    version = data.get("version", MANIFEST_VERSION)
    if version != MANIFEST_VERSION:
        problems.append(f"version: expected {MANIFEST_VERSION}, got {version!r}; fix: set \"version\": 1")
    manifest = Manifest()
    raw_agents = data.get("agents", {})
    if not isinstance(raw_agents, dict):
        problems.append(f"agents: expected an object mapping agent names to agents, got {type(raw_agents).__name__}; "
                        "fix: write \"agents\": {\"NAME\": {\"kind\": \"shell\"}}")
        raw_agents = {}
    for name, raw in raw_agents.items():
        if name.startswith(("_", "$")):
            continue
        at = f"agents.{name}"
        if name in BUILTIN_AGENTS:
            problems.append(f"{at}: {name!r} is a built-in agent and cannot be redefined; fix: give yours another "
                            f"name (for a shell agent with its own timeout: \"build\": {{\"kind\": \"shell\", ...}})")
            continue
        if not LAYER_RE.match(name):
            problems.append(f"{at}: {name!r} is not an agent name; fix: use a letter followed by letters, digits, "
                            "'_' or '-'")
            continue
        agent = _agent(name, raw, at, problems)
        if agent is not None:
            manifest.agents[name] = agent
    raw_layers = data.get("layers", {})
    if not isinstance(raw_layers, dict):
        problems.append(f"layers: expected an object mapping layer names to {{\"agent\": NAME}}, got "
                        f"{type(raw_layers).__name__}; fix: write \"layers\": {{\"execution\": {{\"agent\": \"shell\"}}}}")
        raw_layers = {}
    for name, raw in raw_layers.items():
        if name.startswith(("_", "$")):
            continue
        at = f"layers.{name}"
        if not LAYER_RE.match(name):
            problems.append(f"{at}: {name!r} is not a layer name; fix: use a word such as 'execution'")
            continue
        if not isinstance(raw, dict):
            problems.append(f"{at}: expected an object such as {{\"agent\": \"shell\"}}, got {type(raw).__name__}")
            continue
        _unknown(raw, _LAYER_KEYS, at, problems)
        agent = raw.get("agent")
        if agent is not None and (not isinstance(agent, str) or (agent not in manifest.agents and agent not in raw_agents)):
            problems.append(f"{at}.agent: {agent!r} is not an agent (known: {', '.join(sorted(manifest.agents))}); "
                            f"fix: name a built-in agent or define it under \"agents\"")
            agent = None
        description = raw.get("description", "")
        manifest.layers[name] = LayerConfig(name, agent, description if isinstance(description, str) else "")
    if problems:
        raise ValidationError(f"{where} is not valid:", problems, details={"path": where})
    return manifest


def load_manifest(path: str | os.PathLike[str]) -> Manifest:
    """Read and validate a manifest file."""
    p = Path(path)
    manifest = manifest_from_dict(read_json_file(p, "manifest file"), where=str(p))
    manifest.path = p.resolve()
    return manifest


def find_manifest_file(plan_path: Path | None, cwd: Path | None = None) -> Path | None:
    """The default manifest: ``manifest.json`` or ``config/manifest.json`` next to the plan, then in
    the working directory; None when there is none."""
    return find_config_file("manifest.json", plan_path, cwd)
