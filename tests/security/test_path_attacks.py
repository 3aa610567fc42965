"""Attacks that reach files outside the allowed paths: archives whose links lead out (directly or
through a chain of links the archive creates itself), members with ``..`` or absolute names,
and recursive walkers (grep, list_directory, file_search) meeting a symlink that leaves the
allowed paths. Each is refused or skipped, and the tool still works afterwards."""

from __future__ import annotations

import io
import tarfile
import zipfile
from pathlib import Path

import pytest

from aikit_components.tools import ToolContext
from aikit_components.tools.archives import TOOLS as ARCHIVE_TOOLS
from aikit_components.tools.filesystem import TOOLS as FS_TOOLS

from .conftest import contained, make_caller

call = make_caller([*ARCHIVE_TOOLS, *FS_TOOLS])
HOW = ("Extract only archives", "nothing was extracted", "AIKIT_ALLOWED_PATHS")


def make_tar(path: Path, members: list[tuple[str, str, str]]) -> Path:
    """A tar with (name, kind, data-or-link-target) members: kind is file, dir, symlink or hardlink."""
    with tarfile.open(path, "w") as tf:
        for name, kind, value in members:
            info = tarfile.TarInfo(name)
            if kind == "file":
                data = value.encode()
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
                continue
            info.type = {"dir": tarfile.DIRTYPE, "symlink": tarfile.SYMTYPE, "hardlink": tarfile.LNKTYPE}[kind]
            if kind == "dir":
                info.mode = 0o755
            else:
                info.linkname = value
            tf.addfile(info)
    return path


def extract_ok(ctx: ToolContext, workdir: Path) -> None:
    """A normal archive still extracts, links inside it included."""
    good = make_tar(workdir / "good.tar", [("d", "dir", ""), ("d/a.txt", "file", "hello"),
                                           ("d/link", "symlink", "a.txt")])
    result = call(ctx, "extract", {"archive": str(good), "destination": "good-out"})
    assert result["files"] == 1 and result["symlinks"] == 1
    assert (workdir / "good-out" / "d" / "link").read_text() == "hello"


DEPTH = "/".join(["s"] * 12)
UP = "/".join([".."] * 12)

ARCHIVES = {
    # a -> . makes a/a/... physically shallower than it reads: the text stays inside, the disk does not
    "chain_through_dot": [("s", "symlink", "."), ("esc", "symlink", f"{DEPTH}/{UP}/etc/passwd")],
    # an earlier link is replaced by a later member so that a link checked before now leads out
    "relinked_later": [("sub", "dir", ""), ("a", "symlink", "sub"), ("b", "symlink", "a/../x"),
                       ("a", "symlink", "."), ("c", "symlink", f"{DEPTH.replace('s', 'a')}/{UP}/etc/passwd")],
    "absolute_symlink": [("p", "symlink", "/etc/passwd")],
    "dotdot_symlink": [("p", "symlink", "../../../../../../etc/passwd")],
    "dotdot_member": [("../escape.txt", "file", "x")],
    "absolute_member": [("/tmp/escape.txt", "file", "x")],
    "hardlink_out": [("h", "hardlink", "../../../../etc/passwd")],
    "hardlink_absolute": [("h", "hardlink", "/etc/passwd")],
    "write_through_link": [("l", "symlink", "."), ("l/../escape.txt", "file", "x")],
}


@pytest.mark.parametrize("case", sorted(ARCHIVES))
def test_extract_refuses_members_that_lead_outside(ctx: ToolContext, workdir: Path, outside: Path, case: str) -> None:
    archive = make_tar(workdir / f"{case}.tar", ARCHIVES[case])
    error = contained("permission_denied", call, ctx, "extract", {"archive": str(archive), "destination": "out"},
                      says=["refusing"])
    assert error.details["rule"] == "archive_member"
    assert not (workdir / "out").exists() or not any((workdir / "out").iterdir()), "something was left behind"
    assert not (workdir / "escape.txt").exists()
    extract_ok(ctx, workdir)


def test_extract_refuses_zip_symlink_chain(ctx: ToolContext, workdir: Path) -> None:
    path = workdir / "chain.zip"
    with zipfile.ZipFile(path, "w") as zf:
        for name, target in (("s", "."), ("esc", f"{DEPTH}/{UP}/etc/passwd")):
            info = zipfile.ZipInfo(name)
            info.create_system = 3
            info.external_attr = (0o120777 << 16)
            zf.writestr(info, target)
    contained("permission_denied", call, ctx, "extract", {"archive": str(path), "destination": "zout"},
              says=["refusing"], how=HOW)
    assert not (workdir / "zout" / "esc").exists()
    extract_ok(ctx, workdir)


def test_list_archive_flags_a_link_outside(ctx: ToolContext, workdir: Path) -> None:
    archive = make_tar(workdir / "abs.tar", ARCHIVES["absolute_symlink"])
    listing = call(ctx, "list_archive", {"archive": str(archive)})
    assert listing["unsafe"] and "absolute" in listing["unsafe"][0]["reason"]


# ------------------------------------------------------------------ recursive walkers and symlinks
@pytest.fixture
def tree(workdir: Path, outside: Path) -> Path:
    (workdir / "mine.txt").write_text("SECRET but mine\n")
    (workdir / "dirlink").symlink_to(outside, target_is_directory=True)
    (workdir / "filelink.txt").symlink_to(outside / "secret.txt")
    (workdir / "sub").mkdir()
    (workdir / "sub" / "loop").symlink_to(workdir, target_is_directory=True)
    return workdir


def test_grep_does_not_follow_symlinks_out(ctx: ToolContext, tree: Path) -> None:
    result = call(ctx, "grep", {"pattern": "SECRET", "path": "."})
    assert [m["file"] for m in result["matches"]] == ["mine.txt"]
    assert result["skipped_outside"] == 2  # dirlink and filelink.txt
    contained("permission_denied", call, ctx, "grep", {"pattern": "SECRET", "path": "filelink.txt"},
              says=["outside the allowed paths"], how=HOW)
    contained("permission_denied", call, ctx, "grep", {"pattern": "SECRET", "path": "dirlink"},
              says=["outside the allowed paths"], how=HOW)


def test_list_directory_recursive_does_not_descend_symlinks(ctx: ToolContext, tree: Path) -> None:
    names = [e["name"] for e in call(ctx, "list_directory", {"path": ".", "recursive": True})["entries"]]
    assert "dirlink" in names and not any(n.startswith("dirlink/") for n in names)
    assert not any("secret" in n for n in names) and not any(n.startswith("sub/loop/") for n in names)


def test_file_search_leaves_out_what_resolves_outside(ctx: ToolContext, tree: Path) -> None:
    for pattern in ("**/*.txt", "*/*", "dirlink/*", "**/secret.txt"):
        result = call(ctx, "file_search", {"pattern": pattern})
        assert not any("secret" in m["name"] for m in result["matches"]), (pattern, result)
    assert [m["name"] for m in call(ctx, "file_search", {"pattern": "*.txt"})["matches"]] == ["mine.txt"]
    contained("invalid_argument", call, ctx, "file_search", {"pattern": "../outside/*"}, says=["'..'"],
              how=("pass the directory to search as root",))


def test_compress_does_not_pack_what_a_symlink_reaches_outside(ctx: ToolContext, tree: Path, workdir: Path) -> None:
    result = call(ctx, "compress", {"source": ".", "destination": "../data/all.tar", "format": "tar"})
    with tarfile.open(result["archive"]) as tf:
        assert not any(m.isfile() and tf.extractfile(m).read() == b"SECRET\n" for m in tf.getmembers() if m.isfile())
