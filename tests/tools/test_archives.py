"""Archive tools, called through a ToolRegistry (so argument validation is exercised) with the
default security policy. Hostile archives are crafted with zipfile/tarfile."""

from __future__ import annotations

import io
import os
import struct
import tarfile
import zipfile
from pathlib import Path
from typing import Any

import pytest

from aikit_components.errors import (
    Conflict,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    ValidationError,
)
from aikit_components.tools import ToolRegistry
from aikit_components.tools.archives import TOOLS
from tests.support.tools import ToolEnv as Env

NAMES = {"compress", "extract", "list_archive"}

def _project(root: Path) -> Path:
    src = root / "reports"
    (src / "q").mkdir(parents=True)
    (src / "summary.txt").write_text("total: 42\n")
    (src / "q" / "q1.csv").write_text("a,b\n1,2\n")
    return src


def _tree_of(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): ("<dir>" if p.is_dir() else p.read_text())
            for p in sorted(root.rglob("*"))}


def _zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def _tar(path: Path, members: list[tarfile.TarInfo | tuple[str, bytes]], mode: str = "w") -> Path:
    with tarfile.open(path, mode) as tf:
        for member in members:
            if isinstance(member, tuple):
                info = tarfile.TarInfo(member[0])
                info.size = len(member[1])
                tf.addfile(info, io.BytesIO(member[1]))
            else:
                tf.addfile(member)
    return path


def _link(name: str, target: str, kind: bytes = tarfile.SYMTYPE) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = target
    return info


# ----------------------------------------------------------------------------- declarations
def test_all_tools_exported() -> None:
    assert {t.name for t in TOOLS} == NAMES


@pytest.mark.parametrize("item", TOOLS, ids=lambda t: t.name)
def test_schema_and_doc(item: Any) -> None:
    assert item.category == "archives"
    assert item.security == ("read" if item.name == "list_archive" else "write")
    assert item.is_async and item.wants_ctx
    assert item.description.strip() and "\n" in item.description
    assert item.returns
    schema = item.parameters
    assert schema["additionalProperties"] is False and "ctx" not in schema["properties"]
    for name, prop in schema["properties"].items():
        assert prop.get("description"), f"{item.name}.{name} has no description"
        assert "type" in prop or "enum" in prop
    assert "zip" in schema["properties"]["format"]["enum"]
    doc = item.doc()
    assert doc.startswith(f"Tool {item.name}{{") and "Returns:" in doc and "Example:" in doc
    for name in schema["properties"]:
        assert f"  {name}: " in doc
    for example in item.examples:
        assert item.validate(example["args"]) == []


BAD_ARGS = [
    ("compress", {"source": "reports"}),
    ("compress", {"source": "reports", "destination": "r.rar", "format": "rar"}),
    ("compress", {"source": 1, "destination": "r.zip"}),
    ("extract", {"archive": "a.zip"}),
    ("extract", {"archive": "a.zip", "destination": "out", "max_total_bytes": "1GB"}),
    ("extract", {"archive": "a.zip", "destination": "out", "format": "7z"}),
    ("list_archive", {"archive": "a.zip", "max_entries": "all"}),
    ("list_archive", {"archive": ["a.zip"]}),
    ("list_archive", {"archive": "a.zip", "password": "x"}),
]


@pytest.mark.parametrize("name, args", BAD_ARGS)
def test_validation_rejects_bad_arguments(env: Env, name: str, args: dict[str, Any]) -> None:
    error = env.fails(ValidationError, name, **args)
    assert error.details["problems"]


def test_every_tool_has_a_validation_case() -> None:
    assert {name for name, _ in BAD_ARGS} == NAMES


# ----------------------------------------------------------------------------- compress
@pytest.mark.parametrize("fmt, name", [("zip", "r.zip"), ("tar", "r.tar"), ("tar.gz", "r.tar.gz"),
                                        ("tar.bz2", "r.tar.bz2"), ("tar.xz", "r.tar.xz")])
def test_compress_and_extract_round_trip(env: Env, fmt: str, name: str) -> None:
    src = _project(env.root)
    result = env.call("compress", source="reports", destination=name, format=fmt)
    assert result["archive"] == str(env.root / name) and result["format"] == fmt
    assert result["files"] == 2 and result["directories"] == 2 and result["uncompressed_bytes"] == 18
    assert result["bytes"] == (env.root / name).stat().st_size > 0
    out = env.call("extract", archive=name, destination="out")
    assert out["format"] == fmt and out["files"] == 2 and out["bytes"] == 18
    assert _tree_of(env.root / "out" / "reports") == _tree_of(src)


