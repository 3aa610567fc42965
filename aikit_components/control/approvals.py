"""A person's approval before an operation runs: :class:`ApprovalInterceptor`, at order
``APPROVAL`` (500) in the operation pipeline, after the users' hooks (a person approves the call as
it will really run) and before the budgets and the effect journal.

What needs approval (the first rule that applies says why):

- a tool declared with ``approval = "always"`` (or ``True``), or with a function of the call that
  says yes (``Tool.approval``: ``fn({name, args, caller, run_id})`` -> true / a reason string);
- a tool whose name matches one of the patterns of the running agent (``Agent.new{approve =
  {"write_file", "http_*"}}``, :attr:`RunControl.approve`);
- a workflow step declared with ``approval = true`` (its operation's ``meta["approval"]``);
- the policy of ``[security.approval]`` in aikit.toml (:class:`ApprovalPolicy`, ``require = [...]``).

Who answers (an :class:`Asker`, set by the front door: a notebook's stdin, a terminal): approve,
deny, or approve always for this session (that tool, any arguments), with an optional reason. When
nobody can be asked (no asker, ``allow_stdin`` false, a run that is not interactive) the
operation raises :class:`ApprovalRequired`: an agent run then pauses durably with
``status = "needs_approval"`` and continues with ``Agent.resume`` once decided. A denial raises
:class:`ApprovalDenied`, which an agent's model sees as the tool's error.

Every question publishes ``approval.requested`` and every decision ``approval.decided`` (payload
``{run_id, kind, name, args_digest, decision, who, reason, at}``) on the event bus.
"""

from __future__ import annotations

import datetime as _dt
import fnmatch
import getpass
import hashlib
import inspect
import json
import logging
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

from ..errors import AikitError, ConfigError
from ..operations import APPROVAL, Decision, Interceptor, Operation, OperationKind
from .runs import CURRENT_RUN

log = logging.getLogger(__name__)

#: The kinds of operation an approval can be needed for.
KINDS = frozenset({"tool", "agent", "llm", "workflow.step", "process", "http"})

#: The rules ``[security.approval] require = [...]`` may name, and what each means.
POLICIES: dict[str, str] = {
    "process": "every program launch",
    "write_outside_cwd": "every file write outside the working directory",
    "new_host": "every request to a host not seen before in this process",
    "spend_above": "every model call once the session has spent more than spend_above_usd",
    "tool_call": "every tool call",
    "agent_run": "every agent run",
    "model_call": "every model call",
}
DECISIONS = ("approved", "denied", "approved_always")
# Argument names that hold the path a writing tool writes to.
_PATH_ARGS = ("path", "dest", "destination", "target", "output", "out", "to", "file", "dst")


class ApprovalRequired(AikitError):
    """Nobody could be asked: the operation waits for a decision (``details.request``)."""

    code = "needs_approval"


class ApprovalDenied(AikitError):
    """A person (or a stored decision) denied the operation."""

    code = "approval_denied"


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def digest(args: Any) -> str:
    """sha256 hex of the canonical JSON of ``args``."""
    return hashlib.sha256(canonical_json(args).encode("utf-8")).hexdigest()


def now_iso() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def operation_args(op: Operation) -> Any:
    """What a person approves of an operation: a tool's arguments, a program's argv and cwd, a
    request's method and URL, a step's params, an agent's input, a model call's model."""
    kind = op.kind.name
    payload = op.payload
    if kind == "tool":
        return payload.get("args")
    if kind == "workflow.step":
        return payload.get("params")
    if kind == "agent":
        return {"input": payload.get("input")}
    if kind == "llm":
        return {"model": op.name}
    return payload


