"""Data tools through a real ToolRegistry: for every tool a success path and a bad-input path
(argument validation included), file inputs checked by the security policy, and the attacks a
parser must refuse (XML entity expansion and external entities, YAML object tags and alias bombs)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from aikit_components.tools import Tool, ToolRegistry
from aikit_components.tools.data import TOOLS
from aikit_components.tools.data.common import MAX_NODES
from tests.support.tools import ToolEnv as Env
from tests.support.tools import assert_documented


# ----------------------------------------------------------------------------- declarations
def test_tool_names_are_the_contract() -> None:
    assert [t.name for t in TOOLS] == [
        "parse_json", "to_json", "json_query", "parse_yaml", "to_yaml", "parse_toml", "to_toml", "parse_xml",
        "validate_schema", "csv_profile", "csv_filter", "csv_convert", "csv_process",
    ]


@pytest.mark.parametrize("item", TOOLS, ids=lambda t: t.name)
def test_declaration(item: Tool) -> None:
    assert item.category == "data"
    reads_files = "path" in item.parameters["properties"]
    assert item.security == ("read" if reads_files else "safe")
    assert item.is_async == reads_files and item.wants_ctx == reads_files
    assert_documented(item)


@pytest.mark.parametrize("item", TOOLS, ids=lambda t: t.name)
def test_examples_hold(env: Env, item: Tool) -> None:
    for example in item.examples:
        assert env.call(item.name, **example["args"]) == example["result"]


def test_load_builtins_finds_the_data_tools() -> None:
    registry = ToolRegistry().load_builtins()
    assert {t.name for t in TOOLS} <= {t.name for t in registry.list("data")}


def test_wrong_types_are_listed_together(env: Env) -> None:
    error = env.fails("invalid_argument", "to_json", data={"a": 1}, indent="2", sort_keys="yes", bogus=1)
    problems = error.details["problems"]
    assert len(problems) == 3
    assert any(p.startswith("indent: expected integer") for p in problems)
    assert any(p.startswith("sort_keys: expected boolean") for p in problems)
    assert any("bogus: unknown parameter" in p for p in problems)


# ----------------------------------------------------------------------------- text | path inputs
def test_text_or_path_exactly_one(env: Env) -> None:
    env.fails("invalid_argument", "parse_json", "exactly one", "neither")
    env.fails("invalid_argument", "parse_json", "exactly one", "`text` and `path`", text="1", path="a.json")


def test_path_inputs(env: Env) -> None:
    (env.root / "cfg.json").write_text('{"a": [1, 2]}', encoding="utf-8")
    assert env.call("parse_json", path="cfg.json") == {"a": [1, 2]}
    (env.root / "bom.json").write_bytes(b'\xef\xbb\xbf{"bom": true}')
    assert env.call("parse_json", path="bom.json") == {"bom": True}
    error = env.fails("not_found", "parse_json", "missing.json", path="missing.json")
    assert error.details["path"].endswith("missing.json")
    env.fails("permission_denied", "parse_json", "outside the allowed paths", path="/etc/passwd")
    env.fails("permission_denied", "parse_yaml", "outside the allowed paths", path="../escape.yaml")
    env.fails("invalid_argument", "parse_json", "directory", path=".")
    (env.root / "latin1.json").write_bytes(b'"caf\xe9"')
    env.fails("invalid_argument", "parse_json", "not UTF-8", path="latin1.json")


def test_path_parse_error_names_the_file(env: Env) -> None:
    (env.root / "bad.toml").write_text('a = 1\nb = "unterminated\n', encoding="utf-8")
    error = env.fails("invalid_argument", "parse_toml", "bad.toml", "line 2", path="bad.toml")
    assert error.details["line"] == 2


def test_size_cap(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("aikit_components.tools.data.common.MAX_INPUT_BYTES", 100)
    env.fails("resource_exhausted", "parse_json", "limit", text="[" + "1," * 100 + "1]")
    (env.root / "big.json").write_text("[" + "1," * 100 + "1]")
    env.fails("resource_exhausted", "parse_json", "big.json", path="big.json")


def test_large_input_is_parsed_off_the_loop(env: Env) -> None:
    rows = [{"i": i, "name": f"n{i}"} for i in range(30_000)]
    text = json.dumps(rows)
    assert len(text) > 256 * 1024
    assert env.call("parse_json", text=text)[-1] == {"i": 29_999, "name": "n29999"}


# ----------------------------------------------------------------------------- JSON
def test_parse_json(env: Env) -> None:
    assert env.call("parse_json", text='{"a": [1, 2.5, null, true], "é": "ü"}') == {"a": [1, 2.5, None, True], "é": "ü"}


def test_parse_json_error_has_line_and_column(env: Env) -> None:
    error = env.fails("invalid_argument", "parse_json", "line 2, column 13", text='{"a": 1,\n "b": [1, 2,, 3]}')
    assert (error.details["line"], error.details["column"]) == (2, 13)
    assert "^" in error.message  # an excerpt of the bad line with a caret
    env.fails("invalid_argument", "parse_json", "expected string", text=5)
    env.fails("invalid_argument", "parse_json", "nested", text="[" * 100_000)


def test_to_json(env: Env) -> None:
    assert env.call("to_json", data={"b": 1, "a": "é"}) == '{\n  "b": 1,\n  "a": "é"\n}'
    assert env.call("to_json", data=[1, {"z": 1, "a": 2}], indent=0, sort_keys=True) == '[1,{"a":2,"z":1}]'


def test_to_json_bad_input(env: Env) -> None:
    env.fails("invalid_argument", "to_json", "NaN", data={"x": float("nan")})
    env.fails("invalid_argument", "to_json", "indent", data=1, indent=99)
    env.fails("invalid_argument", "to_json", "data: required")


def test_json_query(env: Env) -> None:
    data = {"store": {"book": [{"title": "A", "price": 8}, {"title": "B", "price": 12}], "bike": {"price": 20}}}
    assert env.call("json_query", data=data, query="$.store.book[*].title") == ["A", "B"]
    assert sorted(env.call("json_query", data=data, query="$..price")) == [8, 12, 20]
    assert env.call("json_query", data=data, query="$.store.book[?(@.price > 10)].title") == ["B"]
    assert env.call("json_query", data=data, query="$.nothing") == []
    assert env.call("json_query", data=data, query="$.store.book[1].price", with_paths=True) == [
        {"path": "$.store.book[1].price", "value": 12}]


def test_json_query_bad_input(env: Env) -> None:
    error = env.fails("invalid_argument", "json_query", "invalid JSONPath", "$..price", data={}, query="$.a[")
    assert error.details["query"] == "$.a["
    env.fails("invalid_argument", "json_query", "query: expected string", data={}, query=3)


# ----------------------------------------------------------------------------- YAML
def test_parse_yaml(env: Env) -> None:
    text = "name: aikit\nwhen: 2024-05-01\nat: 2024-05-01T10:00:00Z\n1: one\nlist:\n  - a\n  - {b: 2}\n"
    assert env.call("parse_yaml", text=text) == {
        "name": "aikit", "when": "2024-05-01", "at": "2024-05-01T10:00:00+00:00", "1": "one", "list": ["a", {"b": 2}],
    }
    assert env.call("parse_yaml", text="a: 1\n---\na: 2\n", all_documents=True) == [{"a": 1}, {"a": 2}]


def test_parse_yaml_bad_input(env: Env) -> None:
    error = env.fails("invalid_argument", "parse_yaml", "line 2", text="a: [1, 2\nb: 3\n")
    assert error.details["line"] == 2 and error.details["column"] >= 1
    env.fails("invalid_argument", "parse_yaml", "all_documents=true", text="a: 1\n---\na: 2\n")
    env.fails("invalid_argument", "parse_yaml", "all_documents: expected boolean", text="a: 1", all_documents="yes")


def test_parse_yaml_refuses_object_tags(env: Env) -> None:
    env.fails("invalid_argument", "parse_yaml", "constructor", text='!!python/object/apply:os.system ["echo hacked"]')
    env.fails("invalid_argument", "parse_yaml", "constructor", text="x: !!python/name:os.system\n")


def test_parse_yaml_alias_bomb_and_cycles(env: Env) -> None:
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, 9):
        prev, cur = chr(96 + i), chr(97 + i)
        lines.append(f"{cur}: &{cur} [" + ",".join([f"*{prev}"] * 9) + "]")
    error = env.fails("resource_exhausted", "parse_yaml", "alias", text="\n".join(lines))
    assert error.details["max_nodes"] == MAX_NODES
    env.fails("invalid_argument", "parse_yaml", "contains itself", text="&a [*a]")


def test_to_yaml(env: Env) -> None:
    text = env.call("to_yaml", data={"b": [1, "two"], "a": {"é": True}})
    assert text == "b:\n- 1\n- two\na:\n  é: true\n"
    assert env.call("parse_yaml", text=text) == {"b": [1, "two"], "a": {"é": True}}
    assert env.call("to_yaml", data={"b": 1, "a": 2}, sort_keys=True) == "a: 2\nb: 1\n"


def test_to_yaml_bad_input(env: Env) -> None:
    env.fails("invalid_argument", "to_yaml", "cannot be written as YAML", data={"a": object()})
    env.fails("invalid_argument", "to_yaml", "sort_keys: expected boolean", data={}, sort_keys=1)


# ----------------------------------------------------------------------------- TOML
def test_parse_toml(env: Env) -> None:
    text = 'title = "x"\nwhen = 1979-05-27T07:32:00Z\n[server]\nports = [80, 443]\n[[users]]\nname = "a"\n'
    assert env.call("parse_toml", text=text) == {
        "title": "x", "when": "1979-05-27T07:32:00+00:00", "server": {"ports": [80, 443]}, "users": [{"name": "a"}],
    }


def test_parse_toml_bad_input(env: Env) -> None:
    error = env.fails("invalid_argument", "parse_toml", "line 2, column 5", text="a = 1\nb = \nc = 2\n")
    assert (error.details["line"], error.details["column"]) == (2, 5)
    env.fails("invalid_argument", "parse_toml", "invalid TOML", text="a = 1\na = 2\n")


def test_to_toml(env: Env) -> None:
    data = {"title": "x", "server": {"ports": [80, 443], "tls": True}}
    text = env.call("to_toml", data=data)
    assert env.call("parse_toml", text=text) == data


def test_to_toml_bad_input(env: Env) -> None:
    error = env.fails("invalid_argument", "to_toml", "no null", "server.host", data={"server": {"host": None}})
    assert error.details["paths"] == ["server.host"]
    env.fails("invalid_argument", "to_toml", "data: expected table (with named fields), got table (a list)", data=[1, 2])


# ----------------------------------------------------------------------------- XML
def test_parse_xml(env: Env) -> None:
    text = ('<?xml version="1.0" encoding="UTF-8"?><catalog><book id="1" lang="en"><title>Dune</title>'
            '<tag>sf</tag><tag>classic</tag></book><book id="2"><title>Émile</title><note>read <b>twice</b> soon</note>'
            '</book><empty/></catalog>')
    assert env.call("parse_xml", text=text) == {"catalog": {
        "book": [
            {"@id": "1", "@lang": "en", "title": "Dune", "tag": ["sf", "classic"]},
            {"@id": "2", "title": "Émile", "note": {"b": "twice", "#text": "read soon"}},
        ],
        "empty": None,
    }}
    ns = '<feed xmlns="http://www.w3.org/2005/Atom"><title>t</title></feed>'
    atom = "{http://www.w3.org/2005/Atom}"
    assert env.call("parse_xml", text=ns) == {f"{atom}feed": {f"{atom}title": "t"}}
    assert env.call("parse_xml", text=ns, strip_namespaces=True) == {"feed": {"title": "t"}}


def test_parse_xml_bad_input(env: Env) -> None:
    error = env.fails("invalid_argument", "parse_xml", "line 2", text="<a>\n<b>1</c></a>")
    assert error.details["line"] == 2 and error.details["column"] >= 1
    env.fails("invalid_argument", "parse_xml", "strip_namespaces: expected boolean", text="<a/>", strip_namespaces="no")


def test_parse_xml_refuses_billion_laughs(env: Env) -> None:
    bomb = ('<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
            + "".join(f'<!ENTITY lol{i} "{("&lol" + (str(i - 1) if i > 1 else "") + ";") * 10}">' for i in range(1, 10))
            + ']><lolz>&lol9;</lolz>')
    error = env.fails("invalid_argument", "parse_xml", "entit", "billion laughs", text=bomb)
    assert error.details["rule"] == "xml_entities"


def test_parse_xml_refuses_external_entities(env: Env) -> None:
    (env.root / "secret.txt").write_text("top secret")
    xxe = f'<?xml version="1.0"?><!DOCTYPE d [<!ENTITY x SYSTEM "file://{env.root}/secret.txt">]><d>&x;</d>'
    error = env.fails("invalid_argument", "parse_xml", "entit", text=xxe)
    assert "top secret" not in error.message


# ----------------------------------------------------------------------------- JSON Schema
SCHEMA = {
    "type": "object",
    "required": ["name", "age", "email"],
    "properties": {
        "name": {"type": "string", "minLength": 1},
        "age": {"type": "integer", "minimum": 0},
        "email": {"type": "string", "format": "email"},
        "tags": {"type": "array", "items": {"type": "string"}},
    },
    "additionalProperties": False,
}


def test_validate_schema_valid(env: Env) -> None:
    data = {"name": "Ada", "age": 36, "email": "ada@example.org", "tags": ["math"]}
    assert env.call("validate_schema", data=data, schema=SCHEMA) == {"valid": True, "errors": []}


def test_validate_schema_lists_every_error(env: Env) -> None:
    result = env.call("validate_schema", data={"name": "", "age": -1, "tags": ["ok", 3], "extra": 1}, schema=SCHEMA)
    assert result["valid"] is False
    by_path = {(e["path"], e["keyword"]) for e in result["errors"]}
    assert by_path == {("$", "required"), ("$", "additionalProperties"), ("$.name", "minLength"),
                       ("$.age", "minimum"), ("$.tags[1]", "type")}
    assert all(e["message"] for e in result["errors"])
    result = env.call("validate_schema", data={"name": "a", "age": 1, "email": "nope"}, schema=SCHEMA)
    assert [(e["path"], e["keyword"]) for e in result["errors"]] == [("$.email", "format")]


def test_validate_schema_bad_schema(env: Env) -> None:
    error = env.fails("invalid_argument", "validate_schema", "schema itself is invalid", data=1, schema={"type": "nope"})
    assert error.details["schema_path"] == "type"
    env.fails("invalid_argument", "validate_schema", "only references inside the schema", data=1,
              schema={"$ref": "http://example.invalid/schema.json"})
    env.fails("invalid_argument", "validate_schema", "schema: expected table (with named fields)", data=1, schema="{}")


# ----------------------------------------------------------------------------- CSV
PEOPLE = "name,age,city,joined\nAda,36,London,2020-01-05\nAlan,41,Wilmslow,2019-03-01\nGrace,85,,2021-07-30\n"


def test_csv_profile(env: Env) -> None:
    result = env.call("csv_profile", text=PEOPLE)
    assert (result["row_count"], result["column_count"], result["delimiter"]) == (3, 4, ",")
    cols = {c["name"]: c for c in result["columns"]}
    assert cols["age"]["type"] == "integer"
    assert (cols["age"]["min"], cols["age"]["max"], cols["age"]["mean"]) == (36, 85, 54.0)
    assert cols["age"]["non_null"] == 3 and cols["age"]["distinct"] == 3
    assert cols["city"]["type"] == "string" and cols["city"]["nulls"] == 1 and cols["city"]["non_null"] == 2
    assert cols["joined"]["type"] == "date" and cols["joined"]["min"] == "2019-03-01"
    assert cols["name"]["samples"] == ["Ada", "Alan", "Grace"]


def test_csv_profile_detects_delimiters_and_keeps_leading_zeros(env: Env) -> None:
    result = env.call("csv_profile", text="zip;score;ok\n00501;1.5;true\n02134;2;false\n")
    assert result["delimiter"] == ";"
    cols = {c["name"]: c for c in result["columns"]}
    assert cols["zip"]["type"] == "string" and cols["zip"]["samples"] == ["00501", "02134"]
    assert cols["score"]["type"] == "number" and cols["score"]["mean"] == 1.75
    assert cols["ok"]["type"] == "boolean"
    tsv = env.call("csv_profile", text="a\tb\n1\t2\n", delimiter="tab")
    assert tsv["column_count"] == 2


def test_csv_profile_from_path(env: Env) -> None:
    (env.root / "people.csv").write_text(PEOPLE)
    assert env.call("csv_profile", path="people.csv")["row_count"] == 3


def test_csv_profile_bad_input(env: Env) -> None:
    error = env.fails("invalid_argument", "csv_profile", "line 2", text='a,b\n"1,2\n')
    assert error.details["line"] == 2
    env.fails("invalid_argument", "csv_profile", "delimiter must be one character", text="a,b\n", delimiter="::")
    env.fails("invalid_argument", "csv_profile", "header: expected boolean", text="a\n", header="no")


def test_csv_filter(env: Env) -> None:
    result = env.call("csv_filter", text=PEOPLE, where={"age": {"gt": 40}}, columns=["name", "age"])
    assert result == {"columns": ["name", "age"], "rows": [{"name": "Alan", "age": 41}, {"name": "Grace", "age": 85}],
                      "count": 2, "matched": 2}
    assert env.call("csv_filter", text=PEOPLE, where={"city": "London"})["rows"][0]["name"] == "Ada"

    def names(where: dict[str, Any]) -> list[str]:
        return [r["name"] for r in env.call("csv_filter", text=PEOPLE, where=where)["rows"]]

    assert names({"name": {"in": ["Ada", "Grace"]}}) == ["Ada", "Grace"]
    assert names({"name": {"contains": "la"}}) == ["Alan"]
    assert names({"joined": {"ge": "2020-01-01", "lt": "2021-01-01"}}) == ["Ada"]
    assert names({"age": {"<=": "41"}, "name": {"ne": "Ada"}}) == ["Alan"]
    assert names({"age": {"eq": 85.0}}) == ["Grace"]
    limited = env.call("csv_filter", text=PEOPLE, limit=1)
    assert limited["count"] == 1 and limited["matched"] == 3
    raw = env.call("csv_filter", text=PEOPLE, where={"name": "Ada"}, infer_types=False)
    assert raw["rows"][0]["age"] == "36"


def test_csv_filter_bad_input(env: Env) -> None:
    error = env.fails("invalid_argument", "csv_filter", "unknown column 'zz'", "unknown operator 'like'",
                      text=PEOPLE, where={"zz": 1, "age": {"like": 3}, "name": {"in": "Ada"}})
    assert len(error.details["problems"]) == 3
    env.fails("invalid_argument", "csv_filter", "unknown column(s) 'nope'", text=PEOPLE, columns=["nope"])
    env.fails("invalid_argument", "csv_filter", "limit must be 0 or more", text=PEOPLE, limit=-1)
    env.fails("invalid_argument", "csv_filter", "where: matches none", text=PEOPLE, where="age > 3")


def test_csv_convert(env: Env) -> None:
    assert env.call("csv_convert", text=PEOPLE, to="records")[0] == {"name": "Ada", "age": 36, "city": "London",
                                                                      "joined": "2020-01-05"}
    assert json.loads(env.call("csv_convert", text=PEOPLE))[2]["city"] is None
    assert env.call("csv_convert", text=PEOPLE, to="tsv").splitlines()[1] == "Ada\t36\tLondon\t2020-01-05"
    records = [{"a": 1, "b": "x, y"}, {"a": 2, "c": True, "b": None}]
    assert env.call("csv_convert", from_json=records, to="csv") == 'a,b,c\n1,"x, y",\n2,,true\n'
    assert env.call("csv_convert", from_json=json.dumps(records), to="records") == records
    assert env.call("csv_convert", from_json=[["a", "b"], [1, 2]], to="records") == [{"a": 1, "b": 2}]
    back = env.call("csv_convert", text=env.call("csv_convert", from_json=records, to="csv"), to="records")
    assert back == [{"a": 1, "b": "x, y", "c": None}, {"a": 2, "b": None, "c": True}]


def test_csv_convert_bad_input(env: Env) -> None:
    env.fails("invalid_argument", "csv_convert", "exactly one", text="a\n1\n", from_json=[])
    env.fails("invalid_argument", "csv_convert", "from_json must be a list", from_json=5)
    env.fails("invalid_argument", "csv_convert", "invalid JSON in from_json", from_json="[{")
    env.fails("invalid_argument", "csv_convert", "to: must be one of", text="a\n1\n", to="xml")


def test_csv_process(env: Env) -> None:
    messy = "First Name, Age ,City\n Ada ,36, London\n,,\nAlan,41,Wilmslow\n"
    result = env.call("csv_process", text=messy, operations=["normalize", "validate", "statistics"])
    assert result["normalize"]["columns"] == ["first_name", "age", "city"]
    assert result["normalize"]["rows"][0] == {"first_name": "Ada", "age": 36, "city": "London"}
    assert result["normalize"]["removed_blank_rows"] == 1
    assert result["validate"]["valid"] is True
    assert result["statistics"]["row_count"] == 2
    assert env.call("csv_process", text=PEOPLE)["row_count"] == 3  # default operation: profile
    assert env.call("csv_process", text=PEOPLE, operation="filter", where={"name": "Ada"})["count"] == 1
    assert env.call("csv_process", text=PEOPLE, operation="convert", to="records")[1]["name"] == "Alan"


def test_csv_process_validate_reports_problems(env: Env) -> None:
    text = "id,score,id\n1,10,a\n2,x,b,extra\n3,30,c\n4,40,d\n5,50,e\n"
    result = env.call("csv_process", text=text, operation="validate")
    assert result["valid"] is False
    messages = [(p["line"], p["column"], p["message"]) for p in result["problems"]]
    assert any("repeated" in m for _, _, m in messages)
    assert any(line == 3 and "fields" in m for line, _, m in messages)
    assert any(line == 3 and col == "score" and "expected a number" in m for line, col, m in messages)


def test_csv_process_bad_input(env: Env) -> None:
    env.fails("invalid_argument", "csv_process", "operations is empty", text="a\n1\n", operations=[])
    error = env.fails("invalid_argument", "csv_process", "frobnicate", text="a\n1\n", operations=["frobnicate"])
    assert error.details["tool"] == "csv_process"
    env.fails("not_found", "csv_process", "nothing.csv", path="nothing.csv")
