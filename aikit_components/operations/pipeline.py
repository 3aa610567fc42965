"""The pipeline: one operation through an ordered chain of interceptors around its handler.

The control flow (stages, the retry bound, cancel/replace/modify, notifications) is written once,
as a generator (:meth:`Pipeline._flow`). Each call it makes (an interceptor's decision, the
handler, the wait before a retry) is one expression: for a synchronous caller
(:meth:`Pipeline.run`) it makes the call itself, and the generator runs to its end in one step;
for an async caller (:meth:`Pipeline.arun`) it yields the call, which a small driver awaits and
sends back. Only those expressions differ.

The flow, for a chain ``[outer, ..., inner]``:

1. ``before``, outer to inner. ``cancel`` fails the operation with code ``cancelled``;
   ``replace`` skips the handler and returns the value; an interceptor that raises rejects the
   operation: the ``error`` stage of the interceptors outside it decides (a retry is not
   honoured: the same call would be rejected again).
2. The handler runs (``started`` is notified first).
3. On success, ``after``, inner to outer: ``retry`` runs the handler again (at most
   :data:`MAX_RETRIES` times per operation, after the decision's delay), ``replace`` changes the
   result, ``cancel`` fails the operation. Then ``finished`` is notified.
4. On failure, ``failed`` is notified, then ``error``, inner to outer: ``retry`` (not for
   ``invalid_argument`` errors: the same arguments fail the same way) or ``replace``.

In each decision stage the first decision other than continue ends the stage.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
import types
from collections.abc import Callable, Generator, Iterable, Sequence
from typing import Any, NoReturn

from ..errors import AikitError, Cancelled, InvalidArgument, error_from_exception
from .interceptor import Interceptor
from .operation import MAX_RETRIES, Decision, Operation, OperationKind

log = logging.getLogger(__name__)



# The effects the flow yields: a tuple ``(interceptor, stage, args)`` is "call
# ``interceptor.<stage>(*args)``" (``a<stage>`` from async callers), a float is "wait that many
# seconds" (before a retry), and this sentinel is "run the handler".
_INVOKE = object()
_ASYNC = {"before": "abefore", "after": "aafter", "error": "aerror", "finished": "afinished", "failed": "afailed"}
_DECIDED = "pipeline.before_decided"  # op.meta: the before-stage already failed the operation
_COROUTINE = types.CoroutineType  # what most handlers return: known without inspect.isawaitable's calls
Flow = Generator[Any, Any, Any]


class Pipeline:
    """An ordered chain of interceptors (by their ``order``, lower is outer) shared by every
    operation of a process; see the module docstring for the flow."""

    def __init__(self, interceptors: Iterable[Interceptor] = ()) -> None:
        self._interceptors: Sequence[Interceptor] = ()
        # kind -> the interceptors that may want its operations: (interceptor, True) wants them
        # all, (interceptor, None) decides per operation. Cleared by invalidate().
        self._templates: dict[OperationKind, tuple[tuple[Interceptor, bool | None], ...]] = {}
        for item in interceptors:
            self.add(item)

    # -- the chain ------------------------------------------------------------------------------
    @property
    def interceptors(self) -> Sequence[Interceptor]:
        """The chain, outer to inner."""
        return self._interceptors

    def add(self, interceptor: Interceptor) -> Interceptor:
        """Insert ``interceptor`` at its ``order`` (after others of the same order)."""
        if not isinstance(interceptor, Interceptor):
            raise TypeError(f"expected an Interceptor, got {type(interceptor).__name__}")
        items = [*self._interceptors, interceptor]
        items.sort(key=lambda i: i.order)  # stable: equal orders keep insertion order
        self._interceptors = tuple(items)
        interceptor.pipelines = (*interceptor.pipelines, self)
        self.invalidate()
        return interceptor

    def remove(self, interceptor: Interceptor) -> bool:
        """Take ``interceptor`` out of the chain; whether it was in it."""
        kept = tuple(i for i in self._interceptors if i is not interceptor)
        found = len(kept) != len(self._interceptors)
        self._interceptors = kept
        interceptor.pipelines = tuple(p for p in interceptor.pipelines if p is not self)
        self.invalidate()
        return found

    def find(self, kind: type[Interceptor]) -> Interceptor | None:
        """The first interceptor of class ``kind`` in the chain."""
        return next((i for i in self._interceptors if isinstance(i, kind)), None)

    def invalidate(self) -> None:
        """Forget what the interceptors said about each kind (see :meth:`Interceptor.changed`)."""
        self._templates = {}

    def _template(self, kind: OperationKind) -> tuple[tuple[Interceptor, bool | None], ...]:
        template = self._templates.get(kind)
        if template is None:
            template = tuple((i.for_kind(kind), w) for i in self._interceptors if (w := i.wants_kind(kind)) is not False)
            self._templates[kind] = template
        return template

    def watches(self, kind: OperationKind) -> bool:
        """Whether any interceptor may want an operation of ``kind`` now. When not, a caller may
        do the work without building an operation at all (the cheapest path)."""
        template = self._templates.get(kind)
        return bool(template if template is not None else self._template(kind))

    def chain(self, op: Operation) -> list[Interceptor]:
        """The interceptors that want ``op``, outer to inner."""
        return [i for i, w in self._template(op.kind) if w or i.wants(op)]

    # -- running --------------------------------------------------------------------------------
    def run(self, op: Operation, handler: Callable[[Operation], Any]) -> Any:
        """Run ``op`` synchronously: ``handler(op)`` wrapped by the chain; its result as the
        interceptors let it stand."""
        chain, decided = self._plan(op)
        if decided:
            return _run_to_end(self._flow(op, chain, handler, True))
        if chain:
            _enter(chain, op)
        try:
            result = handler(op)
        except BaseException as exc:
            _raise_failure(chain, op, exc)
        for interceptor in chain:  # notified in chain order (in line: this runs per operation)
            if interceptor.has_notifications:
                interceptor.finished(op, result)
        return result

    async def arun(self, op: Operation, handler: Callable[[Operation], Any]) -> Any:
        """Run ``op`` from async code; ``handler(op)`` may return an awaitable."""
        chain, decided = self._plan(op)
        if decided:
            return await _drive_async(self._flow(op, chain, handler, False), op, handler)
        if chain:
            _enter(chain, op)
        try:
            result = handler(op)
            if type(result) is _COROUTINE or inspect.isawaitable(result):
                result = await result
        except BaseException as exc:
            if not isinstance(exc, Exception) or not _awaits_notifications(chain):
                _raise_failure(chain, op, exc)
            failure = await _aobserved_failure(chain, op, exc)
            if failure is exc:
                raise
            raise failure from exc
        for interceptor in chain:  # notified in chain order; async notifications awaited
            if interceptor.has_async_notifications:
                await interceptor.afinished(op, result)
            elif interceptor.has_notifications:
                interceptor.finished(op, result)
        return result

    def _plan(self, op: Operation) -> tuple[list[Interceptor], bool]:
        """The chain for ``op`` and whether anything in it decides (then the flow runs; else the
        handler runs between the guards and observers: the fast path)."""
        template = self._templates.get(op.kind)
        if template is None:
            template = self._template(op.kind)
        chain: list[Interceptor] = []
        decided = False
        for interceptor, wanted in template:  # a loop, not a comprehension: this runs per operation
            if wanted or interceptor.wants(op):
                chain.append(interceptor)
                decided = decided or interceptor.decides
        return chain, decided

    def run_before(self, op: Operation) -> tuple[Any] | None:
        """The before-stage alone, for a kind that ``defers_before``: called by its handler
        once the payload is known. None to go on; ``(result,)`` when a decision replaced the
        operation (the handler returns that result without doing the work); raises when an
        interceptor cancelled or rejected it."""
        chain = self.chain(op)
        if not chain:
            return None
        return _run_to_end(self._flow(op, chain, None, True, before_only=True))

    def reject(self, op: Operation, error: AikitError) -> Any:
        """Report ``op`` as rejected before it could run (invalid arguments, say): the chain's
        ``error`` stage may replace the result (a retry is not honoured); else ``error`` is raised."""
        chain = self.chain(op)
        if not chain:
            raise error
        return _run_to_end(self._rejected(op, chain, error, True))

    async def areject(self, op: Operation, error: AikitError) -> Any:
        """:meth:`reject` for async callers."""
        chain = self.chain(op)
        if not chain:
            raise error
        return await _drive_async(self._rejected(op, chain, error, False), op, _no_handler)

    # -- the flow, written once -------------------------------------------------------------------
    def _flow(self, op: Operation, chain: Sequence[Interceptor], handler: Callable[[Operation], Any] | None,
              sync: bool, before_only: bool = False) -> Flow:
        """The flow of one operation. ``sync``: every call is made right here and the generator
        never yields (it runs to its end in one step); otherwise each call is yielded for the
        async driver to await. ``before_only`` (:meth:`run_before`): the before-stage alone, which
        gives None to go on or ``(result,)`` when the operation must not run."""
        kind = op.kind
        if before_only or not kind.defers_before:
            for position, interceptor in enumerate(chain):
                if not interceptor.has_before:
                    continue
                try:
                    decision = interceptor.before(op) if sync else (yield (interceptor, "before", (op,)))
                except Exception as exc:  # a rejection (budget, policy, an invalid modification)
                    op.meta[_DECIDED] = True
                    value = yield from self._rejected(op, chain[:position], error_from_exception(exc), sync, exc)
                    return (value,) if before_only else value
                if decision is None or decision.action == "continue":
                    continue
                if decision.action == "cancel":
                    reason = decision.reason or "no reason given"
                    error = Cancelled(f"{op.describe()} cancelled by a hook: {reason}",
                                      details={**kind.event_fields(op), "reason": reason})
                    yield from _failed_flow(chain, op, error, sync)
                    op.meta[_DECIDED] = True
                    raise error
                if decision.action == "replace":
                    value = kind.replaced(op, decision.value)
                    return (value,) if before_only else value
            if before_only:
                return None
        retries = 0
        while True:
            op.started = time.perf_counter()
            for interceptor in chain:
                if interceptor.has_started:
                    interceptor.started(op)
            try:
                result = handler(op) if sync else (yield _INVOKE)  # type: ignore[misc]
            except Exception as exc:
                if op.meta.pop(_DECIDED, False):  # a deferred before-stage cancelled or rejected it
                    raise exc
                error = error_from_exception(exc)
                yield from _failed_flow(chain, op, error, sync)
                retryable = not isinstance(error, InvalidArgument)
                decision = None
                for interceptor in reversed(chain):  # inner to outer; the first real decision ends it
                    if not interceptor.has_error:
                        continue
                    decision = (interceptor.error(op, error, retryable) if sync
                                else (yield (interceptor, "error", (op, error, retryable))))
                    if decision is not None and decision.action != "continue":
                        break
                if decision is not None and decision.action == "retry" and retryable:
                    if retries < MAX_RETRIES:
                        retries += 1
                        yield from _pause(op, decision, sync)
                        continue
                    _refuse_retry(op)
                    error.details.setdefault("hook_retries", MAX_RETRIES)
                if decision is not None and decision.action == "replace":
                    return kind.replaced(op, decision.value)
                if error is exc or not kind.converts_errors:
                    raise exc
                raise error from exc
            except BaseException:  # interrupted or cancelled: observers learn of it, nobody decides
                _notify_failed(chain, op, AikitError(f"{op.describe()} was interrupted", code="interrupted"))
                raise
            decision = None
            for interceptor in reversed(chain):  # inner to outer; the first real decision ends it
                if not interceptor.has_after:
                    continue
                decision = interceptor.after(op, result) if sync else (yield (interceptor, "after", (op, result)))
                if decision is not None and decision.action != "continue":
                    break
            if decision is not None:
                if decision.action == "retry":
                    if retries < MAX_RETRIES:
                        retries += 1
                        yield from _pause(op, decision, sync)
                        continue
                    _refuse_retry(op)
                elif decision.action == "cancel":
                    reason = decision.reason or "no reason given"
                    error = Cancelled(f"the result of {op.describe()} was rejected by a hook: {reason}",
                                      details={**kind.event_fields(op), "reason": reason})
                    yield from _failed_flow(chain, op, error, sync)
                    raise error
                elif decision.action == "replace":
                    result = kind.replaced(op, decision.value)
            for interceptor in chain:
                if not interceptor.has_notifications:
                    continue
                if sync or not interceptor.has_async_notifications:
                    interceptor.finished(op, result)
                else:
                    yield (interceptor, "finished", (op, result))
            return result

    def _rejected(self, op: Operation, outer: Sequence[Interceptor], error: AikitError, sync: bool,
                  original: BaseException | None = None) -> Flow:
        """The error stage of ``outer`` for an operation that never ran; a replacement or a raise."""
        yield from _failed_flow(outer, op, error, sync)
        decision = None
        for interceptor in reversed(outer):
            if not interceptor.has_error:
                continue
            decision = interceptor.error(op, error, False) if sync else (yield (interceptor, "error", (op, error, False)))
            if decision is not None and decision.action != "continue":
                break
        if decision is not None and decision.action == "replace":
            return op.kind.replaced(op, decision.value)
        if original is None or original is error:
            raise error
        raise error from original


def _pause(op: Operation, decision: Decision, sync: bool) -> Flow:
    op.attempt += 1
    if decision.delay > 0:
        if sync:
            time.sleep(decision.delay)
        else:
            yield float(decision.delay)


def _refuse_retry(op: Operation) -> None:
    log.warning("%s: another retry was asked for after %d; the last outcome stands", op.describe(), MAX_RETRIES)


def _enter(chain: Sequence[Interceptor], op: Operation) -> None:
    """Guards, then observers, of a chain where nobody decides (a guard may only reject)."""
    for position, interceptor in enumerate(chain):
        if not interceptor.has_before:
            continue
        try:
            interceptor.before(op)
        except Exception as exc:
            error = error_from_exception(exc)
            _notify_failed(chain[:position], op, error)
            if error is exc:
                raise
            raise error from exc
    op.started = time.perf_counter()  # _started's, inlined: this runs per operation
    for interceptor in chain:
        if interceptor.has_started:
            interceptor.started(op)


def _raise_failure(chain: Sequence[Interceptor], op: Operation, exc: BaseException) -> NoReturn:
    """Tell the observers of a failed handler and raise what the caller gets (as the flow does)."""
    failure = _observed_failure(chain, op, exc)
    if failure is exc:
        raise exc
    raise failure from exc


def _observed_failure(chain: Sequence[Interceptor], op: Operation, exc: BaseException) -> BaseException:
    """Tell the observers of a failed handler; the exception the caller gets (as in the flow)."""
    if not isinstance(exc, Exception):
        _notify_failed(chain, op, AikitError(f"{op.describe()} was interrupted", code="interrupted"))
        return exc
    error = error_from_exception(exc)
    _notify_failed(chain, op, error)
    return exc if not op.kind.converts_errors else error


def _awaits_notifications(chain: Sequence[Interceptor]) -> bool:
    """Whether an interceptor of ``chain`` has notifications an async caller must await."""
    for interceptor in chain:  # noqa: SIM110 - a loop, not any(generator): this runs per operation
        if interceptor.has_async_notifications:
            return True
    return False


async def _aobserved_failure(chain: Sequence[Interceptor], op: Operation, exc: Exception) -> BaseException:
    """:func:`_observed_failure` awaiting the async notifications (``exc`` is not an interruption)."""
    error = error_from_exception(exc)
    for interceptor in chain:
        try:
            if interceptor.has_async_notifications:
                await interceptor.afailed(op, error)
            else:
                interceptor.failed(op, error)
        except Exception:
            log.exception("interceptor %s failed while being told of a failure", interceptor.name)
    return exc if not op.kind.converts_errors else error


def _failed_flow(chain: Sequence[Interceptor], op: Operation, error: AikitError, sync: bool) -> Flow:
    """Tell the chain of a failure within the flow: async notifications are yielded to be awaited."""
    for interceptor in chain:
        try:
            if sync or not interceptor.has_async_notifications:
                interceptor.failed(op, error)
            else:
                yield (interceptor, "failed", (op, error))
        except Exception:
            log.exception("interceptor %s failed while being told of a failure", interceptor.name)


def _notify_failed(chain: Sequence[Interceptor], op: Operation, error: AikitError) -> None:
    for interceptor in chain:
        try:
            interceptor.failed(op, error)
        except Exception:
            log.exception("interceptor %s failed while being told of a failure", interceptor.name)


def _no_handler(op: Operation) -> Any:
    raise AssertionError("a rejected operation has no handler to run")


# -- the drivers: a synchronous flow makes its own calls; an async one yields them to be awaited ---------------------
def _run_to_end(flow: Flow) -> Any:
    """Run a synchronous flow (one that makes its calls itself and never yields) to its result."""
    try:
        flow.send(None)
    except StopIteration as stop:
        return stop.value
    raise AssertionError("a synchronous flow yielded")


async def _drive_async(flow: Flow, op: Operation, handler: Callable[[Operation], Any]) -> Any:
    value: Any = None
    failure: BaseException | None = None
    while True:
        try:
            effect = flow.send(value) if failure is None else flow.throw(failure)
        except StopIteration as stop:
            return stop.value
        value, failure = None, None
        try:
            if effect is _INVOKE:
                value = handler(op)
                if type(value) is _COROUTINE or inspect.isawaitable(value):
                    value = await value
            elif type(effect) is tuple:
                value = await getattr(effect[0], _ASYNC[effect[1]])(*effect[2])
            else:
                await asyncio.sleep(effect)
        except BaseException as exc:
            failure = exc
