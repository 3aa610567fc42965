"""LLM providers: one internal message format, several wire formats, retries and fallbacks.

Public API: the message types (:mod:`.messages`), :class:`ProviderError` and the
:class:`Provider` protocol (:mod:`.base`).
"""

from __future__ import annotations

from .base import RETRYABLE, Provider, ProviderError, classify_status, parse_retry_after
from .messages import Completion, Message, Request, StreamEvent, ToolCall, ToolSpec, Usage

__all__ = [
    "RETRYABLE", "Completion", "Message", "Provider", "ProviderError", "Request", "StreamEvent", "ToolCall",
    "ToolSpec", "Usage", "classify_status", "parse_retry_after",
]
