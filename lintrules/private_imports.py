"""An import-linter contract: no module imports another module's private name.

A leading underscore means "private to its module". ``from .wire_errors import _quote`` in another
module breaks that promise, so this contract fails on every ``from X import _name`` (``__dunder__``
names aside) where ``X`` is a module of the checked packages and ``X._name`` is not itself a module:
importing a private *module* (``from . import _fsutil``, ``from ._fsutil import checked``) is how
a package shares its internals, and stays allowed.

Enabled in pyproject.toml::

    [tool.importlinter]
    contract_types = ["no_private_imports: lintrules.private_imports.PrivateImportsContract"]

    [[tool.importlinter.contracts]]
    name = "No module imports another module's _private names"
    type = "no_private_imports"
    containers = ["aikit_components", "aikit_kernel"]
"""

from __future__ import annotations

import ast
import importlib.util
from dataclasses import dataclass
from pathlib import Path

from grimp import ImportGraph
from importlinter.application import output
from importlinter.domain import fields
from importlinter.domain.contract import Contract, ContractCheck


@dataclass(frozen=True)
class PrivateImport:
    """One ``from <imported> import <name>`` of a private name, at ``importer``'s ``line``."""

    importer: str
    line: int
    imported: str
    name: str


def is_private(name: str) -> bool:
    """``_name`` is private; ``__name__`` (dunder) and ``_`` alone are not."""
    return name.startswith("_") and not name.startswith("__") and name != "_"


def module_file(module: str) -> Path | None:
    """The source file of ``module`` (a package's ``__init__.py``), found without importing it."""
    root, _, rest = module.partition(".")
    spec = importlib.util.find_spec(root)
    if spec is None or not spec.submodule_search_locations:
        return None
    base = Path(next(iter(spec.submodule_search_locations)))
    path = base.joinpath(*rest.split(".")) if rest else base
    if (path / "__init__.py").is_file():
        return path / "__init__.py"
    if path.with_suffix(".py").is_file():
        return path.with_suffix(".py")
    return None


def resolve(importer: str, is_package: bool, level: int, module: str | None) -> str:
    """The absolute module named by ``from <level dots><module> import ...`` inside ``importer``."""
    if level == 0:
        return module or ""
    parts = importer.split(".")
    if not is_package:
        parts = parts[:-1]
    if level > 1:
        parts = parts[: len(parts) - (level - 1)]
    return ".".join(parts + ([module] if module else []))


def private_imports(graph: ImportGraph, containers: list[str]) -> list[PrivateImport]:
    """Every private-name import by a module of ``containers``, from a module of ``containers``."""
    modules = {m for m in graph.modules if any(m == c or m.startswith(c + ".") for c in containers)}
    found: list[PrivateImport] = []
    for importer in sorted(modules):
        path = module_file(importer)
        if path is None:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        for node in ast.walk(tree):
            if not isinstance(node, ast.ImportFrom):
                continue
            imported = resolve(importer, path.name == "__init__.py", node.level, node.module)
            if imported not in modules or imported == importer:
                continue
            for alias in node.names:
                if is_private(alias.name) and f"{imported}.{alias.name}" not in modules:
                    found.append(PrivateImport(importer, node.lineno, imported, alias.name))
    return found


class PrivateImportsContract(Contract):
    """Fails listing every ``from X import _name`` across modules of ``containers``."""

    containers = fields.ListField(subfield=fields.StringField())

    def check(self, graph: ImportGraph, verbose: bool) -> ContractCheck:
        found = private_imports(graph, list(self.containers))  # type: ignore[call-overload]
        return ContractCheck(kept=not found, metadata={"private_imports": found})

    def render_broken_contract(self, check: ContractCheck) -> None:
        found: list[PrivateImport] = check.metadata["private_imports"]
        output.print_error(f"{len(found)} import(s) of another module's private name:")
        output.new_line()
        for item in found:
            output.print_error(f"-   {item.importer} (l.{item.line}) imports {item.imported}.{item.name}", bold=False)
        output.new_line()
