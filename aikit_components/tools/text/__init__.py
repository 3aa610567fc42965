"""Text tools: templates, regular expressions, diffs, hashes, base64, UUIDs, dates and times, a safe
calculator and text statistics.

All are plain functions (pure computation, run in the caller's thread), so each one bounds its own
work: inputs have size caps, regular expressions run with a timeout (the ``regex`` module) so a
catastrophic pattern cannot hang the kernel, templates render in Jinja's immutable sandbox with
size and loop budgets, and the calculator evaluates a whitelisted ``ast`` itself (never ``eval``) with caps
on exponents and integer sizes.


Modules: ``common`` (limits, engines), ``templates``, ``regex_tools``, ``codecs``, ``datetimes``,
``calculator``, ``stats``.
"""

from __future__ import annotations

from ..base import Tool
from .calculator import calculate
from .codecs import base64_decode, base64_encode, hash_text, text_diff, uuid_tool
from .datetimes import datetime_add, datetime_diff, datetime_now, datetime_parse
from .regex_tools import regex_tool
from .stats import text_stats
from .templates import render_template

TOOLS: list[Tool] = [
    render_template, regex_tool, text_diff, hash_text, base64_encode, base64_decode, uuid_tool,
    datetime_now, datetime_parse, datetime_add, datetime_diff, calculate, text_stats,
]

__all__ = ["TOOLS"]
