"""One model call, the same for every caller: an agent's step, a workflow's ``llm`` step.

:meth:`ModelCall.ask` sends one request through hooks ``llm.before/after/error`` and publishes
``llm.called/finished/failed``. ``llm.before`` may cancel, modify the messages sent, or replace
the answer; ``llm.after`` may cancel, retry (the same call again) or replace the answer's text;
``llm.error`` may retry or replace. Retries are bounded by ``MAX_HOOK_RETRIES`` per call; then the
last outcome stands. Every completion received is accounted (usage, ledger), also one a hook then
retries or replaces: the tokens were paid for.

The caller is named in every payload and event by ``who`` (``{agent}``, or ``{workflow, run_id,
step}``); ``where`` adds the position within the caller's work (an agent's loop ``step``) to the
hook payloads and ``llm.called/finished``.

Fallback models are the provider's business (a :class:`~aikit_components.providers.fallback.FallbackChain`);
:func:`refusal` says why, when a content filter stopped the answer.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..errors import AikitError, Cancelled, InvalidArgument
from ..hooks import MAX_HOOK_RETRIES, HookOutcome
from ..providers.messages import Completion, Message, Request, StreamEvent, Usage

log = logging.getLogger(__name__)

_POINTS = ("llm.before", "llm.after", "llm.error")


@dataclass
class ModelCall:
    """How one caller asks its model: what it asks (``provider``, the configured ``model``), who it
    is (``who``), and where it reports (``hooks``, ``events`` as ``source``, ``account``)."""

    provider: Any  # complete(request) and, for streaming, stream(request)
    model: str  # as configured (the payloads' ``model``); ``answered_by`` names the one that answered
    who: dict[str, Any]
    hooks: Any = None
    events: Any = None
    source: str = "agents"
    account: Callable[[Completion], None] | None = None
    label: str = field(default="", repr=False)

    def __post_init__(self) -> None:
        if not self.label:
            self.label = " ".join(f"{k} {v!r}" for k, v in self.who.items())

    async def ask(self, request: Request, *, on_text: Callable[[str], None] | None = None, usage: Usage | None = None,
                  where: Mapping[str, Any] | None = None) -> Completion:
        """The completion of ``request`` as the hooks let it stand; ``on_text`` (called on the loop)
        streams the text deltas; every completion received is added to ``usage``."""
        hooks = self.hooks
        observed = hooks is not None and any(hooks.has(p) for p in _POINTS)
        at = dict(where or {})
        payload = {**self.who, "model": self.model, **at,
                   "messages": [m.to_dict() for m in request.messages] if observed else []}
        if hooks is not None and hooks.has("llm.before"):
            sent = [m.to_dict() for m in request.messages]  # a copy: hooks may edit the payload's in place
            decision = await hooks.arun("llm.before", payload)
            if decision.cancelled:
                raise Cancelled(f"LLM call cancelled by a hook: {decision.reason}")
            if decision.replaced:
                return Completion(Message.assistant(str(decision.value)), model="hook")
            if decision.payload.get("messages") != sent:
                request = dataclasses.replace(request, messages=hook_messages(decision.payload.get("messages")))
                payload = {**payload, "messages": [m.to_dict() for m in request.messages]}
        for attempt in range(1, MAX_HOOK_RETRIES + 2):
            self._publish("llm.called", {**self.who, "model": self.model, **at})
            started = time.perf_counter()
            try:
                if on_text is None:
                    completion = await self.provider.complete(request)
                else:
                    completion = await self._stream(request, on_text)
            except AikitError as exc:
                self._publish("llm.failed", {**self.who, "code": exc.code, "message": exc.message})
                decision = await fire(hooks, "llm.error", {**payload, "attempt": attempt, "error": exc.to_dict()})
                if await honour_retry(decision, "llm.error", attempt, self.label):
                    continue
                if decision is not None and decision.replaced:
                    return Completion(Message.assistant(str(decision.value)), model="hook")
                if decision is not None and decision.retry:
                    exc.details.setdefault("hook_retries", MAX_HOOK_RETRIES)
                raise
            if usage is not None:
                usage.add(completion.usage)
            if self.account is not None:
                self.account(completion)
            self._publish("llm.finished", {**self.who, "model": completion.model, **at,
                                           "usage": completion.usage.to_dict(),
                                           "duration_ms": (time.perf_counter() - started) * 1000})
            decision = await fire(hooks, "llm.after", {**payload, "attempt": attempt, "answered_by": completion.model,
                                                       "text": completion.text, "stop_reason": completion.stop_reason,
                                                       "tool_calls": [c.to_dict() for c in completion.tool_calls]})
            if decision is not None and decision.cancelled:
                raise Cancelled(f"the answer of {completion.model or self.model} was cancelled by a hook: "
                                f"{decision.reason}", details={**self.who, "reason": decision.reason})
            if await honour_retry(decision, "llm.after", attempt, self.label):
                continue
            if decision is not None and decision.replaced:
                completion = Completion(Message.assistant(str(decision.value)), usage=completion.usage, model=completion.model)
            return completion
        raise AssertionError("unreachable: the last attempt never retries")

    async def _stream(self, request: Request, on_text: Callable[[str], None]) -> Completion:
        completion: Completion | None = None
        async for event in self.provider.stream(request):
            if isinstance(event, StreamEvent):
                if event.kind == "text" and event.text:
                    on_text(event.text)
                elif event.kind == "end":
                    completion = event.completion
        if completion is None:
            raise AikitError("the model's stream ended without a final message", code="provider_error")
        return completion

    def _publish(self, topic: str, payload: dict[str, Any]) -> None:
        if self.events is not None:
            self.events.publish(topic, payload, source=self.source)


async def fire(hooks: Any, point: str, payload: dict[str, Any]) -> HookOutcome | None:
    """The hooks' decision at ``point``, or None when no hook is registered there."""
    if hooks is None or not hooks.has(point):
        return None
    return await hooks.arun(point, payload)


