"""A chain of models tried in order: the next one answers when the previous one is unavailable.

:class:`FallbackChain` is itself a :class:`~aikit_components.providers.base.Provider`. For each
call it tries its models in order (the ``model`` field of the incoming request is ignored: each
attempt uses the model of its chain entry):

- a :class:`ProviderError` that ``falls_back`` (rate_limit, overloaded, server, timeout,
  connection; the provider has already done its own retries) moves on to the next model, records
  the attempt and publishes ``llm.fallback`` ``{from, to, kind, message}`` on the event bus;
- an error that does not fall back (auth, bad_request, content_filter) is raised at once, its
  message saying why no other model was tried;
- when every model failed, a ProviderError of the last error's kind lists every attempt (model,
  kind, message); ``details["attempts"]`` holds them as dicts.

``Completion.model`` is the full ``provider/model`` name of the model that answered;
:attr:`FallbackChain.last_attempts` lists the attempts of the latest call (the successful one
last, ``ok=True``).

Streaming falls back only while nothing has been yielded: once the first event reached the
caller, a failure is raised (the caller has already shown part of an answer).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import InvalidArgument
from .base import Provider, ProviderError
from .messages import Completion, Request, StreamEvent

if TYPE_CHECKING:  # pragma: no cover
    from ..events import EventBus
    from .registry import ModelRegistry

__all__ = ["Attempt", "FallbackChain"]

_NO_FALLBACK_REASON = {
    "auth": "an authentication error is a configuration problem (fix the key) that another model would hide",
    "bad_request": "the request itself was rejected, and another model would most likely reject it too",
    "content_filter": "the provider's safety system refused the content; trying other models to get around "
                      "it is not done",
}


@dataclass
class Attempt:
    """One try of one model within a :class:`FallbackChain` call."""

    model: str  # full "provider/model" name
    ok: bool
    kind: str | None = None  # the ProviderError kind when it failed
    message: str = ""
    status: int | None = None
    elapsed_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def describe(self) -> str:
        if self.ok:
            return f"{self.model}: ok ({self.elapsed_s:.2f}s)"
        status = f", HTTP {self.status}" if self.status else ""
        return f"{self.model}: {self.kind}{status}: {self.message}"


def _message(exc: ProviderError) -> str:
    return getattr(exc, "message", None) or str(exc)


class FallbackChain:
    """Tries ``models`` (names or aliases resolved by ``registry``) in order; see the module doc."""

    def __init__(self, registry: ModelRegistry, models: Sequence[str], *, events: EventBus | None = None,
                 name: str = "fallback") -> None:
        if isinstance(models, str) or not models:
            raise InvalidArgument("FallbackChain needs a non-empty list of model names",
                                  details={"models": models if isinstance(models, str) else list(models or [])})
        self.registry = registry
        self.models: list[str] = list(models)
        self.events = events
        self.name = name
        #: The attempts of the latest call, in order (the successful one last).
        self.last_attempts: list[Attempt] = []

    # ---- helpers ----------------------------------------------------------------------------

    def _publish(self, frm: str, to: str, exc: ProviderError) -> None:
        if self.events is not None:
            self.events.publish("llm.fallback", {"from": frm, "to": to, "kind": exc.kind, "message": _message(exc)},
                                source=self.name)

    def _stop(self, attempts: list[Attempt], index: int, full: str, exc: ProviderError) -> ProviderError:
        """The error raised when ``exc`` (not one that falls back) ends the chain at ``index``."""
        rest = self.models[index + 1:]
        text = f"{full} failed ({exc.kind}): {_message(exc)}"
        if rest:
            reason = _NO_FALLBACK_REASON.get(exc.kind, f"errors of kind {exc.kind!r} do not fall back")
            text += f". Not falling back to {', '.join(rest)}: {reason}"
        earlier = [a for a in attempts[:-1]]
        if earlier:
            text += ". Earlier attempts: " + "; ".join(a.describe() for a in earlier)
        return self._error(text, exc, attempts)

    def _error(self, text: str, exc: ProviderError, attempts: list[Attempt]) -> ProviderError:
        details = {k: v for k, v in exc.details.items() if k not in ("kind", "provider", "status")}
        details["attempts"] = [a.to_dict() for a in attempts]
        err = ProviderError(text, kind=exc.kind, provider=exc.provider, status=exc.status,
                            retry_after=exc.retry_after, details=details)
        err.attempts = list(attempts)  # type: ignore[attr-defined]
        return err

    def _exhausted(self, attempts: list[Attempt], exc: ProviderError) -> ProviderError:
        lines = "\n".join(f" - {a.describe()}" for a in attempts)
        return self._error(f"all {len(attempts)} models failed:\n{lines}", exc, attempts)

    def _resolve(self, index: int) -> tuple[Provider, str, str]:
        return self.registry.resolve(self.models[index])

    # ---- Provider protocol ------------------------------------------------------------------

    async def complete(self, request: Request) -> Completion:
        """The completion of the first model that answers (``Completion.model`` names it)."""
        attempts: list[Attempt] = []
        self.last_attempts = attempts
        last: ProviderError | None = None
        for index, entry in enumerate(self.models):
            started = time.monotonic()
            full = entry
            try:
                provider, model_name, full = self._resolve(index)
                completion = await provider.complete(request.for_model(model_name))
            except ProviderError as exc:
                self._failed(attempts, index, full, exc, started)
                last = exc
                continue
            attempts.append(Attempt(full, True, elapsed_s=time.monotonic() - started))
            completion.model = full
            return completion
        assert last is not None
        raise self._exhausted(attempts, last) from last

    def _failed(self, attempts: list[Attempt], index: int, full: str, exc: ProviderError, started: float) -> None:
        """Record the failed attempt at ``index``; raise unless ``exc`` lets the next model take over
        (then announce the fallback)."""
        attempts.append(Attempt(full, False, exc.kind, _message(exc), exc.status, time.monotonic() - started))
        if not exc.falls_back:
            raise self._stop(attempts, index, full, exc) from exc
        if index + 1 < len(self.models):
            self._publish(full, self._peek(index + 1), exc)

    def _peek(self, index: int) -> str:
        """The full name of entry ``index`` for events (the entry itself if it does not resolve)."""
        try:
            return self.registry.expand(self.models[index])
        except Exception:
            return self.models[index]

    async def stream(self, request: Request) -> AsyncIterator[StreamEvent]:
        """The stream of the first model that starts answering; no fallback once an event was yielded."""
        attempts: list[Attempt] = []
        self.last_attempts = attempts
        last: ProviderError | None = None
        for index, entry in enumerate(self.models):
            started = time.monotonic()
            full = entry
            agen: Any = None
            try:
                provider, model_name, full = self._resolve(index)
                agen = provider.stream(request.for_model(model_name))
                first = await agen.__anext__()
            except StopAsyncIteration:
                attempts.append(Attempt(full, True, elapsed_s=time.monotonic() - started))
                return
            except ProviderError as exc:
                if agen is not None and hasattr(agen, "aclose"):
                    await agen.aclose()
                self._failed(attempts, index, full, exc, started)
                last = exc
                continue
            # committed to this model: later failures are raised, not fallen back from
            try:
                event = first
                while True:
                    if event.kind == "end" and event.completion is not None:
                        event.completion.model = full
                    yield event
                    try:
                        event = await agen.__anext__()
                    except StopAsyncIteration:
                        break
            except ProviderError as exc:
                attempts.append(Attempt(full, False, exc.kind, _message(exc), exc.status,
                                        time.monotonic() - started))
                raise self._error(
                    f"{full} failed ({exc.kind}) after its answer had started streaming: {_message(exc)}. "
                    "No fallback once output has been sent", exc, attempts) from exc
            finally:
                if hasattr(agen, "aclose"):
                    await agen.aclose()
            attempts.append(Attempt(full, True, elapsed_s=time.monotonic() - started))
            return
        assert last is not None
        raise self._exhausted(attempts, last) from last

    async def aclose(self) -> None:
        """Nothing to release: the registry owns the providers (close it with ``registry.aclose()``)."""

    def __repr__(self) -> str:
        return f"FallbackChain({self.models!r})"
