"""Operating-system confinement of the programs aikit starts (``security.confine_processes``).

The argument rules of ``command_rules`` close the known ways the allowed programs run other code;
this is the net beneath them. On Linux with Landlock (5.13 and later), every program started by
``run_process``, the git tools, workflow and mission command steps and plan shell steps runs under
a Landlock ruleset, and so does everything it starts in turn:

- it may read and execute the system's directories (``/usr``, ``/bin``, ``/lib*``, ``/etc``,
  ``/opt``, ``/proc``, ``/sys``, ``/run``, ``/dev``), Python's installation and the user's git
  configuration (``~/.gitconfig``, ``~/.config/git``: git cannot start without reading them);
- it may read its own installation (the prefix above the ``bin`` directory it was found in, and
  above the file that leads to): a program allowed by the policy can load its own libraries;
- it may read and write beneath the policy's allowed paths and a few devices (``/dev/null``, ...);
- nothing else: the user's home directory, ``/tmp`` and other users' files are out of reach,
  whatever the program's arguments say. ``TMPDIR`` points at a scratch directory inside the data
  directory, so programs that need temporary files still work;
- with Landlock ABI 6 or later it cannot signal processes outside its domain (aikit itself).

The ruleset is applied by a small launcher (``confine_launcher.c``, compiled on first use into the
user cache directory, about a millisecond per launch) that execs the program; no ``preexec_fn``.

Modes: ``auto`` (the default) confines when the kernel has Landlock and a C compiler built the
launcher, and otherwise runs programs with the argument rules alone (logged once, and reported
by ``aikit doctor``); ``landlock`` refuses to start a program when confinement is unavailable;
``off`` never confines. Programs in ``security.unrestricted_commands`` are confined too: that
setting lifts the argument rules only, as the path checks still apply to them.
"""

from __future__ import annotations

import ctypes
import logging
import os
import sys
import threading
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from .errors import InvalidArgument, PermissionDenied
from .native_build import build_c

log = logging.getLogger(__name__)

MODES = ("auto", "landlock", "off")
SYSTEM_READ_PATHS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc", "/opt", "/proc",
                     "/sys", "/run", "/dev")
DEVICE_WRITE_PATHS = ("/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom", "/dev/tty", "/dev/pts")

_SYS_LANDLOCK_CREATE_RULESET = 444  # the same number on every architecture (a new-style syscall)
_lock = threading.Lock()
_probed: dict[str, Any] = {}


@dataclass(frozen=True)
class Confinement:
    """How to start a program confined: the launcher and the paths it may read and write."""

    launcher: str
    read: tuple[str, ...]
    write: tuple[str, ...]
    tmpdir: str

    def wrap(self, argv: list[str], env: dict[str, str]) -> tuple[list[str], dict[str, str]]:
        """``argv`` and ``env`` for starting the program (``argv[0]``, a path) through the
        launcher; the program may also read its own installation (see :func:`installation`)."""
        prefix = [self.launcher]
        for path in (*self.read, *installation(argv[0])):
            prefix += ["-r", path]
        for path in self.write:
            prefix += ["-w", path]
        return [*prefix, "--", *argv], {**env, "TMPDIR": self.tmpdir}


def landlock_abi() -> int:
    """The kernel's Landlock ABI version; 0 when Landlock is missing or disabled."""
    with _lock:
        if "abi" not in _probed:
            _probed["abi"] = _probe_abi()
        return _probed["abi"]


def _probe_abi() -> int:
    if not sys.platform.startswith("linux"):
        return 0
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        abi = libc.syscall(ctypes.c_long(_SYS_LANDLOCK_CREATE_RULESET), None, ctypes.c_size_t(0), ctypes.c_uint32(1))
    except (OSError, AttributeError):
        return 0
    return max(int(abi), 0)


def launcher() -> str | None:
    """The built launcher's path; None when no C compiler could build it (logged once)."""
    with _lock:
        if "launcher" not in _probed:
            try:
                source = resources.files(__package__).joinpath("confine_launcher.c").read_bytes()
                _probed["launcher"] = str(build_c(source, "aikit-confine", flags=("-O2", "-s")))
            except (OSError, RuntimeError) as exc:
                log.warning("process confinement unavailable: cannot build its launcher (%s)", exc)
                _probed["launcher"] = None
        return _probed["launcher"]


def status(mode: str = "auto") -> str:
    """One line saying whether programs are confined in ``mode`` and why not (``aikit doctor``)."""
    if mode == "off":
        return "off (security.confine_processes = 'off')"
    abi = landlock_abi()
    if abi < 1:
        return "unavailable: this kernel has no Landlock (programs run with the argument rules only)"
    if launcher() is None:
        return "unavailable: no C compiler to build the launcher (programs run with the argument rules only)"
    return f"Landlock ABI {abi}: programs read the system and write only the allowed paths"


def confinement_for(policy: Any, mode: str, data_dir: Path) -> Confinement | None:
    """The confinement of programs started under ``policy`` (a SecurityPolicy), or None when
    ``mode`` is ``off`` or (in ``auto``) confinement is unavailable here."""
    if mode not in MODES:
        raise InvalidArgument(f"security.confine_processes must be one of {', '.join(MODES)}, got {mode!r}")
    if mode == "off":
        return None
    path = launcher() if landlock_abi() >= 1 else None
    if path is None:
        if mode == "landlock":
            raise PermissionDenied(f"security.confine_processes = 'landlock', but confinement is {status(mode)}; "
                                   "set it to 'auto' to run programs unconfined here",
                                   details={"rule": "confine_processes"})
        _warn_once()
        return None
    tmpdir = data_dir / "tmp" / "processes"
    tmpdir.mkdir(parents=True, exist_ok=True)
    python = {sys.prefix, sys.base_prefix, sys.exec_prefix}
    read = tuple(dict.fromkeys([*SYSTEM_READ_PATHS, *sorted(python), *user_git_config()]))
    write = tuple(dict.fromkeys([*(str(p) for p in policy.allowed_paths), *DEVICE_WRITE_PATHS, str(tmpdir)]))
    return Confinement(path, read, write, str(tmpdir))


def installation(program: str) -> list[str]:
    """Where an allowed program is installed, for it to read and execute: the prefix above its
    ``bin`` directory, for the path it was found at and for the file that path leads to (a
    virtualenv's ``bin/python`` and the interpreter it links to, a version manager's shims and
    versions). A program in ``~/bin`` gets that directory only, and one directly in the home directory or
    the root only its own file."""
    home = Path.home()
    places = []
    for path in dict.fromkeys([Path(os.path.abspath(program)), Path(os.path.realpath(program))]):
        place = path.parent.parent
        if place in (home, Path("/")) or place == path.parent:
            place = path.parent
        if place in (home, Path("/")):
            place = path
        places.append(str(place))
    return list(dict.fromkeys(places))


def user_git_config() -> list[str]:
    """The user's own git configuration files, readable by confined programs: git stops with
    "unknown error occurred while reading the configuration files" when it cannot read them."""
    home = Path.home()
    xdg = Path(os.environ.get("XDG_CONFIG_HOME") or home / ".config")
    return [str(home / ".gitconfig"), str(xdg / "git")]


def _warn_once() -> None:
    with _lock:
        if _probed.get("warned"):
            return
        _probed["warned"] = True
    log.warning("programs run without OS confinement: %s", status())