@dataclass
class ApprovalRequest:
    """One question: what will run, and why it needs approval."""

    kind: str
    name: str
    args: Any
    why: str
    run_id: str | None = None
    in_doubt: bool = False

    @property
    def args_digest(self) -> str:
        return digest(self.args)

    @property
    def key(self) -> str:
        """Identifies the operation (kind, name, arguments) for decisions given in advance."""
        return f"{self.kind}:{self.name}:{self.args_digest}"

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "name": self.name, "args": self.args, "args_digest": self.args_digest,
                "why": self.why, "run_id": self.run_id, "in_doubt": self.in_doubt, "key": self.key}

    def prompt(self) -> str:
        """The question as a person reads it (notebook input_request, terminal)."""
        shown = canonical_json(self.args)
        if len(shown) > 2000:
            shown = shown[:2000] + "..."
        what = f"{self.kind} {self.name!r}"
        lines = [f"Approval needed: {what}", f"  arguments: {shown}", f"  why: {self.why}"]
        if self.run_id:
            lines.append(f"  run: {self.run_id}")
        lines.append("Answer approve / deny / always (approve it for this session), then an optional reason: ")
        return "\n".join(lines)


@dataclass(frozen=True)
class Answer:
    """A person's answer: the decision, who gave it and why."""

    decision: str  # approved | denied | approved_always
    reason: str = ""
    who: str = ""


_WORDS = {"a": "approved", "approve": "approved", "approved": "approved", "y": "approved", "yes": "approved",
          "ok": "approved", "d": "denied", "deny": "denied", "denied": "denied", "n": "denied", "no": "denied",
          "always": "approved_always", "approve-always": "approved_always", "approve_always": "approved_always"}


def parse_answer(text: str | None, who: str = "") -> Answer | None:
    """``"approve"``, ``"deny too risky"``, ``"always"`` (first word; the rest is the reason) ->
    an :class:`Answer`; None when the text is no answer."""
    if text is None:
        return None
    word, _, reason = text.strip().partition(" ")
    decision = _WORDS.get(word.lower().rstrip(":,"))
    if decision is None:
        return None
    return Answer(decision, reason.strip(), who)


#: How many times a person is asked: an answer that is none of the words is asked again.
ASKS = 3


def _settled(text: str | None) -> bool:
    """Whether asking again is pointless: an answer, or the end of input (None)."""
    return text is None or parse_answer(text) is not None


class Asker(Protocol):
    """How a front door asks a person (a notebook's stdin, a terminal)."""

    def available(self) -> bool:
        """Whether a person can be asked now (stdin allowed, a terminal attached)."""

    def ask(self, prompt: str) -> str | None:
        """Ask from the thread that runs the operation (None: end of input)."""

    async def aask(self, prompt: str) -> str | None:
        """Ask from the I/O loop."""


@dataclass
class ApprovalPolicy:
    """``[security.approval]``: ``require = ["process", "write_outside_cwd", "new_host",
    "spend_above", "tool_call", "agent_run", "model_call"]`` and ``spend_above_usd``."""

    require: frozenset[str] = frozenset()
    spend_above_usd: float = 0.0

    @classmethod
    def from_config(cls, config: Any) -> ApprovalPolicy:
        section = config.get("security.approval", None) if config is not None else None
        if section is None:
            return cls()
        if not isinstance(section, dict):
            raise ConfigError("security.approval must be a table: [security.approval] require = [\"process\", ...]")
        unknown_keys = sorted(set(section) - {"require", "spend_above_usd"})
        if unknown_keys:
            raise ConfigError(f"security.approval: unknown key {unknown_keys[0]!r}; the keys are require and "
                              "spend_above_usd", details={"key": unknown_keys[0]})
        require = section.get("require", [])
        if not isinstance(require, list) or not all(isinstance(n, str) for n in require):
            raise ConfigError("security.approval.require must be an array of policy names: "
                              + ", ".join(POLICIES))
        return cls.of(require, section.get("spend_above_usd", 0.0))

    @classmethod
    def of(cls, require: Iterable[str], spend_above_usd: Any = 0.0) -> ApprovalPolicy:
        names = list(require)
        for name in names:
            if name not in POLICIES:
                close = fnmatch.filter(POLICIES, f"*{name[:4]}*") if name else []
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise ConfigError(f"unknown approval policy {name!r} in security.approval.require{hint}; "
                                  f"the policies are: {', '.join(POLICIES)}", details={"policy": name})
        if isinstance(spend_above_usd, bool) or not isinstance(spend_above_usd, (int, float)) or spend_above_usd < 0:
            raise ConfigError("security.approval.spend_above_usd must be a number >= 0 (US dollars)")
        return cls(frozenset(names), float(spend_above_usd))