def test_compress_single_file(env: Env) -> None:
    (env.root / "notes.txt").write_text("hello")
    result = env.call("compress", source="notes.txt", destination="notes.zip")
    assert result["files"] == 1 and result["directories"] == 0
    with zipfile.ZipFile(env.root / "notes.zip") as zf:
        assert zf.namelist() == ["notes.txt"] and zf.read("notes.txt") == b"hello"


def test_compress_archive_inside_its_source(env: Env) -> None:
    _project(env.root)
    env.call("compress", source="reports", destination="reports/self.zip")
    with zipfile.ZipFile(env.root / "reports" / "self.zip") as zf:
        assert not any("self.zip" in n or n.endswith(".tmp") for n in zf.namelist())
    assert [p.name for p in (env.root / "reports").iterdir() if p.name.endswith(".tmp")] == []


def test_compress_symlinks(env: Env) -> None:
    src = _project(env.root)
    (src / "inner").symlink_to("summary.txt")
    tar_result = env.call("compress", source="reports", destination="r.tar", format="tar")
    assert tar_result["symlinks"] == 1
    with tarfile.open(env.root / "r.tar") as tf:
        assert tf.getmember("reports/inner").issym()
    zipped = env.call("compress", source="reports", destination="r.zip")
    assert zipped["files"] == 3
    (src / "passwd").symlink_to("/etc/passwd")
    error = env.fails(PermissionDenied, "compress", source="reports", destination="leak.zip")
    assert not (env.root / "leak.zip").exists() and "outside the allowed paths" in error.message
    with_link = env.call("compress", source="reports", destination="links.tar.gz", format="tar.gz")
    assert with_link["symlinks"] == 2  # tar stores the link itself, never /etc/passwd's content


def test_compress_failures(env: Env) -> None:
    _project(env.root)
    env.call("compress", source="reports", destination="r.zip")
    error = env.fails(Conflict, "compress", source="reports", destination="r.zip")
    assert "overwrite=true" in error.message
    assert env.call("compress", source="reports", destination="r.zip", overwrite=True)["files"] == 2
    assert "format='tar.gz'" in env.fails(InvalidArgument, "compress", source="reports", destination="r.tar.gz").message
    env.fails(InvalidArgument, "compress", source="reports", destination="reports")
    env.fails(NotFound, "compress", source="missing", destination="m.zip")
    env.fails(PermissionDenied, "compress", source="/etc", destination="etc.zip")
    env.refuses_destinations_outside("compress", "reports", "r.zip")


# ----------------------------------------------------------------------------- extract
def test_extract_zip(env: Env) -> None:
    _zip(env.root / "a.zip", {"docs/": b"", "docs/readme.md": b"# hi\n", "top.txt": b"top"})
    result = env.call("extract", archive="a.zip", destination="out")
    assert result == {"archive": str(env.root / "a.zip"), "destination": str(env.root / "out"), "format": "zip",
                      "files": 2, "directories": 1, "symlinks": 0, "bytes": 8, "declared_bytes": 8}
    assert (env.root / "out" / "docs" / "readme.md").read_text() == "# hi\n"


def test_extract_detects_format_from_content(env: Env) -> None:
    _tar(env.root / "data.bin", [("x.txt", b"x")], mode="w:gz")
    assert env.call("extract", archive="data.bin", destination="out")["format"] == "tar.gz"
    env.fails(InvalidArgument, "extract", archive="data.bin", destination="out2", format="zip")


def test_extract_safe_links(env: Env) -> None:
    _tar(env.root / "ok.tar", [("sub/file.txt", b"data"), _link("sub/alias", "file.txt"),
                               _link("copy.txt", "sub/file.txt", tarfile.LNKTYPE)])
    result = env.call("extract", archive="ok.tar", destination="out")
    assert result["files"] == 2 and result["symlinks"] == 1
    assert os.readlink(env.root / "out" / "sub" / "alias") == "file.txt"
    assert (env.root / "out" / "copy.txt").read_text() == "data"


def _assert_refused(env: Env, archive: Path, member: str) -> None:
    error = env.fails(PermissionDenied, "extract", archive=archive.name, destination="out")
    assert error.details["member"] == member and repr(member) in error.message
    assert error.details["rule"] == "archive_member"
    assert not (env.root / "out").exists(), "nothing may be extracted from a refused archive"
    listed = env.call("list_archive", archive=archive.name)
    assert member in {u["name"] for u in listed["unsafe"]}


