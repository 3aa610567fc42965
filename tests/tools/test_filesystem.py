"""Filesystem tools, called through a ToolRegistry (so argument validation is exercised) with the
default security policy: the working directory (tmp_path) and the data directory are allowed."""

from __future__ import annotations

import asyncio
import hashlib
import os
import stat
from pathlib import Path
from typing import Any

import pytest

from aikit_components.errors import (
    Conflict,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ValidationError,
)
from aikit_components.tools import ToolRegistry
from aikit_components.tools.filesystem import TOOLS
from tests.support.tools import ToolEnv as Env

NAMES = {"read_file", "write_file", "append_file", "list_directory", "file_search", "grep", "copy_file", "move_file",
         "delete_file", "file_stat", "edit_file", "make_directory"}
READ_TOOLS = {"read_file", "list_directory", "file_search", "grep", "file_stat"}

# ----------------------------------------------------------------------------- declarations
def test_all_tools_exported() -> None:
    assert {t.name for t in TOOLS} == NAMES
    assert len(TOOLS) == len(NAMES)


@pytest.mark.parametrize("item", TOOLS, ids=lambda t: t.name)
def test_schema_and_doc(item: Any) -> None:
    assert item.category == "filesystem"
    assert item.security == ("read" if item.name in READ_TOOLS else "write")
    assert item.is_async and item.wants_ctx
    assert item.description.strip() and "\n" in item.description  # summary + description
    assert item.returns
    schema = item.parameters
    assert schema["type"] == "object" and schema["additionalProperties"] is False
    assert "ctx" not in schema["properties"]
    for name, prop in schema["properties"].items():
        assert prop.get("description"), f"{item.name}.{name} has no description"
        assert "type" in prop or "enum" in prop, f"{item.name}.{name} has no type"
    doc = item.doc()
    assert doc.startswith(f"Tool {item.name}{{")
    for name in schema["properties"]:
        assert f"  {name}: " in doc
    assert "Returns:" in doc and "Example:" in doc
    assert item.examples
    for example in item.examples:
        assert item.validate(example["args"]) == [], example
        assert "result" in example


BAD_ARGS = [
    ("read_file", {"path": 5}),
    ("read_file", {"path": "a.txt", "max_bytes": "big"}),
    ("read_file", {}),
    ("write_file", {"path": "a.txt"}),
    ("write_file", {"path": "a.txt", "content": 3}),
    ("write_file", {"path": "a.txt", "content": "x", "overwrite": "yes"}),
    ("append_file", {"path": "a.txt", "content": ["x"]}),
    ("list_directory", {"recursive": "yes"}),
    ("list_directory", {"max_entries": 1.5}),
    ("file_search", {"pattern": 7}),
    ("file_search", {"root": "."}),
    ("grep", {"pattern": "x", "ignore_case": 1}),
    ("grep", {"pattern": "x", "max_matches": True}),
    ("copy_file", {"source": "a"}),
    ("copy_file", {"source": "a", "destination": None}),
    ("move_file", {"source": "a", "destination": "b", "overwrite": "no"}),
    ("delete_file", {"path": "a", "recursive": "true"}),
    ("file_stat", {"path": ["a"]}),
    ("file_stat", {"path": "a", "follow": True}),
    ("edit_file", {"path": "a", "old": "x"}),
    ("edit_file", {"path": "a", "old": "x", "new": "y", "count": "all"}),
    ("make_directory", {"path": "d", "parents": 0}),
]


@pytest.mark.parametrize("name, args", BAD_ARGS)
def test_validation_rejects_bad_arguments(env: Env, name: str, args: dict[str, Any]) -> None:
    error = env.fails(ValidationError, name, **args)
    assert error.details["problems"]
    assert not (env.root / "a.txt").exists()


def test_every_tool_has_a_validation_case() -> None:
    assert {name for name, _ in BAD_ARGS} == NAMES


def test_not_a_table_of_arguments(env: Env) -> None:
    with pytest.raises(ValidationError):
        asyncio.run(env.registry.acall("read_file", ["a.txt"], env.ctx))


# ----------------------------------------------------------------------------- read_file
def test_read_file(env: Env) -> None:
    (env.root / "notes.txt").write_text("héllo\nworld\n", encoding="utf-8")
    result = env.call("read_file", path="notes.txt")
    assert result == {"path": str(env.root / "notes.txt"), "content": "héllo\nworld\n", "size": 13,
                      "truncated": False, "bytes_read": 13, "encoding": "utf-8"}


