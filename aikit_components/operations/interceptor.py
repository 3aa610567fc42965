"""The interceptor protocol: what an interceptor can see and decide, and the standard order.

An interceptor implements any of the decision methods (``before``, ``after``, ``error``) and
the notifications (``started``, ``finished``, ``failed``); the defaults do nothing. Decisions
return ``None`` or a :class:`~aikit_components.operations.operation.Decision`; a decision method
may also raise an :class:`~aikit_components.errors.AikitError` to reject the operation (a
budget or a policy does). Interceptors that must wait (a hook written as ``async def``, a human's
approval) override the ``a``-prefixed twins, which async callers use; the defaults call the
plain methods. Likewise an interceptor whose notification blocks (a commit to disk) overrides
``afinished``/``afailed`` to do it without holding the event loop (in a thread, awaited: the
caller still gets its result only once the notification is done).

``order`` places an interceptor in the chain (lower is outer). The standard places:
"""

from __future__ import annotations

from typing import Any

from ..errors import AikitError
from .operation import Decision, Operation, OperationKind

# Outer to inner. Gaps leave room; an interceptor may pick any number.
TRACING = 100  # spans around everything (issue 13)
EVENTS = 200  # publishes <kind>.called / finished / failed
AUDIT = 300  # the audit ledger (issue 14)
HOOKS = 400  # users' hooks: cancel / modify / retry / replace
APPROVAL = 500  # a human's approval (issue 14)
POLICY = 600  # budgets and the security policy: raise to reject
JOURNAL = 700  # the effect journal, next to the handler (issue 14)


class Interceptor:
    """Base class: override what you need (see the module docstring)."""

    order: int = 1000
    name: str = "interceptor"
    # False for an interceptor that never returns a decision: it observes (notifications) or
    # guards (its ``before`` may raise to reject; its ``after``/``error`` do nothing). A chain
    # without deciders runs without the flow's machinery.
    decides: bool = True

    # Set for each subclass: whether it overrides each decision stage / any notification. The
    # pipeline calls only those (a call to a method that does nothing still costs a Python call).
    has_before: bool = False
    has_after: bool = False
    has_error: bool = False
    has_notifications: bool = False
    # Whether ``started`` is overridden (most observers only need the outcome): the pipeline
    # calls it only then. False wherever ``has_notifications`` is.
    has_started: bool = False
    # Whether ``afinished``/``afailed`` are overridden: async callers await them (in chain order,
    # as the plain ones), everyone else calls ``finished``/``failed``.
    has_async_notifications: bool = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.has_before = cls.before is not Interceptor.before or cls.abefore is not Interceptor.abefore
        cls.has_after = cls.after is not Interceptor.after or cls.aafter is not Interceptor.aafter
        cls.has_error = cls.error is not Interceptor.error or cls.aerror is not Interceptor.aerror
        cls.has_notifications = any(getattr(cls, name) is not getattr(Interceptor, name)
                                    for name in ("started", "finished", "failed", "afinished", "afailed"))
        cls.has_started = cls.started is not Interceptor.started
        cls.has_async_notifications = any(getattr(cls, name) is not getattr(Interceptor, name)
                                          for name in ("afinished", "afailed"))

    #: The pipelines this interceptor is in (set by :meth:`Pipeline.add`).
    pipelines: tuple[Any, ...] = ()

    def wants_kind(self, kind: OperationKind) -> bool | None:
        """Whether this interceptor wants every operation of ``kind`` (True), none (False), or
        decides per operation with :meth:`wants` (None, the default). The pipeline caches the
        answer per kind until :meth:`changed` is called."""
        return None

    def for_kind(self, kind: OperationKind) -> Interceptor:
        """The interceptor the pipeline puts in the chain of ``kind``'s operations (asked with
        :meth:`wants_kind`, cached alike): ``self`` by default. One may return a narrower copy
        whose ``has_before``/``has_after``/``has_error`` say which stages it needs for that kind,
        so the flow skips calls that would do nothing (the hooks interceptor does, per point)."""
        return self

    def wants(self, op: Operation) -> bool:
        """Whether this interceptor has anything to do for ``op`` (asked when :meth:`wants_kind`
        said None); when no interceptor wants an operation, its handler is called directly (the
        fast path). Must be cheap."""
        return True

    def changed(self) -> None:
        """Tell the pipelines this interceptor is in that its :meth:`wants_kind` answers may have
        changed (a hook was registered, an event subscribed)."""
        for pipeline in self.pipelines:
            pipeline.invalidate()

    # -- decisions (before: outer to inner; after and error: inner to outer) -------------------
    def before(self, op: Operation) -> Decision | None:
        return None

    def after(self, op: Operation, result: Any) -> Decision | None:
        return None

    def error(self, op: Operation, error: AikitError, retryable: bool) -> Decision | None:
        return None

    async def abefore(self, op: Operation) -> Decision | None:
        return self.before(op)

    async def aafter(self, op: Operation, result: Any) -> Decision | None:
        return self.after(op, result)

    async def aerror(self, op: Operation, error: AikitError, retryable: bool) -> Decision | None:
        return self.error(op, error, retryable)

    # -- notifications (every interceptor in the chain, in chain order) ------------------------
    def started(self, op: Operation) -> None:
        """An attempt is about to run the handler (``op.attempt``, ``op.started`` are set)."""

    def finished(self, op: Operation, result: Any) -> None:
        """An attempt succeeded and its result stands (not retried)."""

    def failed(self, op: Operation, error: AikitError) -> None:
        """The operation, or one attempt of it, failed (rejected, cancelled or raised)."""

    async def afinished(self, op: Operation, result: Any) -> None:
        """:meth:`finished` for async callers."""
        self.finished(op, result)

    async def afailed(self, op: Operation, error: AikitError) -> None:
        """:meth:`failed` for async callers (not for an interrupted operation: an interruption is
        told with :meth:`failed`, as the task is being cancelled)."""
        self.failed(op, error)