@dataclass
class ApprovalInterceptor(Interceptor):
    """Asks a person before an operation that needs approval runs (see the module docstring)."""

    policy: ApprovalPolicy = field(default_factory=ApprovalPolicy)
    events: Any = None
    asker: Asker | None = None
    #: The session's spend so far in US dollars (for ``spend_above``).
    spend: Callable[[], float] = lambda: 0.0
    #: ``kind:name`` approved for the rest of the session ("always").
    always: set[str] = field(default_factory=set)
    #: Hosts requests went to (``new_host``).
    seen_hosts: set[str] = field(default_factory=set)
    _steps: bool = field(default=False, repr=False)  # see watch_steps()

    order = APPROVAL
    name = "approval"

    def __hash__(self) -> int:
        return id(self)

    def __eq__(self, other: object) -> bool:
        return self is other

    def set_policy(self, policy: ApprovalPolicy) -> None:
        self.policy = policy
        self.changed()

    # -- which operations ---------------------------------------------------------------------
    def wants_kind(self, kind: OperationKind) -> bool | None:
        # Answers are cached per kind until changed(): a policy not asking about a kind costs its
        # operations nothing; tool calls and steps are decided per operation (cheaply, in wants).
        name, require = kind.name, self.policy.require
        if name == "tool":
            return None
        if name == "workflow.step":
            return None if self._steps else False
        if name == "process":
            return "process" in require
        if name == "http":
            return "new_host" in require
        if name == "agent":
            return "agent_run" in require
        if name == "llm":
            return bool(require & {"model_call", "spend_above"})
        return False

    def wants(self, op: Operation) -> bool:
        kind = op.kind.name
        if kind == "tool":
            tool = op.meta.get("tool")
            if getattr(tool, "approval", None) is not None:
                return True
            require = self.policy.require
            if "tool_call" in require or ("write_outside_cwd" in require and getattr(tool, "security", "") == "write"):
                return True
            run = CURRENT_RUN.get()
            return run is not None and bool(run.approve or run.decisions)
        if kind == "workflow.step":
            return bool(op.meta.get("approval"))
        return True

    def watch_steps(self) -> None:
        """A workflow with steps declared ``approval = true`` is about to run: from now on the
        interceptor joins workflow steps (until then they cost nothing)."""
        if not self._steps:
            self._steps = True
            self.changed()

    def why(self, op: Operation) -> str | None:
        """Why ``op`` needs approval (None: it does not); only the synchronous rules."""
        kind = op.kind.name
        require = self.policy.require
        run = CURRENT_RUN.get()
        if kind == "tool":
            tool = op.meta.get("tool")
            rule = getattr(tool, "approval", None)
            if rule is True or rule == "always":
                return f"tool {op.name!r} is declared with approval = \"always\""
            if run is not None and any(fnmatch.fnmatchcase(op.name, p) for p in run.approve):
                return f"{run.kind} {run.name!r} requires approval for {op.name!r}"
            if "tool_call" in require:
                return "the policy requires approval of every tool call (security.approval: tool_call)"
            if "write_outside_cwd" in require and getattr(tool, "security", "") == "write":
                outside = _path_outside_cwd(op.payload.get("args"))
                if outside is not None:
                    return (f"it writes {outside}, outside the working directory "
                            "(security.approval: write_outside_cwd)")
            return None
        if kind == "process" and "process" in require:
            return "the policy requires approval of every program launch (security.approval: process)"
        if kind == "http" and "new_host" in require:
            host = urlsplit(str(op.payload.get("url", ""))).hostname or ""
            if host not in self.seen_hosts:
                return f"no request went to host {host!r} before (security.approval: new_host)"
            return None
        if kind == "agent" and "agent_run" in require:
            return "the policy requires approval of every agent run (security.approval: agent_run)"
        if kind == "llm":
            if "model_call" in require:
                return "the policy requires approval of every model call (security.approval: model_call)"
            if "spend_above" in require:
                spent = float(self.spend())
                if spent > self.policy.spend_above_usd:
                    return (f"the session has spent ${spent:.4f}, more than spend_above_usd = "
                            f"${self.policy.spend_above_usd:g} (security.approval: spend_above)")
            return None
        if kind == "workflow.step" and op.meta.get("approval"):
            return f"step {op.name!r} is declared with approval = true"
        return None

    # -- deciding -----------------------------------------------------------------------------
    def before(self, op: Operation) -> Decision | None:
        request = self._request(op, self.why(op) or self._tool_rule_sync(op))
        if request is None:
            return None
        given = self._given(request)
        if given is None:
            asker = self.asker
            if asker is None or not self._can_ask(asker):
                self._pause(request)
            self._requested(request)
            given = self._answer(request, lambda prompt: asker.ask(prompt))  # type: ignore[union-attr]
        return self._apply(op, request, given)

    async def abefore(self, op: Operation) -> Decision | None:
        why = self.why(op)
        if why is None:
            why = await self._tool_rule_async(op)
        request = self._request(op, why)
        if request is None:
            return None
        given = self._given(request)
        if given is None:
            given = await self.ask_person(request)
        if given is None:
            wait = op.meta.get("approval_wait")  # a workflow step waits for a stored decision instead
            if wait is None:
                self._pause(request)
            given = await wait(request)
        return self._apply(op, request, given)

    async def ask_person(self, request: ApprovalRequest) -> Answer | None:
        """Ask a person through the front door (publishing the question and the decision); None
        when nobody can be asked here."""
        asker = self.asker
        if asker is None or not self._can_ask(asker):
            return None
        self._requested(request)
        text: str | None = None
        for _ in range(ASKS):
            text = await asker.aask(request.prompt())
            if _settled(text):
                break
        return self._conclude(request, text)

    def _answer(self, request: ApprovalRequest, ask: Callable[[str], str | None]) -> Answer:
        text: str | None = None
        for _ in range(ASKS):
            text = ask(request.prompt())
            if _settled(text):
                break
        return self._conclude(request, text)

    def _conclude(self, request: ApprovalRequest, text: str | None) -> Answer:
        """Decide ``request`` by the last answer given (denied when it is none of the words)."""
        given = parse_answer(text, who_answers()) or Answer("denied", "no answer", who_answers())
        self.decided(request, given)
        return given

    def _request(self, op: Operation, why: str | None) -> ApprovalRequest | None:
        if why is None:
            return None
        run = CURRENT_RUN.get()
        return ApprovalRequest(op.kind.name, op.name, operation_args(op), why, run.run_id if run else None)

    def _given(self, request: ApprovalRequest) -> Answer | None:
        """A decision made already: approved always this session, or given for this run (resume)."""
        if f"{request.kind}:{request.name}" in self.always:
            return Answer("approved", "approved always for this session", "session")
        run = CURRENT_RUN.get()
        if run is not None and request.key in run.decisions:
            decision, reason, *who = run.decisions[request.key]
            return Answer(decision, reason, who[0] if who else "")
        return None

    def _can_ask(self, asker: Asker) -> bool:
        run = CURRENT_RUN.get()
        if run is not None and not run.interactive:
            return False
        try:
            return bool(asker.available())
        except Exception:  # noqa: BLE001 - a front door that cannot tell cannot ask
            return False

    def _pause(self, request: ApprovalRequest) -> None:
        self._requested(request)
        raise ApprovalRequired(
            f"{request.kind} {request.name!r} needs approval ({request.why}) and nobody can be asked here"
            + (f"; run {request.run_id!r} waits: Agent.resume({request.run_id!r}, {{approve = {{...}}}}) or "
               f"`aikit approvals approve {request.run_id}` continues it" if request.run_id else
               "; run it where stdin is available, or from an agent run, which pauses until it is decided"),
            details={"request": request.to_dict()})

    def _apply(self, op: Operation, request: ApprovalRequest, given: Answer) -> Decision | None:
        if given.decision == "approved_always":
            self.always.add(f"{request.kind}:{request.name}")
        if given.decision == "denied":
            reason = f": {given.reason}" if given.reason else ""
            raise ApprovalDenied(f"{request.kind} {request.name!r} was denied by {given.who or 'a person'}{reason}",
                                 details={"request": request.to_dict(), "reason": given.reason, "who": given.who})
        if request.kind == "http":
            self.seen_hosts.add(urlsplit(str(op.payload.get("url", ""))).hostname or "")
        return None

    def finished(self, op: Operation, result: Any) -> None:
        if op.kind.name == "http":
            self.seen_hosts.add(urlsplit(str(op.payload.get("url", ""))).hostname or "")

    # -- a tool's own rule (a function of the call) -------------------------------------------
    def _tool_rule_sync(self, op: Operation) -> str | None:
        rule = self._tool_rule(op)
        if rule is None:
            return None
        return _rule_reason(op, rule(_call_view(op)))

    async def _tool_rule_async(self, op: Operation) -> str | None:
        rule = self._tool_rule(op)
        if rule is None:
            return None
        check = getattr(rule, "acall", None)
        verdict = await check(_call_view(op)) if check is not None else rule(_call_view(op))
        if inspect.isawaitable(verdict):
            verdict = await verdict
        return _rule_reason(op, verdict)

    @staticmethod
    def _tool_rule(op: Operation) -> Callable[..., Any] | None:
        if op.kind.name != "tool":
            return None
        rule = getattr(op.meta.get("tool"), "approval", None)
        return rule if callable(rule) else None

    # -- events ---------------------------------------------------------------------------------
    def requested(self, request: ApprovalRequest) -> None:
        """Publish ``approval.requested`` for ``request``."""
        self._requested(request)

    def _requested(self, request: ApprovalRequest) -> None:
        self._publish("approval.requested", {**request.to_dict(), "at": now_iso()})

    def decided(self, request: ApprovalRequest, answer: Answer) -> None:
        """Publish ``approval.decided`` for ``answer`` to ``request``."""
        self._publish("approval.decided", decided_payload(request, answer))

    def _publish(self, topic: str, payload: dict[str, Any]) -> None:
        if self.events is not None:
            self.events.publish(topic, payload, source="approvals")