@pytest.mark.parametrize("member", ["../evil.txt", "a/../../evil.txt", "/tmp/evil.txt", "..\\evil.txt",
                                    "C:/evil.txt"])
def test_extract_refuses_zip_traversal(env: Env, member: str) -> None:
    archive = _zip(env.root / "bad.zip", {"fine.txt": b"ok", member: b"pwned"})
    _assert_refused(env, archive, member)
    assert not (env.root.parent / "evil.txt").exists()


@pytest.mark.parametrize("members, bad", [
    ([("../evil.txt", b"x")], "../evil.txt"),
    ([("/etc/evil.txt", b"x")], "/etc/evil.txt"),
    ([_link("etc", "/etc")], "etc"),
    ([_link("up", "../..")], "up"),
    ([_link("sub/up", "../../secret")], "sub/up"),
    ([_link("pw", "/etc/passwd", tarfile.LNKTYPE)], "pw"),
    ([_link("pw", "../outside.txt", tarfile.LNKTYPE)], "pw"),
    ([_link("pw", "never-stored.txt", tarfile.LNKTYPE)], "pw"),
])
def test_extract_refuses_tar_escapes(env: Env, members: list[Any], bad: str) -> None:
    archive = _tar(env.root / "bad.tar", [("fine.txt", b"ok"), *members])
    _assert_refused(env, archive, bad)


@pytest.mark.parametrize("kind", [tarfile.CHRTYPE, tarfile.BLKTYPE, tarfile.FIFOTYPE])
def test_extract_refuses_special_files(env: Env, kind: bytes) -> None:
    info = tarfile.TarInfo("dev/thing")
    info.type = kind
    info.devmajor, info.devminor = 1, 3
    archive = _tar(env.root / "dev.tar", [info])
    _assert_refused(env, archive, "dev/thing")


def test_extract_refuses_zip_symlink_outside(env: Env) -> None:
    path = env.root / "link.zip"
    with zipfile.ZipFile(path, "w") as zf:
        info = zipfile.ZipInfo("passwd")
        info.create_system = 3
        info.external_attr = (0o120777 << 16)
        zf.writestr(info, "/etc/passwd")
    _assert_refused(env, path, "passwd")


def test_extract_through_existing_symlink_is_refused(env: Env) -> None:
    """A symlink already in the destination cannot redirect writes outside it."""
    (env.root / "out").mkdir()
    (env.root / "out" / "evil").symlink_to(env.outside)
    _tar(env.root / "t.tar", [("first/ok.txt", b"fine"), ("evil/new/planted.txt", b"x")])
    error = env.fails(PermissionDenied, "extract", archive="t.tar", destination="out")
    assert error.details["member"] == "evil/new/planted.txt"
    assert not (env.outside / "new").exists()
    assert sorted(p.name for p in (env.root / "out").iterdir()) == ["evil"]  # first/ok.txt rolled back


def test_extract_zip_bomb_guards(env: Env) -> None:
    # a central directory that declares ~4 GiB for a small member: refused before writing anything
    path = _zip(env.root / "bomb.zip", {"zeros.bin": b"\0" * 1000})
    data = bytearray(path.read_bytes())
    central = data.find(b"PK\x01\x02")
    data[central + 24:central + 28] = struct.pack("<I", 0xFFFFFFF0)
    path.write_bytes(bytes(data))
    error = env.fails(ResourceExhausted, "extract", archive="bomb.zip", destination="out")
    assert "max_total_bytes" in error.message and error.details["limit"] == 1024 ** 3
    assert not (env.root / "out").exists()
    # a custom, lower size cap
    _zip(env.root / "big.zip", {"a.bin": b"\0" * 5000, "b.bin": b"\0" * 5000})
    env.fails(ResourceExhausted, "extract", archive="big.zip", destination="out", max_total_bytes=6000)
    assert env.call("extract", archive="big.zip", destination="out", max_total_bytes=10000)["bytes"] == 10000
    # too many members
    _zip(env.root / "many.zip", {f"f{i}.txt": b"" for i in range(30)})
    error = env.fails(ResourceExhausted, "extract", archive="many.zip", destination="many", max_members=20)
    assert "max_members" in error.message and not (env.root / "many").exists()


