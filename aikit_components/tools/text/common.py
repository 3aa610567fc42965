"""Limits shared by the text tools, the optional engines they use (``regex`` with timeouts,
``dateutil``), and the size check every tool applies to its inputs."""

from __future__ import annotations

import re

from ...errors import ResourceExhausted

try:  # a backtracking engine with a timeout: a catastrophic pattern cannot hang the caller
    import regex as re_engine

    HAS_TIMEOUT = True
except ImportError:  # pragma: no cover - fall back to re with a smaller text cap
    re_engine = re  # type: ignore[assignment]
    HAS_TIMEOUT = False

try:  # free-form dates ("May 1, 2024 3pm"); ISO 8601, RFC 2822 and explicit formats work without it
    from dateutil import parser as dateutil_parser
except ImportError:  # pragma: no cover
    dateutil_parser = None

MAX_TEXT = 10_000_000  # characters, for linear-time tools (hash, base64, stats)
MAX_REGEX_TEXT = 1_000_000 if HAS_TIMEOUT else 100_000
MAX_PATTERN = 10_000
REGEX_TIMEOUT_S = 2.0
MAX_MATCHES = 100_000
MAX_DIFF_TEXT = 2_000_000
MAX_NDIFF_LINES = 5_000
MAX_TEMPLATE = 1_000_000
MAX_TEMPLATE_OUTPUT = 5_000_000
MAX_TEMPLATE_VALUE = 10_000_000  # characters/items of any one value a template makes
MAX_TEMPLATE_WIDTH = 100_000  # width-like integer arguments (center, ljust, indent, format widths, ...)
MAX_TEMPLATE_RANGE = 1_000_000  # items of one range()
TEMPLATE_TIMEOUT_S = 5.0
MAX_EXPRESSION = 10_000
MAX_INT_BITS = 14_000  # about 4200 decimal digits: stays printable (Python refuses str() past 4300)
MAX_EXPONENT = 10_000


def check_length(value: str, limit: int, what: str) -> None:
    """Refuse ``value`` (a :class:`ResourceExhausted` naming ``what``) when it is over ``limit`` characters."""
    if len(value) > limit:
        raise ResourceExhausted(f"{what} is {len(value):,} characters, over the {limit:,} limit; give a shorter one",
                                details={"limit": limit, "size": len(value)})