def test_read_file_truncates_at_a_character_boundary(env: Env) -> None:
    (env.root / "big.txt").write_text("ééé", encoding="utf-8")  # 6 bytes
    result = env.call("read_file", path="big.txt", max_bytes=3)
    assert result["truncated"] is True and result["content"] == "é" and result["size"] == 6


def test_read_file_null_optional_means_default(env: Env) -> None:
    (env.root / "a.txt").write_text("abc")
    assert env.call("read_file", path="a.txt", max_bytes=None, encoding=None)["content"] == "abc"


def test_read_file_binary(env: Env) -> None:
    (env.root / "blob.bin").write_bytes(b"\x00\xff\x10")
    error = env.fails(InvalidArgument, "read_file", path="blob.bin")
    assert "encoding='base64'" in error.message
    assert env.call("read_file", path="blob.bin", encoding="base64")["content"] == "AP8Q"
    assert env.call("read_file", path="blob.bin", encoding="latin-1")["content"] == "\x00\xff\x10"


def test_read_file_failures(env: Env) -> None:
    (env.root / "sub").mkdir()
    (env.root / "a.txt").write_text("x")
    assert "no such file" in env.fails(NotFound, "read_file", path="missing.txt").message
    assert "directory" in env.fails(InvalidArgument, "read_file", path="sub").message
    error = env.fails(PermissionDenied, "read_file", path="/etc/passwd")
    assert error.details["rule"] == "allowed_paths" and "AIKIT_ALLOWED_PATHS" in error.message
    env.fails(PermissionDenied, "read_file", path=os.path.relpath(env.outside / "secret.txt", env.root))
    env.fails(PermissionDenied, "read_file", path=str(env.outside / "secret.txt"))
    env.fails(InvalidArgument, "read_file", path="a.txt", encoding="klingon")
    env.fails(InvalidArgument, "read_file", path="a.txt", encoding="zlib")  # not a text encoding
    env.fails(InvalidArgument, "read_file", path="a.txt", max_bytes=0)
    env.fails(InvalidArgument, "read_file", path="a.txt", max_bytes=10 ** 12)
    env.fails(InvalidArgument, "read_file", path="")


def test_read_file_symlink_escape(env: Env) -> None:
    (env.root / "etc").symlink_to("/etc")
    (env.root / "leak").symlink_to(env.outside / "secret.txt")
    env.fails(PermissionDenied, "read_file", path="etc/passwd")
    env.fails(PermissionDenied, "read_file", path="leak")
    (env.root / "sub").mkdir()
    env.fails(PermissionDenied, "read_file", path="sub/../" + os.path.relpath(env.outside / "secret.txt", env.root))


def test_read_file_symlink_loop_is_a_clear_error(env: Env) -> None:
    (env.root / "loop").symlink_to(env.root / "loop")
    error = env.fails(InvalidArgument, "read_file", path="loop")
    assert "symlink" in error.message


# ----------------------------------------------------------------------------- write_file / append_file
def test_write_file(env: Env) -> None:
    result = env.call("write_file", path="out/deep/report.md", content="# Report\n")
    target = env.root / "out" / "deep" / "report.md"
    assert result == {"path": str(target), "bytes_written": 9, "created": True}
    assert target.read_text() == "# Report\n"
    assert [p.name for p in target.parent.iterdir()] == ["report.md"]  # no temp file left behind
    target.chmod(0o640)
    result = env.call("write_file", path="out/deep/report.md", content="v2")
    assert result["created"] is False and target.read_text() == "v2"
    assert stat.S_IMODE(target.stat().st_mode) == 0o640  # permissions kept


def test_write_file_base64(env: Env) -> None:
    env.call("write_file", path="b.bin", content="AP8Q", encoding="base64")
    assert (env.root / "b.bin").read_bytes() == b"\x00\xff\x10"
    env.fails(InvalidArgument, "write_file", path="c.bin", content="not base64!", encoding="base64")


