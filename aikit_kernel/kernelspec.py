"""Locate, build, install and remove the aikit Jupyter kernelspec.

The canonical spec lives in the repository's ``kernelspec/`` directory
(``kernel.json`` and three logos).  It reaches an installed system in two ways:

* as **shared data** (``{prefix}/share/jupyter/kernels/aikit/``), written by
  pip for both regular and editable installs, so Jupyter sees the kernel as soon
  as aikit is installed into an environment (``argv[0]`` is ``"python"``, which
  jupyter_client replaces with its own interpreter);
* as **package data** (``aikit_kernel/resources/kernelspec/``), copied into the
  wheel by hatchling's ``force-include``.  ``aikit kernel install`` reads it from
  there; in an editable install or a source checkout that directory is absent
  and the repository's ``kernelspec/`` next to the package is used instead.

Specs installed by :func:`install` name ``sys.executable`` explicitly, so a
``--user`` install made from a virtual environment launches that environment's
interpreter whatever Jupyter is running it.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from importlib import resources
from pathlib import Path
from typing import Any

KERNEL_NAME = "aikit"
SPEC_FILES = ("kernel.json", "logo-32x32.png", "logo-64x64.png", "logo-svg.svg")
_PYTHON_NAMES = {"python", "python3", f"python{sys.version_info[0]}.{sys.version_info[1]}"}


class KernelspecError(Exception):
    """A kernelspec could not be located, installed or removed."""


def spec_source_dir() -> Path:
    """Return the directory holding the packaged kernelspec files.

    Looks first at the package data shipped in wheels, then at the source
    checkout (editable installs).  Raises :class:`KernelspecError` if neither
    holds a ``kernel.json``.
    """
    candidates: list[Path] = []
    packaged = resources.files("aikit_kernel").joinpath("resources", "kernelspec")
    if isinstance(packaged, Path):
        candidates.append(packaged)
    candidates.append(Path(__file__).resolve().parent.parent / "kernelspec")
    for candidate in candidates:
        if (candidate / "kernel.json").is_file():
            return candidate
    searched = ", ".join(str(c) for c in candidates)
    raise KernelspecError(
        f"cannot find the aikit kernelspec files (searched: {searched}); reinstall aikit"
    )


def load_spec(source: Path | None = None) -> dict[str, Any]:
    """Return the packaged ``kernel.json`` as a dict."""
    path = (source or spec_source_dir()) / "kernel.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise KernelspecError(f"cannot read {path}: {exc}") from exc


def write_spec(
    dest: Path,
    *,
    display_name: str | None = None,
    executable: str | None = None,
) -> Path:
    """Write a complete kernelspec directory (kernel.json and logos) into *dest*.

    ``argv[0]`` becomes *executable* (default: ``sys.executable``) when the
    packaged spec names a generic ``python``.  Missing logos are skipped: a
    kernelspec is valid without them.  Returns *dest*.
    """
    source = spec_source_dir()
    spec = load_spec(source)
    argv = list(spec.get("argv", []))
    if argv and argv[0] in _PYTHON_NAMES:
        argv[0] = executable or sys.executable
    spec["argv"] = argv
    if display_name:
        spec["display_name"] = display_name
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "kernel.json").write_text(json.dumps(spec, indent=2) + "\n", encoding="utf-8")
    for name in SPEC_FILES[1:]:
        logo = source / name
        if logo.is_file():
            shutil.copyfile(logo, dest / name)
    return dest


def kernels_dir(*, user: bool = False, prefix: str | os.PathLike[str] | None = None) -> Path:
    """Return the ``kernels`` directory for a location, as jupyter_client defines it.

    *user* selects the per-user Jupyter data directory (honours
    ``JUPYTER_DATA_DIR``); *prefix* selects ``{prefix}/share/jupyter/kernels``;
    neither selects the first system-wide Jupyter path.
    """
    from jupyter_core.paths import SYSTEM_JUPYTER_PATH, jupyter_data_dir

    if user:
        return Path(jupyter_data_dir()) / "kernels"
    if prefix is not None:
        return Path(prefix).absolute() / "share" / "jupyter" / "kernels"
    return Path(SYSTEM_JUPYTER_PATH[0]) / "kernels"


def install(
    *,
    name: str = KERNEL_NAME,
    user: bool = False,
    prefix: str | os.PathLike[str] | None = None,
    display_name: str | None = None,
    executable: str | None = None,
) -> Path:
    """Install the aikit kernelspec under *name* and return its directory.

    Location follows :func:`kernels_dir`.  An existing spec of the same name
    at that location is replaced.
    """
    from jupyter_client.kernelspec import KernelSpecManager

    with tempfile.TemporaryDirectory(prefix="aikit-kernelspec-") as tmp:
        spec_dir = write_spec(Path(tmp) / name, display_name=display_name, executable=executable)
        try:
            dest = KernelSpecManager().install_kernel_spec(
                str(spec_dir),
                kernel_name=name,
                user=user,
                prefix=None if prefix is None else str(prefix),
            )
        except ValueError as exc:  # invalid kernel name
            raise KernelspecError(str(exc)) from exc
        except OSError as exc:
            raise KernelspecError(f"cannot install the kernelspec: {exc}") from exc
    return Path(dest)


def find_installed(
    name: str = KERNEL_NAME,
    *,
    user: bool = False,
    prefix: str | os.PathLike[str] | None = None,
    anywhere: bool = False,
) -> Path | None:
    """Return the directory of the installed kernelspec *name*, or None.

    With *anywhere*, search Jupyter's kernel path (the spec Jupyter would use);
    otherwise look only at the location given by *user* / *prefix*.
    """
    if anywhere:
        from jupyter_client.kernelspec import KernelSpecManager

        found = KernelSpecManager().find_kernel_specs().get(name.lower())
        return Path(found) if found else None
    path = kernels_dir(user=user, prefix=prefix) / name.lower()
    return path if (path / "kernel.json").is_file() else None


def uninstall(path: Path) -> None:
    """Remove the kernelspec directory *path* (as returned by :func:`find_installed`)."""
    try:
        if path.is_symlink():
            path.unlink()
        else:
            shutil.rmtree(path)
    except OSError as exc:
        raise KernelspecError(f"cannot remove {path}: {exc}") from exc
