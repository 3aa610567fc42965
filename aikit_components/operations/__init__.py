"""One pipeline for every operation a user would want to see, bound or intercept.

An operation (:class:`Operation`: kind, name, payload, attempt) is run by
:meth:`Pipeline.run` (synchronous callers) or :meth:`Pipeline.arun` (async callers) through an
ordered chain of :class:`Interceptor` s around its handler, in the manner of Temporal's
interceptors or ASGI middleware. The flow (stages, the retry bound, cancel/replace/modify,
notifications) is written once; see :mod:`aikit_components.operations.pipeline`.

Kinds (:class:`OperationKind`) are defined by the modules that own the operations
(``tools.registry.TOOL_CALL``, ``state.STATE_WRITE``, ``rag.collection.RAG_INGEST`` and
``RAG_SEARCH``, ``tools.system.PROCESS``, ``operations.http.HTTP_REQUEST``, ...): their hook points,
the decisions each point honours, their event topics and payloads.

The chain, outer to inner (``Interceptor.order``; see :mod:`.interceptor` for the numbers):
tracing, events, audit, hooks, approval, policy (budgets), effect journal. Add one with
:meth:`Pipeline.add`. The standard interceptors are in :mod:`.standard`.
"""

from .interceptor import APPROVAL, AUDIT, EVENTS, HOOKS, JOURNAL, POLICY, TRACING, Interceptor
from .operation import CONTINUE, MAX_RETRIES, Decision, Operation, OperationKind, honours
from .pipeline import Pipeline

__all__ = [
    "APPROVAL", "AUDIT", "CONTINUE", "EVENTS", "HOOKS", "JOURNAL", "MAX_RETRIES", "POLICY", "TRACING",
    "Decision", "Interceptor", "Operation", "OperationKind", "Pipeline", "honours",
]