def test_write_file_failures(env: Env) -> None:
    (env.root / "a.txt").write_text("keep")
    (env.root / "dir").mkdir()
    error = env.fails(Conflict, "write_file", path="a.txt", content="new", overwrite=False)
    assert "overwrite=true" in error.message and (env.root / "a.txt").read_text() == "keep"
    assert "create_dirs" in env.fails(NotFound, "write_file", path="x/y.txt", content="", create_dirs=False).message
    env.fails(InvalidArgument, "write_file", path="dir", content="x")
    env.fails(InvalidArgument, "write_file", path="a.txt/inner.txt", content="x")
    env.fails(PermissionDenied, "write_file", path="/etc/aikit-test.txt", content="x")
    env.fails(PermissionDenied, "write_file", path=str(env.outside / "new.txt"), content="x")
    (env.root / "out").symlink_to(env.outside)
    env.fails(PermissionDenied, "write_file", path="out/new.txt", content="x")
    assert not (env.outside / "new.txt").exists()
    env.fails(InvalidArgument, "write_file", path="e.txt", content="é", encoding="ascii")


def test_write_file_into_data_dir(env: Env) -> None:
    data = env.root / "data"
    result = env.call("write_file", path=str(data / "notes" / "n.txt"), content="ok")
    assert Path(result["path"]).read_text() == "ok"


def test_append_file(env: Env) -> None:
    first = env.call("append_file", path="logs/log.txt", content="one\n")
    assert first["created"] is True and first["size"] == 4
    second = env.call("append_file", path="logs/log.txt", content="two\n")
    assert second == {"path": str(env.root / "logs" / "log.txt"), "bytes_written": 4, "size": 8, "created": False}
    assert (env.root / "logs" / "log.txt").read_text() == "one\ntwo\n"


def test_append_file_failures(env: Env) -> None:
    (env.root / "dir").mkdir()
    env.fails(InvalidArgument, "append_file", path="dir", content="x")
    env.fails(NotFound, "append_file", path="nope/log.txt", content="x", create_dirs=False)
    env.fails(PermissionDenied, "append_file", path=str(env.outside / "secret.txt"), content="x")
    assert (env.outside / "secret.txt").read_text() == "top secret\n"


# ----------------------------------------------------------------------------- list_directory
def _tree(root: Path) -> None:
    (root / "src" / "pkg").mkdir(parents=True)
    (root / "src" / "main.lua").write_text("print(1)\n")
    (root / "src" / "pkg" / "util.lua").write_text("return {}\n")
    (root / "README.md").write_text("# hi\n")
    (root / ".hidden").write_text("h")
    (root / ".git").mkdir()
    (root / ".git" / "HEAD").write_text("ref")


def test_list_directory(env: Env) -> None:
    _tree(env.root)
    (env.root / "link").symlink_to(env.outside)
    result = env.call("list_directory")
    assert result["path"] == str(env.root) and result["truncated"] is False
    by_name = {e["name"]: e for e in result["entries"]}
    assert list(by_name) == ["README.md", "data", "link", "src"]
    assert by_name["README.md"]["type"] == "file" and by_name["README.md"]["size"] == 5
    assert by_name["README.md"]["modified"].endswith("Z")
    assert by_name["src"]["type"] == "directory" and by_name["src"]["size"] is None
    assert by_name["link"]["type"] == "symlink" and by_name["link"]["link_target"] == str(env.outside)
    assert by_name["README.md"]["path"] == str(env.root / "README.md")


def test_list_directory_recursive_hidden_and_truncated(env: Env) -> None:
    _tree(env.root)
    (env.root / "link").symlink_to(env.outside)
    names = [e["name"] for e in env.call("list_directory", path=".", recursive=True)["entries"]]
    assert names == ["README.md", "data", "link", "src", "src/main.lua", "src/pkg", "src/pkg/util.lua"]
    assert not any("secret" in n for n in names)  # the symlinked directory is not followed
    hidden = [e["name"] for e in env.call("list_directory", recursive=True, include_hidden=True)["entries"]]
    assert ".git/HEAD" in hidden and ".hidden" in hidden
    cut = env.call("list_directory", recursive=True, max_entries=2)
    assert cut["count"] == 2 and cut["truncated"] is True


