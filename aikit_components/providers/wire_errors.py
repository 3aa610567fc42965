"""Provider errors from HTTP responses and stream error events: the kind (from the status, refined
by the body's error type), and a message that quotes the provider's own words and says what to do
(which key to set, what to fix, whether a fallback model may help).
"""

from __future__ import annotations

import json
from typing import Any

import httpx

from .base import ProviderError, classify_status, parse_retry_after

__all__ = [
    "BODY_LIMIT", "QUOTE_LIMIT", "error_from_body", "not_streaming_error", "quote_text", "retry_after_of", "with_attempts",
]

QUOTE_LIMIT = 500
BODY_LIMIT = 2000


def not_streaming_error(name: str, base_url: str) -> ProviderError:
    """A stream request answered without a single stream event (the server ignored ``stream``)."""
    return ProviderError(f"{name} answered a streaming request without any stream events; check that {base_url} "
                         "supports streaming for this API, or use complete() instead", kind="bad_response",
                         provider=name)


def quote_text(text: str, limit: int = QUOTE_LIMIT) -> str:
    """``text`` on one line, in double quotes, cut after ``limit`` characters (for error messages)."""
    text = " ".join(str(text).split())
    return '"' + (text if len(text) <= limit else text[:limit] + "...") + '"'


#: Error ``type`` values in bodies (Anthropic's, OpenAI's codes) that decide the kind by themselves.
_TYPE_KINDS = {
    "overloaded_error": "overloaded",
    "rate_limit_error": "rate_limit",
    "rate_limit_exceeded": "rate_limit",
    "insufficient_quota": "rate_limit",
    "authentication_error": "auth",
    "permission_error": "auth",
    "invalid_api_key": "auth",
    "api_error": "server",
    "server_error": "server",
    "timeout_error": "timeout",
    "invalid_request_error": "bad_request",
    "not_found_error": "bad_request",
    "request_too_large": "bad_request",
}


def _provider_message(body: Any) -> tuple[str, str | None]:
    """The provider's own error message and error type/code from a decoded error body."""
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict):
            message = error.get("message") or error.get("msg") or ""
            etype = error.get("type") or error.get("code")
            code = error.get("code")
            if isinstance(code, str) and code in _TYPE_KINDS:  # OpenAI: type "tokens", code "rate_limit_exceeded"
                etype = code
            return str(message or json.dumps(error, ensure_ascii=False)), (str(etype) if etype else None)
        if isinstance(error, str):
            return error, None
        for key in ("message", "detail", "msg"):
            if body.get(key):
                detail = body[key]
                return (detail if isinstance(detail, str) else json.dumps(detail, ensure_ascii=False)), body.get("type")
    if isinstance(body, list) and body:
        return _provider_message(body[0])
    return "", None


def error_from_body(name: str, body: Any, *, status: int | None = None, url: str = "",
                    retry_after: float | None = None, has_key: bool = True,
                    request_id: str | None = None, raw: str = "") -> ProviderError:
    """A :class:`ProviderError` from an error body (an HTTP error response, or an error event in
    a stream when ``status`` is None), with a message that quotes the provider and says what to do."""
    message, etype = _provider_message(body)
    text = raw or (json.dumps(body, ensure_ascii=False) if body is not None else "")
    if not message:
        message = text.strip() or (f"HTTP {status}" if status else "unknown error")
    if status is not None:
        kind = classify_status(status, text)
        if etype in _TYPE_KINDS and kind in ("bad_request", "server"):
            refined = _TYPE_KINDS[etype]
            # an explicit type refines a generic status (e.g. 500 + overloaded_error), never downgrades
            if kind == "server" and refined in ("overloaded", "timeout") or kind == "bad_request" and refined == "auth":
                kind = refined
    else:
        kind = _TYPE_KINDS.get(etype or "", "server")
    where = f"HTTP {status}" if status is not None else "in the stream"
    quoted = quote_text(message)
    if kind == "auth":
        config = (f"config providers.{name}.api_key, or providers.{name}.api_key_env naming an environment "
                  "variable")
        if not has_key:
            text_out = (f"{name} requires an API key and none is set ({where}: {quoted}); "
                        f"set the API key for {name} ({config})")
        else:
            text_out = (f"{name} rejected the request ({where}: {quoted}); check the API key for {name} ({config})"
                        + ("; it may also lack access to this model" if status == 403 else ""))
    elif kind == "rate_limit":
        text_out = (f"{name} rate limit reached ({where}: {quoted}); wait, lower the request rate, "
                    "or configure a fallback model")
        if etype == "insufficient_quota":
            text_out = (f"{name} quota exhausted ({where}: {quoted}); check the plan and billing of the account, "
                        "or configure a fallback model")
    elif kind == "overloaded":
        text_out = f"{name} is overloaded ({where}: {quoted}); try again later or configure a fallback model"
    elif kind == "server":
        text_out = f"{name} had a server error ({where}: {quoted}); try again later or configure a fallback model"
    elif kind == "timeout":
        text_out = f"{name} timed out ({where}: {quoted}); try again, or raise timeout_s"
    elif kind == "content_filter":
        text_out = f"{name} refused the content ({where}: {quoted}); rephrase the request"
    elif status == 404:
        text_out = (f"{name} refused the request ({where}: {quoted}); check the model name and that base_url "
                    f"points at the API root" + (f" (requested {url})" if url else ""))
    else:
        text_out = f"{name} refused the request ({where}: {quoted}); fix the request as the message says"
    details: dict[str, Any] = {"provider_message": message}
    if etype:
        details["error_type"] = etype
    if url:
        details["url"] = url
    if not request_id and isinstance(body, dict) and isinstance(body.get("request_id"), str):
        request_id = body["request_id"]  # Anthropic repeats its request-id header in the body
    if request_id:
        details["request_id"] = request_id
    if text:
        details["body"] = text[:BODY_LIMIT]
    if etype == "insufficient_quota":
        details["no_retry"] = True
    return ProviderError(text_out, kind=kind, provider=name, status=status, retry_after=retry_after, details=details)


def with_attempts(exc: ProviderError, attempts: int, note: str = "") -> ProviderError:
    """The same error, its message telling how many attempts were made."""
    if attempts <= 1 and not note:
        return exc
    suffix = note or f" (gave up after {attempts} attempts)"
    details = {k: v for k, v in exc.details.items() if k not in ("kind", "provider", "status")}
    details["attempts"] = attempts
    new = ProviderError(exc.message + suffix, kind=exc.kind, provider=exc.provider, status=exc.status,
                        retry_after=exc.retry_after, details=details)
    new.__cause__ = exc.__cause__
    return new


def retry_after_of(headers: httpx.Headers) -> float | None:
    """The wait a response asks for, in seconds: ``retry-after-ms``, else ``Retry-After``; None if neither."""
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return max(0.0, float(ms) / 1000.0)
        except ValueError:
            pass
    return parse_retry_after(headers.get("retry-after"))