def test_extract_counts_bytes_actually_written(env: Env) -> None:
    """Hard links declare no size but are extracted as copies: the written bytes still count."""
    members: list[Any] = [("data.bin", b"\0" * 600)] + [_link(f"copy{i}", "data.bin", tarfile.LNKTYPE) for i in range(5)]
    _tar(env.root / "links.tar", members)
    error = env.fails(ResourceExhausted, "extract", archive="links.tar", destination="out", max_total_bytes=1000)
    assert error.details["member"] == "copy0"
    assert not (env.root / "out").exists()  # partial output removed
    assert env.call("extract", archive="links.tar", destination="out")["bytes"] == 3600


def test_extract_default_member_cap(env: Env) -> None:
    _tar(env.root / "many.tar", [(f"f{i}", b"") for i in range(10_001)])
    env.fails(ResourceExhausted, "extract", archive="many.tar", destination="out")


def test_extract_overwrite(env: Env) -> None:
    _zip(env.root / "a.zip", {"x.txt": b"new"})
    (env.root / "out").mkdir()
    (env.root / "out" / "x.txt").write_text("old")
    error = env.fails(Conflict, "extract", archive="a.zip", destination="out")
    assert "'x.txt'" in error.message and (env.root / "out" / "x.txt").read_text() == "old"
    env.call("extract", archive="a.zip", destination="out", overwrite=True)
    assert (env.root / "out" / "x.txt").read_text() == "new"


def test_extract_failures(env: Env) -> None:
    (env.root / "plain.txt").write_text("not an archive")
    _zip(env.root / "a.zip", {"x.txt": b"x"})
    env.fails(NotFound, "extract", archive="missing.zip", destination="out")
    assert "not a zip or tar" in env.fails(InvalidArgument, "extract", archive="plain.txt", destination="out").message
    env.fails(InvalidArgument, "extract", archive="a.zip", destination="plain.txt")
    env.fails(PermissionDenied, "extract", archive="/etc/passwd", destination="out")
    env.fails(PermissionDenied, "extract", archive="a.zip", destination=str(env.outside / "out"))
    env.fails(PermissionDenied, "extract", archive="a.zip", destination="../out")
    env.fails(InvalidArgument, "extract", archive="a.zip", destination="out", max_members=0)
    truncated = env.root / "cut.zip"
    truncated.write_bytes((env.root / "a.zip").read_bytes()[:-30])
    env.fails(InvalidArgument, "extract", archive="cut.zip", destination="out")
    assert not (env.outside / "out").exists()


# ----------------------------------------------------------------------------- list_archive
def test_list_archive(env: Env) -> None:
    _project(env.root)
    env.call("compress", source="reports", destination="r.zip")
    result = env.call("list_archive", archive="r.zip")
    assert result["format"] == "zip" and result["count"] == 4 and result["total_size"] == 18
    assert result["truncated"] is False and result["unsafe"] == []
    by_name = {e["name"]: e for e in result["entries"]}
    assert by_name["reports/"]["type"] == "directory"
    assert by_name["reports/summary.txt"]["type"] == "file" and by_name["reports/summary.txt"]["size"] == 10
    assert "compressed_size" in by_name["reports/summary.txt"]
    _tar(env.root / "l.tar.gz", [("a.txt", b"a"), _link("b", "a.txt")], mode="w:gz")
    tar_listing = env.call("list_archive", archive="l.tar.gz")
    assert tar_listing["format"] == "tar.gz"
    assert tar_listing["entries"][1] == {"name": "b", "type": "symlink", "size": 0, "link_target": "a.txt",
                                         "modified": "1970-01-01T00:00:00Z"}
    cut = env.call("list_archive", archive="r.zip", max_entries=1)
    assert cut["count"] == 1 and cut["truncated"] is True


def test_list_archive_failures(env: Env) -> None:
    (env.root / "plain.txt").write_text("nope")
    env.fails(NotFound, "list_archive", archive="missing.tar")
    env.fails(InvalidArgument, "list_archive", archive="plain.txt")
    env.fails(InvalidArgument, "list_archive", archive=".")
    env.fails(PermissionDenied, "list_archive", archive="/etc/passwd")
    env.fails(InvalidArgument, "list_archive", archive="plain.txt", format="tar")
    _zip(env.root / "a.zip", {"x": b""})
    env.fails(InvalidArgument, "list_archive", archive="a.zip", max_entries=0)


def test_load_builtins_finds_the_archive_tools(monkeypatch: pytest.MonkeyPatch) -> None:
    from aikit_components.tools import registry as registry_module

    monkeypatch.setattr(registry_module, "BUILTIN_MODULES", ("archives",))
    registry = ToolRegistry().load_builtins()
    assert {t.name for t in registry.list("archives")} >= NAMES