def test_list_directory_failures(env: Env) -> None:
    (env.root / "f.txt").write_text("x")
    env.fails(NotFound, "list_directory", path="missing")
    assert "file_stat" in env.fails(InvalidArgument, "list_directory", path="f.txt").message
    env.fails(PermissionDenied, "list_directory", path="/etc")
    env.fails(PermissionDenied, "list_directory", path="..")
    (env.root / "etc").symlink_to("/etc")
    env.fails(PermissionDenied, "list_directory", path="etc")
    env.fails(InvalidArgument, "list_directory", max_entries=0)


# ----------------------------------------------------------------------------- file_search
def test_file_search(env: Env) -> None:
    _tree(env.root)
    result = env.call("file_search", pattern="**/*.lua")
    assert [m["name"] for m in result["matches"]] == ["src/main.lua", "src/pkg/util.lua"]
    assert result["matches"][0]["path"] == str(env.root / "src" / "main.lua")
    assert result["matches"][0]["type"] == "file" and result["count"] == 2
    in_src = env.call("file_search", pattern="*.lua", root="src")
    assert [m["name"] for m in in_src["matches"]] == ["main.lua"]
    cut = env.call("file_search", pattern="**/*", max_results=1)
    assert cut["count"] == 1 and cut["truncated"] is True


def test_file_search_stays_inside(env: Env) -> None:
    (env.root / "a.txt").write_text("x")
    (env.root / "out").symlink_to(env.outside)
    result = env.call("file_search", pattern="out/*")
    assert result["matches"] == [] and result["skipped_outside"] == 1
    env.fails(InvalidArgument, "file_search", pattern="../*")
    env.fails(InvalidArgument, "file_search", pattern="src/../../*")
    env.fails(PermissionDenied, "file_search", pattern="*", root="..")


def test_file_search_failures(env: Env) -> None:
    env.fails(InvalidArgument, "file_search", pattern="/etc/*")
    env.fails(InvalidArgument, "file_search", pattern="")
    env.fails(InvalidArgument, "file_search", pattern="a**b/*.py")
    env.fails(PermissionDenied, "file_search", pattern="*", root="/etc")
    env.fails(NotFound, "file_search", pattern="*", root="missing")
    env.fails(InvalidArgument, "file_search", pattern="*", max_results=0)


# ----------------------------------------------------------------------------- grep
def test_grep(env: Env) -> None:
    _tree(env.root)
    (env.root / "src" / "notes.txt").write_text("TODO: later\nnothing\n  todo lower\n")
    result = env.call("grep", pattern="TODO", path="src", regex=False)
    assert result["matches"] == [{"file": "notes.txt", "path": str(env.root / "src" / "notes.txt"), "line": 1,
                                  "column": 1, "text": "TODO: later"}]
    assert result["count"] == 1 and result["truncated"] is False and result["files_searched"] == 3
    folded = env.call("grep", pattern="todo", path="src", ignore_case=True)
    assert [(m["line"], m["column"]) for m in folded["matches"]] == [(1, 1), (3, 3)]
    regex = env.call("grep", pattern=r"^(print|return)\b", glob="*.lua")
    assert sorted(m["file"] for m in regex["matches"]) == ["src/main.lua", "src/pkg/util.lua"]
    by_path = env.call("grep", pattern="return", glob="src/pkg/*")
    assert [m["file"] for m in by_path["matches"]] == ["src/pkg/util.lua"]
    one_file = env.call("grep", pattern="nothing", path="src/notes.txt")
    assert one_file["matches"][0]["file"] == "notes.txt" and one_file["matches"][0]["line"] == 2


def test_grep_skips_binary_and_outside_and_truncates(env: Env) -> None:
    (env.root / "bin.dat").write_bytes(b"secret\x00secret")
    (env.root / "leak.txt").symlink_to(env.outside / "secret.txt")
    (env.root / "many.txt").write_text("secret\n" * 10)
    result = env.call("grep", pattern="secret", max_matches=3)
    assert result["count"] == 3 and result["truncated"] is True
    assert all(m["file"] == "many.txt" for m in result["matches"])
    assert result["skipped_binary"] == 1 and result["skipped_outside"] == 1


def test_grep_failures(env: Env) -> None:
    error = env.fails(InvalidArgument, "grep", pattern="(unclosed")
    assert "regex=false" in error.message
    assert env.call("grep", pattern="(unclosed", regex=False)["count"] == 0
    env.fails(InvalidArgument, "grep", pattern="")
    env.fails(NotFound, "grep", pattern="x", path="missing")
    env.fails(PermissionDenied, "grep", pattern="root", path="/etc/passwd")
    env.fails(PermissionDenied, "grep", pattern="root", path="/etc")
    env.fails(InvalidArgument, "grep", pattern="x", max_matches=0)


