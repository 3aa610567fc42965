"""IPython-style help in a cell (`name?`, `?name`, `name??`, `??name`): the execute_reply carries
a `page` payload holding what `inspect` says about the name, over a real kernel."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from jupyter_kernel_test.msgspec_v5 import validate_message

from aikit_kernel.lua.source import help_request
from tests.support.kernels import Kernel, start_kernel

pytestmark = pytest.mark.xdist_group("pager")


@pytest.fixture(scope="module")
def kernel(tmp_path_factory: pytest.TempPathFactory) -> Kernel:
    k = start_kernel(tmp_path_factory.mktemp("pager-data"))
    k.ok("function greet(name)\n  -- says hello\n  return 'hi ' .. name\nend\ncfg = {model = 'm', depth = 2}")
    yield k
    k.shutdown()


@pytest.mark.parametrize(("code", "expected"), [
    ("print?", ("print", 0)),
    ("?print", ("print", 0)),
    ("  string.format ?  ", ("string.format", 0)),
    ("obj:method??", ("obj:method", 1)),
    ("??greet", ("greet", 1)),
    ("? greet\n", ("greet", 0)),
])
def test_help_syntax_is_recognised(code: str, expected: tuple[str, int]) -> None:
    assert help_request(code) == expected


@pytest.mark.parametrize("code", [
    "print", "x = 1 ?", "greet???", "?", "a.?", "print?\nprint(1)", 's = "what?"', "-- why?", "1?",
])
def test_other_cells_are_not_help(code: str) -> None:
    assert help_request(code) is None


def inspect_text(kernel: Kernel, name: str, detail_level: int = 0) -> str:
    reply = kernel.shell_reply(kernel.kc.inspect(name, len(name), detail_level))
    assert reply["content"]["found"] is True
    return reply["content"]["data"]["text/plain"]


@pytest.mark.parametrize("name", ["print", "string.format", "greet", "cfg", "for", "Tool"])
def test_pager_payload_is_the_inspect_text(kernel: Kernel, name: str) -> None:
    expected = inspect_text(kernel, name)
    for code in (f"{name}?", f"?{name}"):
        result = kernel.ok(code)
        validate_message(result.reply, "execute_reply", result.reply["parent_header"]["msg_id"])
        assert result.content["payload"] == [{"source": "page", "data": {"text/plain": expected}, "start": 0}]
        assert result.outputs == []  # the text goes to the pager, not into the cell's output


def test_double_question_mark_adds_the_source_of_a_cell_function(kernel: Kernel) -> None:
    expected = inspect_text(kernel, "greet", detail_level=1)
    assert expected.startswith(inspect_text(kernel, "greet"))
    assert "-- says hello" in expected and "return 'hi ' .. name" in expected
    for code in ("greet??", "??greet"):
        (payload,) = kernel.ok(code).content["payload"]
        assert payload["data"]["text/plain"] == expected
    # Library functions have no Lua source to show: `??` gives the doc alone.
    (payload,) = kernel.ok("string.format??").content["payload"]
    assert payload["data"]["text/plain"] == inspect_text(kernel, "string.format")


def test_an_unknown_name_says_so_and_pages_nothing(kernel: Kernel) -> None:
    result = kernel.ok("no_such_thing?")
    assert result.content["payload"] == []
    assert result.stdout == "Object `no_such_thing` not found.\n"
    kernel.assert_alive()


def test_help_counts_as_a_cell_and_question_marks_elsewhere_stay_lua_errors(kernel: Kernel) -> None:
    before = kernel.ok("1").content["execution_count"]
    assert kernel.ok("print?").content["execution_count"] == before + 1
    result = kernel.execute("x = 1 ?")
    assert result.content["status"] == "error"
    assert result.content["payload"] == []
    kernel.assert_alive()


def test_the_documented_help_cells_page_their_help(kernel: Kernel) -> None:
    doc = (Path(__file__).resolve().parent.parent / "docs" / "lua-api.md").read_text()
    section = doc.split("## Help in a notebook", 1)[1].split("\n## ", 1)[0]
    cells = re.search(r"```text\n(.*?)```", section, flags=re.DOTALL).group(1).splitlines()
    assert len(cells) >= 3
    for cell in cells:
        name, _ = help_request(cell)
        (payload,) = kernel.ok(cell).content["payload"]
        assert payload["data"]["text/plain"] == inspect_text(kernel, name)
