"""One model call, the same for every caller: an agent's step, a workflow's ``llm`` step.

:meth:`ModelCall.ask` runs one request as an operation of kind :data:`LLM_CALL` through the
operation pipeline: hooks ``llm.before/after/error``, events ``llm.called/finished/failed``.
``llm.before`` may cancel, modify the messages sent, or replace the answer; ``llm.after`` may
cancel, retry (the same call again) or replace the answer's text; ``llm.error`` may retry or
replace. Retries are bounded by the pipeline's ``MAX_RETRIES`` per call; then the last outcome
stands. Every completion received is accounted (usage, ledger), also one a hook then
retries or replaces: the tokens were paid for.

The caller is named in every payload and event by ``who`` (``{agent}``, or ``{workflow, run_id,
step}``); ``where`` adds the position within the caller's work (an agent's loop ``step``) to the
hook payloads and ``llm.called/finished``.

Fallback models are the provider's business (a :class:`~aikit_components.providers.fallback.FallbackChain`);
:func:`refusal` says why, when a content filter stopped the answer.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..errors import AikitError, InvalidArgument
from ..operations import Operation, OperationKind, Pipeline, honours
from ..operations.standard import standard_pipeline
from ..providers.messages import Completion, Message, Request, StreamEvent, Usage

log = logging.getLogger(__name__)

_POINTS = ("llm.before", "llm.after", "llm.error")


@dataclass
class ModelCall:
    """How one caller asks its model: what it asks (``provider``, the configured ``model``), who it
    is (``who``), and where it reports (``pipeline``, or one built for ``hooks`` and ``events``;
    events as ``source``; ``account``)."""

    provider: Any  # complete(request) and, for streaming, stream(request)
    model: str  # as configured (the payloads' ``model``); ``answered_by`` names the one that answered
    who: dict[str, Any]
    hooks: Any = None
    events: Any = None
    source: str = "agents"
    account: Callable[[Completion], None] | None = None
    label: str = field(default="", repr=False)
    pipeline: Pipeline | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if not self.label:
            self.label = " ".join(f"{k} {v!r}" for k, v in self.who.items())
        if self.pipeline is None:
            self.pipeline = standard_pipeline(self.events, self.hooks)

    async def ask(self, request: Request, *, on_text: Callable[[str], None] | None = None, usage: Usage | None = None,
                  where: Mapping[str, Any] | None = None) -> Completion:
        """The completion of ``request`` as the hooks let it stand; ``on_text`` (called on the loop)
        streams the text deltas; every completion received is added to ``usage``."""
        hooks = self.hooks
        observed = hooks is not None and any(hooks.has(point) for point in _POINTS)
        sent = [m.to_dict() for m in request.messages] if observed else []
        where = dict(where) if where else {}
        payload = {**self.who, "model": self.model, **where, "messages": sent}
        op = Operation(LLM_CALL, self.model, payload,
                       meta={"source": self.source, "call": self, "request": request, "on_text": on_text,
                             "usage": usage, "where": where, "sent": [dict(m) for m in sent]})
        return await self.pipeline.arun(op, _answer)  # type: ignore[union-attr]

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


async def _answer(op: Operation) -> Completion:
    """The handler of one model call: ask the provider, account what it answered."""
    call: ModelCall = op.meta["call"]
    on_text = op.meta["on_text"]
    op.meta.pop("completion", None)
    request = op.meta["request"]
    completion = await (call.provider.complete(request) if on_text is None else call._stream(request, on_text))
    usage = op.meta["usage"]
    if usage is not None:
        usage.add(completion.usage)
    if call.account is not None:
        call.account(completion)
    op.meta["completion"] = completion
    return completion


def _messages_modified(op: Operation, previous: dict[str, Any]) -> None:
    """An llm.before hook changed the messages: this call sends those instead."""
    if op.payload.get("messages") == op.meta["sent"]:
        return
    request = dataclasses.replace(op.meta["request"], messages=hook_messages(op.payload.get("messages")))
    op.meta["request"] = request
    op.payload = {**op.payload, "messages": [m.to_dict() for m in request.messages]}


def _replaced_answer(op: Operation, value: Any) -> Completion:
    """A hook's replacement: the answer's text (usage and model of the answer it replaced, if any)."""
    answered: Completion | None = op.meta.get("completion")
    if answered is None:
        return Completion(Message.assistant(str(value)), model="hook")
    return Completion(Message.assistant(str(value)), usage=answered.usage, model=answered.model)


LLM_CALL = OperationKind(
    "llm",
    hook_prefix="llm",
    honours=honours(before="cancel replace", after="cancel retry replace", error="retry replace"),
    topics=("llm.called", "llm.finished", "llm.failed"),
    source="agents",
    describe=lambda op: f"the call of model {op.name!r} by {op.meta['call'].label}",
    event_fields=lambda op: {**op.meta["call"].who, "model": op.meta["call"].model, **op.meta["where"]},
    finished_fields=lambda op, completion: {"model": completion.model, "usage": completion.usage.to_dict()},
    after_payload=lambda op, c: {**op.payload, "attempt": op.attempt, "answered_by": c.model, "text": c.text,
                                 "stop_reason": c.stop_reason, "tool_calls": [t.to_dict() for t in c.tool_calls]},
    error_payload=lambda op, error: {**op.payload, "attempt": op.attempt, "error": error.to_dict()},
    replaced=_replaced_answer,
    modified=_messages_modified,
)


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
