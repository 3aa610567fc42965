"""Attacks on the text and data tools: template injection out of Jinja's sandbox, XML entity
expansion and external entities, YAML object tags and alias bombs, and regular expressions with
catastrophic backtracking wherever a user's pattern is matched (regex, grep, json_query's =~,
validate_schema's pattern). Each is refused or cut off with a clear error; a normal call works."""

from __future__ import annotations

from pathlib import Path

import pytest

from aikit_components.tools import ToolContext
from aikit_components.tools.data import TOOLS as DATA_TOOLS
from aikit_components.tools.filesystem import TOOLS as FS_TOOLS
from aikit_components.tools.text import TOOLS as TEXT_TOOLS

from .conftest import contained, make_caller

call = make_caller([*TEXT_TOOLS, *DATA_TOOLS, *FS_TOOLS])
EVIL = "(a|aa)+$"  # exponential backtracking, even for the regex engine
VICTIM = "a" * 40 + "!"


# ------------------------------------------------------------------ templates
@pytest.mark.parametrize("template", [
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ cycler.__init__.__globals__.os.popen('id').read() }}",
    "{{ self._TemplateReference__context }}",
    "{{ 'x'|attr('__class__') }}",
    "{{ '{0.__class__}'.format(1) }}",
    "{% set x = [].append %}{{ x(1) }}",
    "{{ dict.mro() }}",
])
def test_template_cannot_reach_python_internals(ctx: ToolContext, template: str) -> None:
    error = contained("permission_denied", call, ctx, "render_template", {"template": template},
                      says=["refused by the sandbox"])
    assert "unsafe" in error.message
    assert call(ctx, "render_template", {"template": "Hi {{ n }}", "variables": {"n": "Ada"}}) == "Hi Ada"


@pytest.mark.parametrize("template", ["{% include '/etc/passwd' %}", "{% import 'os' as os %}",
                                      "{% extends '/etc/passwd' %}"])
def test_template_cannot_load_files(ctx: ToolContext, template: str) -> None:
    contained("invalid_argument", call, ctx, "render_template", {"template": template}, says=["no loader"])
    assert call(ctx, "render_template", {"template": "{{ 1 + 1 }}"}) == "2"


@pytest.mark.parametrize("template", ["{% for x in range(10**9) %}{% endfor %}", "{{ 'a' * 10**10 }}"])
def test_template_resource_bombs_are_cut(ctx: ToolContext, template: str) -> None:
    contained("resource_exhausted", call, ctx, "render_template", {"template": template}, says=["too"],
              how=("make it smaller",))


# ------------------------------------------------------------------ XML
BILLION_LAUGHS = ('<?xml version="1.0"?><!DOCTYPE l [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;">'
                  '<!ENTITY c "&b;&b;&b;&b;&b;&b;">]><l>&c;</l>')
XXE_FILE = '<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]><r>&x;</r>'
XXE_PARAMETER = '<?xml version="1.0"?><!DOCTYPE r [<!ENTITY % p SYSTEM "file:///etc/passwd"> %p;]><r/>'


@pytest.mark.parametrize("xml", [BILLION_LAUGHS, XXE_FILE, XXE_PARAMETER])
def test_xml_entities_are_refused(ctx: ToolContext, xml: str) -> None:
    contained("invalid_argument", call, ctx, "parse_xml", {"text": xml}, says=["entity declarations are refused"])
    assert call(ctx, "parse_xml", {"text": "<r><a>1</a></r>"}) == {"r": {"a": "1"}}


def test_xml_external_dtd_and_xinclude_are_not_fetched(ctx: ToolContext) -> None:
    assert call(ctx, "parse_xml", {"text": '<?xml version="1.0"?><!DOCTYPE r SYSTEM "file:///etc/passwd"><r/>'}) \
        == {"r": None}
    xi = '<r xmlns:xi="http://www.w3.org/2001/XInclude"><xi:include href="/etc/passwd" parse="text"/></r>'
    assert "root:" not in str(call(ctx, "parse_xml", {"text": xi}))


# ------------------------------------------------------------------ YAML
@pytest.mark.parametrize("yaml", ["!!python/object/apply:os.system ['touch pwned']", "!!python/name:os.system",
                                  "a: !!python/object/new:subprocess.Popen [['touch', 'pwned']]"])
def test_yaml_object_tags_are_refused(ctx: ToolContext, workdir: Path, yaml: str) -> None:
    contained("invalid_argument", call, ctx, "parse_yaml", {"text": yaml}, says=["could not determine a constructor"])
    assert not (workdir / "pwned").exists()
    assert call(ctx, "parse_yaml", {"text": "a: 1"}) == {"a": 1}


def test_yaml_alias_bomb_is_cut(ctx: ToolContext) -> None:
    lines = ["a: &a ['x','x','x','x','x','x','x','x','x']"]
    for prev, name in zip("abcdefg", "bcdefgh"):
        lines.append(f"{name}: &{name} [{', '.join([f'*{prev}'] * 9)}]")
    contained("resource_exhausted", call, ctx, "parse_yaml", {"text": "\n".join(lines)}, says=["bomb"],
              how=("reduce the document",))


# ------------------------------------------------------------------ regular expressions
def test_regex_tool_cuts_catastrophic_backtracking(ctx: ToolContext) -> None:
    contained("timeout", call, ctx, "regex", {"pattern": EVIL, "text": VICTIM}, says=["ran longer than"],
              how=("avoid nested quantifiers",))
    assert call(ctx, "regex", {"pattern": r"\d+", "text": "a12"})["match"] == "12"


def test_grep_cuts_catastrophic_backtracking(ctx: ToolContext, workdir: Path) -> None:
    (workdir / "victim.txt").write_text(VICTIM + "\n")
    contained("timeout", call, ctx, "grep", {"pattern": EVIL, "path": "victim.txt"},
              says=["grep ran longer than its time budget"],
              how=("regex=false", "avoid nested quantifiers"))
    assert call(ctx, "grep", {"pattern": "a+!", "path": "victim.txt"})["count"] == 1


def test_json_query_regex_filter_cuts_catastrophic_backtracking(ctx: ToolContext) -> None:
    contained("timeout", call, ctx, "json_query", {"data": [{"a": VICTIM}], "query": f"$[?(@.a =~ '{EVIL}')]"},
              says=["=~ pattern"], how=("avoid nested quantifiers",))
    assert call(ctx, "json_query", {"data": [{"a": "xy"}, {"a": "z"}], "query": "$[?(@.a =~ 'x')].a"}) == ["xy"]


@pytest.mark.parametrize("schema", [{"type": "string", "pattern": EVIL},
                                    {"type": "object", "patternProperties": {EVIL: {}}}])
def test_validate_schema_pattern_cuts_catastrophic_backtracking(ctx: ToolContext, schema: dict) -> None:
    data = VICTIM if schema["type"] == "string" else {VICTIM: 1}
    contained("timeout", call, ctx, "validate_schema", {"data": data, "schema": schema}, says=["pattern"],
              how=("avoid nested quantifiers",))
    ok = call(ctx, "validate_schema", {"data": "abc", "schema": {"type": "string", "pattern": "^a"}})
    assert ok == {"valid": True, "errors": []}
