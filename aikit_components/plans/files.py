"""Reading the kit's JSON configuration files (``hooks.json``, ``manifest.json``) and finding
them when no path is given."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ..errors import InvalidArgument, IOFailure, NotFound


def read_text_file(path: str | os.PathLike[str], what: str, expected: str | None = None, *,
                   missing_hint: str = "") -> str:
    """The UTF-8 text of ``path``; errors name the file (``what`` says which kind it is,
    ``expected`` what a directory should have been: ``what`` by default; ``missing_hint`` ends the
    message when there is no such file)."""
    p = Path(path)
    try:
        return p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise NotFound(f"{what} {str(p)!r} does not exist{missing_hint}", details={"path": str(p)}) from None
    except IsADirectoryError:
        raise InvalidArgument(f"{str(p)!r} is a directory, not a {expected or what}") from None
    except UnicodeDecodeError as exc:
        raise InvalidArgument(f"{what} {str(p)!r} is not UTF-8 text: {exc}") from None
    except OSError as exc:
        raise IOFailure(f"cannot read {what} {str(p)!r}: {exc.strerror or exc}") from None


def read_json_file(path: str | os.PathLike[str], what: str, *, missing_hint: str = "") -> Any:
    """The parsed JSON of ``path``; errors name the file (``what`` says which kind it is,
    ``missing_hint`` ends the message when there is no such file)."""
    p = Path(path)
    text = read_text_file(p, what, missing_hint=missing_hint)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidArgument(f"{p}:{exc.lineno}:{exc.colno}: not valid JSON: {exc.msg}",
                              details={"path": str(p), "line": exc.lineno}) from None


def find_config_file(name: str, plan_path: Path | None, cwd: Path | None = None) -> Path | None:
    """``NAME`` or ``config/NAME`` next to the plan, then in the working directory; None when
    there is none."""
    dirs: list[Path] = []
    if plan_path is not None:
        dirs.append(plan_path.resolve().parent)
    here = (cwd or Path.cwd()).resolve()
    if here not in dirs:
        dirs.append(here)
    for d in dirs:
        for candidate in (d / name, d / "config" / name):
            if candidate.is_file():
                return candidate
    return None