# ----------------------------------------------------------------------------- copy_file
def test_copy_file(env: Env) -> None:
    (env.root / "a.txt").write_text("alpha")
    result = env.call("copy_file", source="a.txt", destination="b.txt")
    assert result == {"source": str(env.root / "a.txt"), "destination": str(env.root / "b.txt"), "type": "file",
                      "files": 1, "bytes": 5, "replaced": False}
    assert (env.root / "b.txt").read_text() == "alpha" and (env.root / "a.txt").exists()
    (env.root / "box").mkdir()
    into = env.call("copy_file", source="a.txt", destination="box")
    assert into["destination"] == str(env.root / "box" / "a.txt") and (env.root / "box" / "a.txt").exists()
    (env.root / "a.txt").write_text("beta")
    assert env.call("copy_file", source="a.txt", destination="b.txt", overwrite=True)["replaced"] is True
    assert (env.root / "b.txt").read_text() == "beta"


def test_copy_directory(env: Env) -> None:
    _tree(env.root)
    (env.root / "src" / "passwd").symlink_to("/etc/passwd")
    result = env.call("copy_file", source="src", destination="copy")
    assert result["type"] == "directory" and result["files"] == 2 and result["bytes"] == 19
    assert (env.root / "copy" / "pkg" / "util.lua").read_text() == "return {}\n"
    copied_link = env.root / "copy" / "passwd"
    assert copied_link.is_symlink() and os.readlink(copied_link) == "/etc/passwd"  # link copied, not content
    env.fails(PermissionDenied, "read_file", path="copy/passwd")


def test_copy_file_failures(env: Env) -> None:
    _tree(env.root)
    (env.root / "a.txt").write_text("a")
    (env.root / "b.txt").write_text("b")
    error = env.fails(Conflict, "copy_file", source="a.txt", destination="b.txt")
    assert "overwrite=true" in error.message and (env.root / "b.txt").read_text() == "b"
    env.fails(NotFound, "copy_file", source="missing.txt", destination="c.txt")
    env.fails(InvalidArgument, "copy_file", source="src", destination="src/pkg/inner")
    env.fails(InvalidArgument, "copy_file", source="a.txt", destination="a.txt")
    (env.root / "clash").mkdir()
    (env.root / "clash" / "a.txt").mkdir()
    env.fails(Conflict, "copy_file", source="a.txt", destination="clash", overwrite=True)
    env.fails(NotFound, "copy_file", source="a.txt", destination="no/such/dir/a.txt")
    env.fails(PermissionDenied, "copy_file", source="/etc/passwd", destination="passwd")
    env.refuses_destinations_outside("copy_file", "a.txt", "a.txt")


# ----------------------------------------------------------------------------- move_file
def test_move_file(env: Env) -> None:
    (env.root / "draft.md").write_text("d")
    (env.root / "docs").mkdir()
    result = env.call("move_file", source="draft.md", destination="docs/final.md")
    assert result == {"source": str(env.root / "draft.md"), "destination": str(env.root / "docs" / "final.md"),
                      "type": "file", "replaced": False}
    assert not (env.root / "draft.md").exists() and (env.root / "docs" / "final.md").read_text() == "d"
    (env.root / "archive").mkdir()
    moved = env.call("move_file", source="docs", destination="archive")
    assert moved["type"] == "directory" and (env.root / "archive" / "docs" / "final.md").exists()


def test_move_symlink_moves_the_link(env: Env) -> None:
    (env.root / "target.txt").write_text("t")
    (env.root / "link").symlink_to("target.txt")
    result = env.call("move_file", source="link", destination="renamed")
    assert result["type"] == "symlink"
    assert (env.root / "renamed").is_symlink() and (env.root / "target.txt").read_text() == "t"
    assert not os.path.lexists(env.root / "link")


