"""The security policy every component consults before touching the outside world.

Paths: only inside the allowed roots (default: the working directory and the aikit data
directory); symlinks and ``..`` are resolved before the check, so neither can leave a root.
Environment: only allowlisted variable names can be read by scripts.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from .config import data_dir
from .errors import PermissionDenied

DEFAULT_ENV_ALLOWLIST = ("HOME", "USER", "LANG", "LC_ALL", "TZ", "PWD", "SHELL", "TERM")


@dataclass
class SecurityPolicy:
    """Allowed filesystem roots and readable environment variables."""

    allowed_paths: list[Path] = field(default_factory=list)
    env_allowlist: set[str] = field(default_factory=lambda: set(DEFAULT_ENV_ALLOWLIST))

    @classmethod
    def default(cls, extra_paths: Iterable[str | os.PathLike[str]] = ()) -> "SecurityPolicy":
        """The embedded default: working directory + data directory (+ ``$AIKIT_ALLOWED_PATHS``)."""
        roots = [Path.cwd(), data_dir()]
        roots += [Path(p) for p in os.environ.get("AIKIT_ALLOWED_PATHS", "").split(os.pathsep) if p]
        roots += [Path(p) for p in extra_paths]
        env = set(DEFAULT_ENV_ALLOWLIST)
        env |= {n for n in os.environ.get("AIKIT_ENV_ALLOWLIST", "").split(",") if n}
        return cls([r.resolve() for r in roots], env)

    def check_path(self, path: str | os.PathLike[str], *, write: bool = False) -> Path:
        """Resolve ``path`` (relative to the working directory) and return it when it lies inside
        an allowed root; raise :class:`PermissionDenied` naming the rule otherwise."""
        resolved = Path(path).expanduser()
        if not resolved.is_absolute():
            resolved = Path.cwd() / resolved
        resolved = resolved.resolve()
        for root in self.allowed_paths:
            if resolved == root or resolved.is_relative_to(root):
                return resolved
        action = "write" if write else "read"
        roots = ", ".join(str(r) for r in self.allowed_paths) or "(none)"
        raise PermissionDenied(
            f"cannot {action} {str(path)!r}: it resolves to {resolved}, outside the allowed paths ({roots}). "
            "Add its directory to AIKIT_ALLOWED_PATHS to allow it.",
            details={"rule": "allowed_paths", "path": str(resolved)},
        )

    def check_env(self, name: str) -> bool:
        """True when scripts may read the environment variable ``name``."""
        return name in self.env_allowlist
