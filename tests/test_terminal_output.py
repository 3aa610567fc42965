"""Outputs that are easy to read in a terminal (issue 17): records as aligned tables, Markdown
rendered, HTML as text with a note, streamed answers printed once; ``_`` holds the last result;
a notebook's trailing list of records gets the rich bundle."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

from aikit_kernel.output import TerminalOutput
from aikit_kernel.terminal_render import HTML_NOTE, render_bundle
from tests.support.lua import Lua

AIKIT = str(Path(sys.executable).with_name("aikit"))


def repl(tmp_path: Path, code: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, AIKIT_DATA_DIR=str(tmp_path / "data"), COLUMNS="100")
    return subprocess.run([AIKIT, "repl"], input=code, capture_output=True, text=True, timeout=60, cwd=tmp_path,
                          env=env)


def test_records_render_as_an_aligned_table() -> None:
    text = render_bundle({"text/plain": "...", "text/html": "<table/>",
                          "application/json": [{"n": 1, "name": "a"}, {"n": 22, "name": "bb"}]}, width=60)
    lines = text.split("\n")
    assert lines[0].split() == ["name", "n"]
    assert lines[2].split() == ["a", "1"] and lines[3].split() == ["bb", "22"]
    assert lines[2].index("1") == lines[3].index("22")  # aligned columns


def test_markdown_is_rendered_and_html_gets_a_note() -> None:
    text = render_bundle({"text/markdown": "# Title\n\n- **one**", "text/plain": "# Title"}, width=40)
    assert "Title" in text and "#" not in text and "**" not in text and "• one" in text
    assert render_bundle({"text/html": "<b>x</b>", "text/plain": "<b>x</b>"}) == f"<b>x</b>\n{HTML_NOTE}"


def test_streamed_updates_print_only_new_text() -> None:
    out = io.StringIO()
    sink = TerminalOutput(stdout=out)
    sink.display({"text/plain": "Hel"}, {"aikit_stream": {"delta": "Hel", "final": False}}, "d", False)
    sink.display({"text/plain": "Hello"}, {"aikit_stream": {"delta": "lo", "final": False}}, "d", True)
    sink.display({"text/plain": "Hello"}, {"aikit_stream": {"delta": "", "final": True}}, "d", True)
    assert out.getvalue() == "Hello\n"


def test_stream_display_sends_deltas(lua: Lua) -> None:
    lua.run("Agent.new{model = Agent.scripted{'one two three'}}:run('x', {stream = true})")
    deltas = "".join(meta for meta in [d[0]["text/plain"] for d in lua.out.displays][-1:])
    assert deltas == "one two three"


def test_repl_prints_tables_markdown_and_keeps_the_last_result(tmp_path: Path) -> None:
    proc = repl(tmp_path, 'x = {{name = "a", n = 1}, {name = "bb", n = 22}}\nx\n_[2].name\n'
                          'display.table(x)\ndisplay.markdown("**bold**")\nTool.list()\n')
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.split("\n")
    assert lines[0].split() == ["name", "n"] and lines[3].split() == ["bb", "22"]
    assert '"bb"' in lines[4]
    assert lines[5].split() == ["name", "n"]
    assert "bold" in proc.stdout and "**bold**" not in proc.stdout
    assert any(line.startswith("read_file ") for line in lines)


def test_trailing_records_get_the_display_bundle(lua: Lua) -> None:
    from aikit_kernel.interpreter import LuaInterpreter

    values = lua.engine.run_cell("return {{a = 1}, {a = 2}}", "[1]").values
    bundle = LuaInterpreter._result_bundle(type("I", (), {"engine": lua.engine})(),  # type: ignore[arg-type]
                                           values, lua.engine.render_values(values))
    assert "<table>" in bundle["text/html"] and bundle["application/json"] == [{"a": 1}, {"a": 2}]
    assert "a = 1" in bundle["text/plain"]


def test_help_on_a_tool_name_and_tool_name_completion(tmp_path: Path) -> None:
    proc = repl(tmp_path, "?read_file\n")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("Tool read_file{path, encoding?, max_bytes?}")


def test_completion_inside_tool_call_offers_tool_names(lua: Lua) -> None:
    from aikit_kernel.interpreter import LuaInterpreter

    interpreter = LuaInterpreter.__new__(LuaInterpreter)
    interpreter.engine, interpreter.components = lua.engine, lua.components
    code = 'Tool.call("read_f'
    assert interpreter.complete(code, len(code))["matches"] == ["read_file"]
    code = "Tool.info('list_d"
    reply = interpreter.complete(code, len(code))
    assert reply["matches"] == ["list_directory"] and reply["cursor_start"] == len(code) - len("list_d")


def test_ingest_summary_line() -> None:
    from aikit_kernel.lua.api.rag import ingest_summary

    line = ingest_summary({"documents": 3, "chunks": 120, "unchanged": 1}, 2.0)
    assert line == "aikit: ingested 3 document(s), 120 chunk(s), 1 unchanged in 2.0 s, 60 chunks/s"