def test_move_file_failures(env: Env) -> None:
    (env.root / "a.txt").write_text("a")
    (env.root / "b.txt").write_text("b")
    (env.root / "d").mkdir()
    env.fails(Conflict, "move_file", source="a.txt", destination="b.txt")
    assert (env.root / "a.txt").exists()
    assert env.call("move_file", source="a.txt", destination="b.txt", overwrite=True)["replaced"] is True
    assert (env.root / "b.txt").read_text() == "a"
    env.fails(NotFound, "move_file", source="a.txt", destination="c.txt")
    env.fails(InvalidArgument, "move_file", source="d", destination="d/inner")
    env.fails(PermissionDenied, "move_file", source=".", destination="d/root")
    env.fails(PermissionDenied, "move_file", source="data", destination="d/data")
    env.fails(PermissionDenied, "move_file", source="b.txt", destination=str(env.outside))
    env.fails(PermissionDenied, "move_file", source=str(env.outside / "secret.txt"), destination="s.txt")
    assert (env.outside / "secret.txt").exists() and (env.root / "b.txt").exists()


# ----------------------------------------------------------------------------- delete_file
def test_delete_file(env: Env) -> None:
    _tree(env.root)
    assert env.call("delete_file", path="README.md") == {
        "path": str(env.root / "README.md"), "type": "file", "deleted": True, "files": 1, "directories": 0}
    (env.root / "empty").mkdir()
    assert env.call("delete_file", path="empty")["directories"] == 1
    error = env.fails(InvalidArgument, "delete_file", path="src")
    assert "recursive=true" in error.message and (env.root / "src").exists()
    result = env.call("delete_file", path="src", recursive=True)
    assert result["files"] == 2 and result["directories"] == 2 and not (env.root / "src").exists()


def test_delete_symlink_keeps_target(env: Env) -> None:
    (env.root / "keep.txt").write_text("k")
    (env.root / "link").symlink_to("keep.txt")
    assert env.call("delete_file", path="link")["type"] == "symlink"
    assert (env.root / "keep.txt").read_text() == "k"


def test_delete_file_failures(env: Env) -> None:
    env.fails(NotFound, "delete_file", path="missing.txt")
    for root in (".", str(env.root), "data", "../" + env.root.name):
        error = env.fails(PermissionDenied, "delete_file", path=root, recursive=True)
        assert error.details.get("rule") in ("protected_root", "allowed_paths")
    assert (env.root / "data").is_dir()
    env.fails(PermissionDenied, "delete_file", path="/etc/passwd")
    env.fails(PermissionDenied, "delete_file", path=str(env.outside / "secret.txt"))
    (env.root / "etc").symlink_to(env.outside)
    env.fails(PermissionDenied, "delete_file", path="etc/secret.txt")
    assert (env.outside / "secret.txt").exists()


# ----------------------------------------------------------------------------- file_stat
def test_file_stat(env: Env) -> None:
    (env.root / "f.txt").write_text("hello\n")
    os.chmod(env.root / "f.txt", 0o640)
    result = env.call("file_stat", path="f.txt")
    assert result["type"] == "file" and result["size"] == 6 and result["exists"] is True
    assert result["mode"] == "0o640" and result["permissions"] == "-rw-r-----"
    assert result["sha256"] == hashlib.sha256(b"hello\n").hexdigest()
    assert result["is_symlink"] is False and result["link_target"] is None
    for key in ("modified", "created", "accessed"):
        assert result[key].endswith("Z")
    directory = env.call("file_stat", path=".")
    assert directory["type"] == "directory" and directory["sha256"] is None


def test_file_stat_symlink(env: Env) -> None:
    (env.root / "f.txt").write_text("x")
    (env.root / "link").symlink_to("f.txt")
    result = env.call("file_stat", path="link")
    assert result["is_symlink"] is True and result["link_target"] == "f.txt"
    assert result["type"] == "file" and result["path"] == str(env.root / "link")
    assert result["resolved_path"] == str(env.root / "f.txt")


def test_file_stat_failures(env: Env) -> None:
    env.fails(NotFound, "file_stat", path="missing")
    env.fails(PermissionDenied, "file_stat", path="/etc/passwd")
    (env.root / "etc").symlink_to("/etc")
    env.fails(PermissionDenied, "file_stat", path="etc")
    env.fails(PermissionDenied, "file_stat", path="etc/passwd")
    env.fails(InvalidArgument, "file_stat", path="bad\x00name")