async def honour_retry(decision: HookOutcome | None, point: str, attempt: int, label: str) -> bool:
    """True (after the hook's delay) when a retry asked for at ``point`` is honoured; attempt
    ``MAX_HOOK_RETRIES + 1`` is the last, and a retry asked for then is refused with a warning
    naming ``label`` (who was retrying)."""
    if decision is None or not decision.retry:
        return False
    if attempt > MAX_HOOK_RETRIES:
        log.warning("%s: a %s hook asked for another retry after %d; the last outcome stands",
                    label, point, MAX_HOOK_RETRIES)
        return False
    if decision.delay > 0:
        await asyncio.sleep(decision.delay)
    return True


def refusal(completion: Completion, configured: str) -> str:
    """Why the answer stopped, for a completion the provider's content filter ended."""
    model = completion.model or configured
    provider = model.split("/", 1)[0]
    why = f"the content filter of provider {provider!r} stopped the answer of model {model!r}"
    if completion.refusal:
        return f"{why}; the provider said: {completion.refusal}"
    if completion.text:
        return f"{why} part way; the text is what it let through"
    return (f"{why} before it produced any text; rephrase the input or use another model "
            f"(a content-filter refusal does not fall back)")


def hook_messages(value: Any) -> list[Message]:
    """The messages an ``llm.before`` hook put in its payload, checked."""
    if not isinstance(value, list) or not value:
        raise InvalidArgument("an llm.before hook set payload.messages to something other than a non-empty list "
                              "of messages {role, text}")
    messages = []
    for i, item in enumerate(value, 1):
        if not isinstance(item, dict) or item.get("role") not in ("system", "user", "assistant", "tool"):
            raise InvalidArgument(f"an llm.before hook gave message {i} without a role system, user, assistant "
                                  f"or tool: {str(item)[:200]}")
        try:
            messages.append(Message.from_dict(item))
        except (KeyError, TypeError, ValueError) as exc:  # e.g. a tool call without a name
            raise InvalidArgument(f"an llm.before hook gave message {i} that is not a message: {exc!r}") from None
    return messages
