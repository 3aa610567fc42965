"""Metrics through the OpenTelemetry metrics API (only when something reads them: OTLP or the
Prometheus endpoint of ``aikit serve --metrics-port``):

- ``gen_ai.client.token.usage`` (histogram, ``{token}``; ``gen_ai.token.type`` input/output),
- ``gen_ai.client.operation.duration`` (histogram, s) for model calls,
- ``aikit.tool.duration`` / ``aikit.workflow.step.duration`` (histograms, s) and
  ``aikit.operation.failures`` (counter, by ``aikit.operation.kind`` and ``error.type``),
- ``aikit.budget.tool_calls`` (counter): tool calls charged to a budget.
"""

from __future__ import annotations

from typing import Any

from ..operations import Operation
from .semconv import llm_provider

__all__ = ["Metrics"]


class Metrics:
    """The instruments of one meter, recorded from the tracing interceptor."""

    def __init__(self, meter: Any) -> None:
        self.tokens = meter.create_histogram("gen_ai.client.token.usage", unit="{token}",
                                             description="Tokens used by model calls")
        self.duration = meter.create_histogram("gen_ai.client.operation.duration", unit="s",
                                               description="Duration of model calls")
        self.tool_duration = meter.create_histogram("aikit.tool.duration", unit="s", description="Duration of tool calls")
        self.step_duration = meter.create_histogram("aikit.workflow.step.duration", unit="s",
                                                    description="Duration of workflow steps")
        self.failures = meter.create_counter("aikit.operation.failures", unit="{operation}",
                                             description="Operations that failed, by kind and error type")
        self.budget = meter.create_counter("aikit.budget.tool_calls", unit="{call}",
                                           description="Tool calls charged to a budget")

    def operation(self, op: Operation, span: Any, error: Any) -> None:
        """Record one ended operation (its span gives the duration)."""
        start, end = getattr(span, "start_time", None), getattr(span, "end_time", None)
        seconds = (end - start) / 1e9 if start and end else 0.0
        kind = op.kind.name
        if error is not None:
            self.failures.add(1, {"aikit.operation.kind": kind, "error.type": error.code or "error"})
        if kind == "llm":
            attrs = span.attributes or {}
            base = {"gen_ai.operation.name": "chat", "gen_ai.provider.name": llm_provider(op.name),
                    "gen_ai.request.model": op.name}
            if error is not None:
                base["error.type"] = error.code
            self.duration.record(seconds, base)
            for name, kind_ in (("gen_ai.usage.input_tokens", "input"), ("gen_ai.usage.output_tokens", "output")):
                if name in attrs:
                    self.tokens.record(int(attrs[name]), {**base, "gen_ai.token.type": kind_})
        elif kind == "tool":
            self.tool_duration.record(seconds, {"gen_ai.tool.name": op.name, "error.type": error.code if error else ""})
            budget = getattr(op.context, "budget", None)
            if budget is not None and getattr(budget, "max_tool_calls", None) is not None:
                self.budget.add(1, {"aikit.caller": str(getattr(op.context, "caller", ""))})
        elif kind == "workflow.step":
            self.step_duration.record(seconds, {"aikit.workflow.step": op.name,
                                                "error.type": error.code if error else ""})
