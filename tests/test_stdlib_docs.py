"""The inspect docs cover exactly the standard library the sandbox exposes."""

from __future__ import annotations

import pytest
from lupa import lua54

from aikit_kernel.lua.stdlib_docs import KEYWORDS, STDLIB_DOCS, lookup


def test_entries_are_signature_blank_line_text() -> None:
    for entry, doc in STDLIB_DOCS.items():
        lines = doc.split("\n")
        assert entry in lines[0], (entry, lines[0])
        assert len(lines) >= 3 and lines[1] == "" and lines[2].strip(), entry
    assert set(KEYWORDS) == {"and", "break", "do", "else", "elseif", "end", "false", "for", "function", "goto", "if", "in",
                             "local", "nil", "not", "or", "repeat", "return", "then", "true", "until", "while"}


@pytest.mark.parametrize("removed", ["load", "loadfile", "dofile", "require", "string.dump", "os.exit",
                                     "os.tmpname", "os.execute", "io.popen"])
def test_removed_functions_are_not_documented(removed: str) -> None:
    assert removed not in STDLIB_DOCS


def test_lookup() -> None:
    assert lookup("string:format") == STDLIB_DOCS["string.format"]
    assert lookup(" file:read ") == STDLIB_DOCS["file:read"]
    assert lookup("while") == KEYWORDS["while"]
    assert lookup("s:upper") is None and lookup("nope") is None and lookup("") is None


@pytest.mark.parametrize("module", ["string", "table", "math", "utf8", "coroutine"])
def test_every_library_function_is_documented(module: str) -> None:
    rt = lua54.LuaRuntime()
    names = set(rt.eval(f"(function() local r = {{}} for k in pairs({module}) do r[#r + 1] = k end "
                        "return table.concat(r, ' ') end)()").split())
    documented = {k.split(".", 1)[1] for k in STDLIB_DOCS if k.startswith(module + ".")}
    assert names - ({"dump"} if module == "string" else set()) == documented