def decided_payload(request: ApprovalRequest, answer: Answer) -> dict[str, Any]:
    return {"run_id": request.run_id, "kind": request.kind, "name": request.name,
            "args_digest": request.args_digest, "decision": answer.decision, "who": answer.who,
            "reason": answer.reason, "at": now_iso()}


def _call_view(op: Operation) -> dict[str, Any]:
    run = CURRENT_RUN.get()
    return {"name": op.name, "args": op.payload.get("args"), "caller": getattr(op.context, "caller", None),
            "run_id": run.run_id if run else None}


def _rule_reason(op: Operation, verdict: Any) -> str | None:
    if verdict is None or verdict is False:
        return None
    if isinstance(verdict, str) and verdict:
        return verdict
    return f"the approval function of tool {op.name!r} asked for it"


def _path_outside_cwd(args: Any) -> str | None:
    if not isinstance(args, dict):
        return None
    cwd = Path(os.getcwd()).resolve()
    for name in _PATH_ARGS:
        value = args.get(name)
        if isinstance(value, str) and value:
            target = Path(os.path.expanduser(value))
            target = (cwd / target if not target.is_absolute() else target).resolve()
            if target != cwd and cwd not in target.parents:
                return str(target)
    return None


def who_answers() -> str:
    """The name of the person at this process (the OS user)."""
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001
        return "user"