# ----------------------------------------------------------------------------- edit_file
def test_edit_file(env: Env) -> None:
    target = env.root / "config.lua"
    target.write_text("a = 1\ndebug = false\nb = 2\n")
    target.chmod(0o600)
    result = env.call("edit_file", path="config.lua", old="debug = false", new="debug = true")
    assert result == {"path": str(target), "replacements": 1, "first_line": 2, "size": 25}
    assert target.read_text() == "a = 1\ndebug = true\nb = 2\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    every = env.call("edit_file", path="config.lua", old=" = ", new="=", count=0)
    assert every["replacements"] == 3 and target.read_text() == "a=1\ndebug=true\nb=2\n"


def test_edit_file_failures(env: Env) -> None:
    target = env.root / "t.txt"
    target.write_text("x = 1\nx = 1\n")
    error = env.fails(NotFound, "edit_file", path="t.txt", old="y = 2", new="z")
    assert error.details["rule"] == "old_not_found" and "exactly" in error.message
    error = env.fails(InvalidArgument, "edit_file", path="t.txt", old="x = 1", new="x = 2")
    assert error.details["occurrences"] == 2 and error.details["lines"] == [1, 2] and "count=2" in error.message
    assert target.read_text() == "x = 1\nx = 1\n"
    assert env.call("edit_file", path="t.txt", old="x = 1", new="x = 2", count=2)["replacements"] == 2
    env.fails(InvalidArgument, "edit_file", path="t.txt", old="", new="x")
    env.fails(InvalidArgument, "edit_file", path="t.txt", old="x", new="y", count=-1)
    env.fails(NotFound, "edit_file", path="missing.txt", old="a", new="b")
    env.fails(PermissionDenied, "edit_file", path="/etc/passwd", old="root", new="toor")
    (env.root / "crlf.txt").write_bytes(b"one\r\ntwo\r\n")
    assert "\\r\\n" in env.fails(NotFound, "edit_file", path="crlf.txt", old="one\ntwo", new="x").message
    assert env.call("edit_file", path="crlf.txt", old="one\r\ntwo", new="1\r\n2")["replacements"] == 1
    assert (env.root / "crlf.txt").read_bytes() == b"1\r\n2\r\n"  # line endings preserved


# ----------------------------------------------------------------------------- make_directory
def test_make_directory(env: Env) -> None:
    result = env.call("make_directory", path="out/charts/2024")
    assert result == {"path": str(env.root / "out" / "charts" / "2024"), "created": True}
    assert (env.root / "out" / "charts" / "2024").is_dir()
    assert env.call("make_directory", path="out/charts/2024")["created"] is False
    assert env.call("make_directory", path="out/single", parents=False)["created"] is True


def test_make_directory_failures(env: Env) -> None:
    (env.root / "f.txt").write_text("x")
    env.fails(Conflict, "make_directory", path="f.txt")
    assert "parents=true" in env.fails(NotFound, "make_directory", path="a/b/c", parents=False).message
    env.fails(PermissionDenied, "make_directory", path="/etc/aikit-test")
    env.fails(PermissionDenied, "make_directory", path=str(env.outside / "new"))
    env.fails(InvalidArgument, "make_directory", path="f.txt/sub")


# ----------------------------------------------------------------------------- plumbing
def test_tools_run_off_the_event_loop(env: Env) -> None:
    """A file tool awaits a worker thread: the loop keeps serving other tasks meanwhile."""
    (env.root / "a.txt").write_text("x" * 1000)

    async def scenario() -> tuple[int, Any]:
        ticks = 0
        done = False

        async def ticker() -> None:
            nonlocal ticks
            while not done:
                ticks += 1
                await asyncio.sleep(0)

        task = asyncio.create_task(ticker())
        result = await env.registry.acall("file_stat", {"path": "a.txt"}, env.ctx)
        done = True
        await task
        return ticks, result

    ticks, result = asyncio.run(scenario())
    assert result["size"] == 1000 and ticks >= 1


def test_load_builtins_finds_the_filesystem_tools(monkeypatch: pytest.MonkeyPatch) -> None:
    from aikit_components.tools import registry as registry_module

    monkeypatch.setattr(registry_module, "BUILTIN_MODULES", ("filesystem",))
    registry = ToolRegistry().load_builtins()
    assert {t.name for t in registry.list("filesystem")} >= NAMES
