"""The custom import-linter contract (lintrules/private_imports.py) on a small package of its own."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import grimp
import pytest

from lintrules.private_imports import PrivateImport, private_imports

FILES = {
    "__init__.py": "",
    "_shared.py": "HELPER = 1\n_hidden = 2\n",
    "base.py": "_secret = 1\nPUBLIC = 2\n\ndef _own():\n    return _secret\n",
    "user.py": (
        "from . import _shared\n"  # a private module: the package's internals, allowed
        "from ._shared import HELPER\n"  # a public name of a private module: allowed
        "from .base import PUBLIC, _secret\n"  # another module's private name: refused
        "from .sub import _deep\n"
    ),
    "sub/__init__.py": "from ..base import _secret as s\n_deep = 3\n",
}


@pytest.fixture
def package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    for name, text in FILES.items():
        path = tmp_path / "lintpkg" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "lintpkg"
    for name in [m for m in sys.modules if m == "lintpkg" or m.startswith("lintpkg.")]:
        del sys.modules[name]


def test_private_names_imported_across_modules_are_found_and_private_modules_are_not(package: str) -> None:
    graph = grimp.build_graph(package, cache_dir=None)
    assert private_imports(graph, [package]) == [
        PrivateImport("lintpkg.sub", 1, "lintpkg.base", "_secret"),
        PrivateImport("lintpkg.user", 3, "lintpkg.base", "_secret"),
        PrivateImport("lintpkg.user", 4, "lintpkg.sub", "_deep"),
    ]
