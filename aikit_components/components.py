"""One object holding a process's components, wired together: config, security policy, event
bus, hooks, tools, state, sessions and artifacts. The kernel, ``aikit run`` and plain Python
programs create it the same way:

```python
from aikit_components.components import Components
with Components.open() as c:
    c.state.set("global", "greeting", "hi")
    print(c.tools.call("hash", {"text": "hi"}, c.tool_context()))
```
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .agents.agent import UsageLedger
from .artifacts import ArtifactStore
from .config import Config
from .config import data_dir as default_data_dir
from .control.approvals import ApprovalInterceptor, ApprovalPolicy
from .control.audit import AuditLedger
from .control.audit_entries import AuditInterceptor, record_session_start, watch_events
from .control.budgets import BudgetInterceptor, Budgets
from .control.journal import EffectJournal, JournalInterceptor
from .control.pg_audit import open_ledger
from .control.stop import StopSwitch
from .events import EventBus
from .hooks import HookRegistry
from .operations import Pipeline
from .operations.standard import standard_pipeline
from .security import SecurityPolicy
from .sessions import SessionInfo, SessionStore
from .state import State
from .storage.settings import StorageSettings
from .telemetry import Telemetry, TracingInterceptor
from .tools import Budget, ToolContext, ToolRegistry, default_registry

if TYPE_CHECKING:
    from .agents import Agent, AgentSpec
    from .mcp import MCPClients
    from .providers.registry import ModelRegistry
    from .rag import RAG

log = logging.getLogger(__name__)


@dataclass
class Components:
    """The wired components of one process (see the module docstring)."""

    config: Config
    policy: SecurityPolicy
    events: EventBus
    hooks: HookRegistry
    state: State
    sessions: SessionStore
    artifacts: ArtifactStore
    data_dir: Path
    session: SessionInfo
    pipeline: Pipeline = field(default_factory=Pipeline)
    plugins: bool = True
    _tools: ToolRegistry | None = field(default=None, repr=False)
    _models: Any = field(default=None, repr=False)
    _rag: Any = field(default=None, repr=False)
    _mcp: Any = field(default=None, repr=False)
    _mcp_config_seen: tuple[Any, bool] | None = field(default=None, repr=False)
    ledger: UsageLedger = field(default_factory=UsageLedger)
    telemetry: Telemetry = field(default_factory=Telemetry.disabled)
    audit: AuditLedger | None = None  # the audit ledger ([audit] enabled; docs/security.md)
    stop_switch: StopSwitch | None = None  # the kill switch (aikit.stop; docs/lua-api.md, Control)
    budgets: Budgets | None = None  # session, agent and workflow budgets ([budgets]; docs/lua-api.md, Control)
    _tools_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    #: A person's approvals (control/approvals.py) and the effect journal (control/journal.py),
    #: both in ``pipeline``; None for components assembled by hand.
    approvals: ApprovalInterceptor | None = None
    journal: EffectJournal | None = None

    @property
    def tools(self) -> ToolRegistry:
        """The tool registry, built on first use: importing every built-in tool (HTTP, templates,
        parsers) costs more than the rest of start-up, so a kernel pays it only when needed
        (or in the background, see :meth:`warm_up`)."""
        if self._tools is None:
            with self._tools_lock:
                if self._tools is None:
                    self._tools = default_registry(events=self.events, hooks=self.hooks, plugins=self.plugins,
                                                   pipeline=self.pipeline)
        if self._mcp is None:
            seen = self._mcp_config_seen  # mcp_configured()'s answer, when still current, read here: every tool call asks
            if (seen is None or seen[0] is not self.config or seen[1]) and self.mcp_configured():
                self._make_mcp(self._tools)  # its resolver connects a configured MCP server when its tools are asked for
        return self._tools

    def mcp_configured(self) -> bool:
        """Whether the config names MCP servers (read once per config: every tool call asks),
        without loading the MCP client (the ``mcp`` SDK takes about a second to import)."""
        seen = self._mcp_config_seen
        if seen is None or seen[0] is not self.config:
            seen = self._mcp_config_seen = (self.config, bool(self.config.get("mcp.servers")))
        return seen[1]

    @property
    def models(self) -> ModelRegistry:
        """Model names and aliases -> providers (``[providers]``, ``[models]`` in aikit.toml)."""
        if self._models is None:
            from .providers.registry import ModelRegistry

            with self._tools_lock:
                if self._models is None:
                    self._models = ModelRegistry(self.config, pipeline=self.pipeline)
        return self._models

    @property
    def rag(self) -> RAG:
        """RAG collections under ``<data_dir>/rag``, opened on first use (the embedding model
        itself loads only when something is first embedded)."""
        if self._rag is None:
            from .rag import RAG

            with self._tools_lock:
                if self._rag is None:
                    self._rag = RAG(self.data_dir / "rag", config=self.config, events=self.events,
                                    models=lambda: self.models, pipeline=self.pipeline)
        return self._rag

    @property
    def mcp(self) -> MCPClients:
        """Connections to MCP servers (``MCP.connect``, ``[mcp.servers.NAME]``); their tools join
        the tool registry as ``NAME.tool``."""
        if self._mcp is None:
            registry = self.tools  # (which makes the clients itself when aikit.toml lists servers)
            if self._mcp is None:
                self._make_mcp(registry)
        return self._mcp

    def _make_mcp(self, registry: ToolRegistry) -> None:
        from .mcp import MCPClients

        with self._tools_lock:
            if self._mcp is None:
                self._mcp = MCPClients(registry, lambda: self.tool_context(caller="mcp"), config=self.config,
                                       pipeline=self.pipeline)

    def new_agent(self, spec: AgentSpec, context: Callable[[], ToolContext] | None = None) -> Agent:
        """An agent wired to this process: its model (with fallbacks), tools, state, hooks, events."""
        from .agents import Agent
        from .providers.fallback import FallbackChain

        spec.validate()  # a fallback that is not a list, say, is named before it is used
        for model in [spec.model, *spec.fallback]:
            self.models.check(model)  # a misspelled provider fails here, not at the first run
        provider = FallbackChain(self.models, [spec.model, *spec.fallback], events=self.events)
        return Agent(spec, provider=provider, tools=self.tools,
                     context=context or (lambda: self.tool_context(caller=f"agent:{spec.name}")),
                     state=self.state, events=self.events, hooks=self.hooks, ledger=self.ledger,
                     pipeline=self.pipeline)

    def step_placement(self, executor: str) -> Any:
        """The class that places a workflow run's steps on ``executor`` (``ray``: Ray tasks, see
        :mod:`aikit_components.distributed`; imported only when a run asks for it)."""
        if executor == "ray":
            from .distributed.steps import RayStepExecutors

            return RayStepExecutors
        raise ValueError(f"no step placement {executor!r}")

    def warm(self) -> None:
        """Build the tool registry and import what its first uses need, now, in this thread (the
        kernel does it before its first cell; see :meth:`warm_up` for the background)."""
        _ = self.tools  # the property builds the registry
        from .tools.schema import load_jsonschema

        load_jsonschema()  # validate_schema would otherwise stall the loop on its first call

    def warm_up(self, delay: float = 1.0) -> None:
        """:meth:`warm` on a background thread (no Lua involved, so any thread may), after
        ``delay`` seconds so the imports do not compete with start-up for the GIL."""
        timer = threading.Timer(delay, self.warm)
        timer.name, timer.daemon = "aikit-warm-up", True
        timer.start()

    @classmethod
    def open(cls, *, config: Config | None = None, data_dir: Path | None = None,
             loop_getter: Callable[[], asyncio.AbstractEventLoop] | None = None,
             session_id: str | None = None, session_name: str | None = None, plugins: bool = True,
             metric_readers: list[Any] | None = None) -> Components:
        """Load config, open the stores under the data directory and enter a session: resume
        ``session_id`` when given, else create a new one named ``session_name``. Telemetry
        follows ``[telemetry]`` (``metric_readers``: OTel metric readers to add, e.g. Prometheus)."""
        config = config or Config.load()
        directory = Path(data_dir) if data_dir is not None else default_data_dir()
        approval_policy = ApprovalPolicy.from_config(config)  # a bad policy fails before anything opens
        events = EventBus(loop_getter=loop_getter)
        hooks = HookRegistry(on_error=lambda point, name, exc: events.publish(
            "hook.failed", {"point": point, "hook": name, "error": f"{type(exc).__name__}: {exc}"}, source="hooks"))
        pipeline = standard_pipeline(events, hooks)
        budgets = Budgets(config, events)  # before anything is stored: a bad [budgets] table is an error here
        storage = StorageSettings.from_config(config)  # [storage]: SQLite files, or one PostgreSQL
        # the ledger opens first: one it cannot use (a newer schema) is an error before anything is stored
        audit = open_ledger(directory, storage) if config.get("audit.enabled", True) else None
        telemetry = Telemetry.from_config(config, directory, metric_readers=metric_readers)
        if telemetry.enabled:
            pipeline.add(TracingInterceptor(telemetry))
        sessions = SessionStore(directory, events=events, storage=storage)
        session = sessions.resume(session_id) if session_id else sessions.create(name=session_name)
        if audit is not None:
            _start_audit(audit, config, pipeline, events, session, resumed=bool(session_id))
        stop_switch = StopSwitch(events)
        pipeline.add(stop_switch)
        pipeline.add(BudgetInterceptor(budgets))
        ledger = UsageLedger(dict(config.get("models.prices", None) or {}))
        approvals = ApprovalInterceptor(approval_policy, events,
                                        spend=lambda: ledger.session_cost)
        pipeline.add(approvals)
        journal = EffectJournal(directory / "journal.sqlite")
        pipeline.add(JournalInterceptor(journal))
        return cls(
            config=config,
            policy=SecurityPolicy.from_config(config),
            events=events,
            hooks=hooks,
            pipeline=pipeline,
            state=State(storage.state_backend(directory), events=events, hooks=hooks, pipeline=pipeline,
                        session_id=session.id),
            sessions=sessions,
            artifacts=ArtifactStore(directory, events=events,
                                    max_bytes=int(config.get("artifacts.max_bytes", 100 * 1024 * 1024)),
                                    storage=storage),
            data_dir=directory,
            session=session,
            plugins=plugins,
            ledger=ledger,
            telemetry=telemetry,
            audit=audit,
            stop_switch=stop_switch,
            budgets=budgets,
            approvals=approvals,
            journal=journal,
        )

    def tool_context(self, caller: str = "python", budget: Budget | None = None) -> ToolContext:
        """A context for one run of tool calls (a fresh budget from the policy unless given)."""
        return ToolContext(
            policy=self.policy,
            budget=budget or Budget(self.policy.max_tool_calls, self.policy.max_wall_time_s),
            config=self.config, events=self.events, hooks=self.hooks, data_dir=self.data_dir,
            session_id=self.session.id, caller=caller, pipeline=self.pipeline,
        )

    def close(self, status: str | None = "completed") -> None:
        """Complete the session (unless ``status`` is None) and close the stores."""
        try:
            if status is not None:
                self.sessions.complete(self.session.id, status)
        except Exception:
            log.exception("could not complete session %s", self.session.id)
        closers = [self.state.close, self.artifacts.close, self.sessions.close, self.telemetry.close]
        if self.audit is not None:
            closers.append(self.audit.close)
        if self.journal is not None:
            closers.append(self.journal.close)
        if self._rag is not None:
            closers.insert(0, self._rag.close)
        if self._mcp is not None:
            closers.insert(0, self._mcp.close)
        for closer in closers:
            try:
                closer()
            except Exception:
                log.exception("error while closing components")

    def __enter__(self) -> Components:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close("failed" if exc and exc[0] is not None else "completed")


def _start_audit(audit: AuditLedger, config: Config, pipeline: Pipeline, events: EventBus, session: SessionInfo,
                 resumed: bool) -> None:
    """Record this session's start in ``audit``, then its operations and audited events from now on."""
    audit.session = session.id
    record_session_start(audit, session.id, config, name=session.name, resumed=resumed)
    pipeline.add(AuditInterceptor(audit))
    watch_events(audit, events)
