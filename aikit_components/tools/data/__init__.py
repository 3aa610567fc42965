"""Data tools: JSON, YAML, TOML and XML in and out, JSONPath queries, JSON Schema validation, and
CSV profiling, filtering, conversion and cleaning.

Parsers take their input inline (``text``) or from a file (``path``, checked against the security
policy): exactly one of the two. Those tools are ``async`` so that file reads and big inputs stay
off the caller's thread (inputs above ``OFFLOAD_CHARS`` are parsed in a worker thread). Writers,
queries and validation work on values already in memory and are plain functions.

Results are JSON-like (dicts, lists, strings, numbers, booleans, None): YAML and TOML dates become
ISO 8601 strings, YAML binary becomes base64 text. A parse error is an ``InvalidArgument`` carrying
the line and column (``details["line"]``, ``details["column"]``) and an excerpt of the bad line.


Modules: ``common`` (shared helpers and limits), ``json_tools``, ``yaml_toml``, ``xml_tools``,
``schema_tools``, ``csv_table`` (the table and its operations), ``csv_tools``.
"""

from __future__ import annotations

from ..base import Tool
from .csv_tools import csv_convert, csv_filter, csv_process, csv_profile
from .json_tools import json_query, parse_json, to_json
from .schema_tools import validate_schema
from .xml_tools import parse_xml
from .yaml_toml import parse_toml, parse_yaml, to_toml, to_yaml

TOOLS: list[Tool] = [
    parse_json, to_json, json_query, parse_yaml, to_yaml, parse_toml, to_toml, parse_xml, validate_schema,
    csv_profile, csv_filter, csv_convert, csv_process,
]

__all__ = ["TOOLS"]
