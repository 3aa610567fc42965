"""The trace waterfall (aikit_components.telemetry.waterfall): the HTML it renders for a realistic
agent trace, parsed and checked for bars, nesting, colours, columns, tooltips, errors and running
spans, for being self-contained (no script, no external URL, well-formed markup), and for keeping
its bars and tooltips through what JupyterLab's sanitizer removes from untrusted output."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import replace

from bs4 import BeautifulSoup

from aikit_components.telemetry.waterfall import ERROR_COLOUR, KIND_COLOURS, OTHER_COLOUR, kind_colour, render_waterfall
from tests.support.traces import MS, T0, agent_cell_trace, new_trace_id, span


def _rows(html: str) -> list:
    return BeautifulSoup(html, "html.parser").select("tr.aikit-span")


def _bar(row):
    return row.select_one("div.aikit-bar")


def _style(element) -> dict[str, str]:
    return dict(tuple(part.strip() for part in decl.split(":", 1)) for decl in element["style"].split(";") if decl.strip())


def _geometry(row) -> tuple[float, float]:
    style = _style(_bar(row))
    return float(style["margin-left"].rstrip("%")), float(style["width"].rstrip("%"))


def _fill(row) -> str:
    return _style(_bar(row))["background-color"]


def _tip(row) -> str:
    return _bar(row)["title"]


def _by_name(rows: list, name: str) -> list:
    return [r for r in rows if r.find("td").get_text().strip().lstrip("✗ ") == name]


def test_one_bar_per_span_with_a_tooltip_and_the_columns() -> None:
    spans = agent_cell_trace()
    html = render_waterfall(spans, title="cell [3]")
    rows = _rows(html)
    assert len(rows) == len(spans)
    assert {r["data-span-id"] for r in rows} == {s.span_id for s in spans}
    for row in rows:
        assert len(row.select("div.aikit-bar")) == 1
        assert _tip(row).startswith(row.find("td").get_text().lstrip("✗ "))
        assert _bar(row).find("title").get_text() == _tip(row), "the same tooltip as an SVG <title>"
    chat = _by_name(rows, "chat gpt-4o-mini")[0]
    cells = [td.get_text() for td in chat.find_all("td")]
    assert cells[2:] == ["400 ms", "812 / 64", "$0.00016"]
    tip = _tip(chat)
    assert "model: gpt-4o-mini" in tip and "tokens: 812 in / 64 out" in tip and "cost: $0.00016" in tip
    assert "duration: 400 ms" in tip and "kind: llm" in tip
    summary = BeautifulSoup(html, "html.parser").select_one(".aikit-waterfall-summary").get_text()
    assert "cell [3]" in summary and "8 spans" in summary and "1.50 s" in summary
    assert "1832 in / 294 out tokens" in summary and "$0.000451" in summary and "1 error" in summary


def test_rows_are_nested_under_their_parent_in_start_order() -> None:
    spans = agent_cell_trace()
    rows = _rows(render_waterfall(spans))
    depth = {r["data-span-id"]: int(r["data-depth"]) for r in rows}
    position = {r["data-span-id"]: i for i, r in enumerate(rows)}
    for row in rows:
        parent = row["data-parent-id"]
        if parent:
            assert depth[row["data-span-id"]] == depth[parent] + 1
            assert position[row["data-span-id"]] > position[parent]
        else:
            assert depth[row["data-span-id"]] == 0
    assert [r.find("td").get_text().lstrip("✗ ") for r in rows] == [
        "execute_request", "invoke_agent writer", "chat gpt-4o-mini", "execute_tool read_file",
        "execute_tool write_file", "retrieval notes", "state.write notes/last", "chat gpt-4o-mini"]
    assert [int(r["data-depth"]) for r in rows] == [0, 1, 2, 2, 2, 2, 2, 2]
    indents = [int(re.search(r"padding-left:(\d+)px", r.find("td")["style"]).group(1)) for r in rows]
    assert indents[0] < indents[1] < indents[2] == indents[-1]


def test_bars_are_coloured_by_kind_and_placed_on_the_trace_time_axis() -> None:
    rows = _rows(render_waterfall(agent_cell_trace()))
    fills = {r.find("td").get_text().lstrip("✗ "): _fill(r) for r in rows}
    assert fills["execute_request"] == KIND_COLOURS["cell"]
    assert fills["invoke_agent writer"] == KIND_COLOURS["agent"]
    assert fills["chat gpt-4o-mini"] == KIND_COLOURS["llm"]
    assert fills["execute_tool read_file"] == KIND_COLOURS["tool"]
    assert fills["retrieval notes"] == KIND_COLOURS["rag"] == kind_colour("rag.search")
    assert fills["state.write notes/last"] == kind_colour("state.write")
    assert len({fills["execute_request"], fills["invoke_agent writer"], fills["chat gpt-4o-mini"],
                fills["execute_tool read_file"], fills["retrieval notes"]}) == 5
    assert kind_colour("something-new") == OTHER_COLOUR
    chat = _geometry(_by_name(rows, "chat gpt-4o-mini")[0])  # 20..420 ms of a 1500 ms trace
    assert chat == (round(100 * 20 / 1500, 3), round(100 * 400 / 1500, 3))
    assert _geometry(_by_name(rows, "execute_request")[0]) == (0.0, 100.0)


def test_a_failed_span_is_red_with_its_error_in_the_tooltip() -> None:
    rows = _rows(render_waterfall(agent_cell_trace()))
    failed = [r for r in rows if r["data-status"] == "error"]
    assert [r["data-span-id"] for r in failed] == [_by_name(rows, "execute_tool write_file")[0]["data-span-id"]]
    row = failed[0]
    assert _fill(row) == ERROR_COLOUR
    assert row.find("td").get_text().startswith("✗ ") and ERROR_COLOUR in row.find("td")["style"]
    assert "status: ERROR - PermissionDenied: path /etc/passwd is outside the allowed paths" in _tip(row)
    assert all(_fill(r) != ERROR_COLOUR for r in rows if r is not row)


def test_running_spans_are_open_ended_up_to_now() -> None:
    now = T0 + 2000 * MS
    html = render_waterfall(agent_cell_trace(running=True), now_ns=now)
    rows = _rows(html)
    running = [r for r in rows if r["data-status"] == "running"]
    assert [r.find("td").get_text() for r in running] == ["execute_request", "invoke_agent writer", "chat gpt-4o-mini"]
    for row in running:
        style = _style(_bar(row))
        assert style["border"] == f"1px dashed {row['data-colour']}" and style["background-color"].startswith("rgba(")
        left, width = _geometry(row)
        assert abs(left + width - 100) < 0.01
        assert row.find_all("td")[2].get_text().endswith("…")
        assert "status: running" in _tip(row)
    assert _by_name(rows, "invoke_agent writer")[0].find_all("td")[2].get_text() == "1.99 s…"
    finished = [r for r in rows if r["data-status"] != "running"]
    assert all("border" not in _style(_bar(r)) for r in finished)
    assert "running" in BeautifulSoup(html, "html.parser").select_one(".aikit-waterfall-summary").get_text()


def test_the_fragment_is_self_contained_and_well_formed() -> None:
    spans = agent_cell_trace()
    spans[3] = replace(spans[3], name='execute_tool <script>alert("x")</script> & co')
    html = render_waterfall(spans, title="a <b>title</b>")
    assert "<script" not in html.lower() and "<style" not in html.lower()
    assert not re.search(r"(https?:)?//[a-z0-9]", html, re.I), "no external URL"
    assert not re.search(r"\s(src|href|on[a-z]+)=", html, re.I)
    root = ET.fromstring(html)  # every tag closed, every attribute quoted, every & escaped
    assert root.get("data-trace-id") == spans[0].trace_id
    assert "execute_tool <script>" in BeautifulSoup(html, "html.parser").get_text()


def test_legend_lists_the_kinds_present() -> None:
    legend = BeautifulSoup(render_waterfall(agent_cell_trace()), "html.parser").select_one(".aikit-waterfall-legend")
    assert [s["data-kind"] for s in legend.find_all("span", attrs={"data-kind": True})] == [
        "agent", "cell", "llm", "rag.search", "state.write", "tool"]


def test_no_spans_and_orphans() -> None:
    assert "no spans" in render_waterfall([], title="empty")
    tid = new_trace_id()
    root = span(tid, "aikit run hello.lua", "script", 0, 10)
    orphan = replace(span(tid, "execute_tool x", "tool", 2, 3), parent_span_id="0123456789abcdef")
    rows = _rows(render_waterfall([orphan, root]))
    assert [(r.find("td").get_text(), r["data-depth"]) for r in rows] == [("aikit run hello.lua", "0"),
                                                                         ("execute_tool x", "0")]


# What JupyterLab's default sanitizer (packages/apputils/src/sanitizer.ts) lets through, for the tags
# and inline style properties the waterfall uses; svg (and its title) is dropped, keeping its text.
JUPYTERLAB_TAGS = {"div", "span", "table", "thead", "tbody", "tr", "th", "td"}
JUPYTERLAB_ATTRIBUTES = {"class", "style", "title"}
JUPYTERLAB_STYLES = {
    "font-family", "font-size", "font-weight", "line-height", "color", "max-width", "min-width", "overflow",
    "overflow-x", "margin", "margin-right", "margin-bottom", "margin-left", "border-collapse", "width", "text-align",
    "border-bottom", "padding", "padding-left", "float", "white-space", "text-overflow", "display", "height",
    "background", "background-color", "vertical-align", "box-sizing", "border-radius", "border",
}


def test_bars_and_tooltips_survive_jupyterlab_sanitizing() -> None:
    html = render_waterfall(agent_cell_trace(running=True), title="cell [3]", now_ns=T0 + 2000 * MS)
    soup = BeautifulSoup(html, "html.parser")
    for svg in soup.find_all("svg"):  # sanitize-html's "discard" mode: the tag goes, its text stays
        svg.replace_with(svg.get_text())
    for element in soup.find_all(True):
        assert element.name in JUPYTERLAB_TAGS, element.name
        for attribute in list(element.attrs):
            if attribute.startswith("data-"):
                del element[attribute]
        assert set(element.attrs) <= JUPYTERLAB_ATTRIBUTES, element.attrs
        if element.has_attr("style"):
            assert set(_style(element)) <= JUPYTERLAB_STYLES, set(_style(element)) - JUPYTERLAB_STYLES
    bars = soup.select("div.aikit-bar")
    assert len(bars) == 8
    for bar in bars:
        style = _style(bar)
        assert re.fullmatch(r"\d+(\.\d+)?%", style["margin-left"]) and re.fullmatch(r"\d+(\.\d+)?%", style["width"])
        assert re.fullmatch(r"#[0-9a-f]{6}|rgba\(\d+,\d+,\d+,0\.\d+\)", style["background-color"])
        assert style["font-size"] == "0px", "the dropped <title>'s text stays invisible"
        assert bar["title"].splitlines()[1].startswith("kind: ")
