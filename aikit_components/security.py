"""The security policy every component consults before touching the outside world.

- Paths: only inside the allowed roots (default: the working directory and the aikit data
  directory); symlinks and ``..`` are resolved before the check, so neither can leave a root.
- Hosts (network tools): http/https only; private, loopback, link-local (169.254.169.254, the
  cloud metadata endpoint), multicast and reserved addresses are denied unless the host is listed
  in ``allowed_hosts`` or ``allow_private_hosts`` is set; a non-empty ``allowed_hosts`` list is
  also an allowlist for public hosts. Checked on the resolved addresses (no DNS-rebinding bypass).
- Commands (process tools): the program's base name must be in ``allowed_commands``; no shell;
  arguments that look like paths must resolve inside the allowed roots (see :meth:`check_command`);
  options that make an allowed program run another program, set the clock or follow symlinks out
  are refused per program, git runs with hardened settings (see :mod:`.command_rules`), and a
  program whose purpose is to run another (env, xargs, timeout...) needs ``unrestricted_commands``.
  An allowed program runs with the user's rights, so allowing an interpreter or a shell is a
  decision to trust whatever it is given.
- Environment: scripts read only allowlisted variable names.
- Budgets per run: ``max_tool_calls`` and ``max_wall_time_s`` (see ``tools.Budget``).

A denial raises :class:`PermissionDenied` naming the rule and how to change it.
"""

from __future__ import annotations

import fnmatch
import ipaddress
import os
import shutil
import socket
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from .command_rules import ARGUMENT_RULES, RUNS_PROGRAMS, check_arguments, harden_git
from .config import DEFAULT_COMMANDS, data_dir
from .errors import InvalidArgument, IOFailure, NotFound, PermissionDenied

DEFAULT_ENV_ALLOWLIST = ("HOME", "USER", "LANG", "LC_ALL", "TZ", "PWD", "SHELL", "TERM")


@dataclass
class SecurityPolicy:
    """What scripts, tools and agents may touch. Build with :meth:`default` or :meth:`from_config`."""

    allowed_paths: list[Path] = field(default_factory=list)
    env_allowlist: set[str] = field(default_factory=lambda: set(DEFAULT_ENV_ALLOWLIST))
    allowed_hosts: list[str] = field(default_factory=list)
    allow_private_hosts: bool = False
    allowed_commands: set[str] = field(default_factory=lambda: set(DEFAULT_COMMANDS))
    unrestricted_commands: set[str] = field(default_factory=set)
    max_tool_calls: int | None = 1000
    max_wall_time_s: float | None = 3600.0

    @classmethod
    def default(cls, extra_paths: Iterable[str | os.PathLike[str]] = ()) -> SecurityPolicy:
        """The embedded default: working directory + data directory (+ ``$AIKIT_ALLOWED_PATHS``)."""
        roots = [Path.cwd(), data_dir()]
        roots += [Path(p) for p in os.environ.get("AIKIT_ALLOWED_PATHS", "").split(os.pathsep) if p]
        roots += [Path(p) for p in extra_paths]
        env = set(DEFAULT_ENV_ALLOWLIST)
        env |= {n for n in os.environ.get("AIKIT_ENV_ALLOWLIST", "").split(",") if n}
        return cls([r.resolve() for r in roots], env)

    @classmethod
    def from_config(cls, config: Any) -> SecurityPolicy:
        """The default policy widened or narrowed by the ``[security]`` section of aikit.toml."""
        policy = cls.default(extra_paths=config.get("security.allowed_paths", None) or [])
        policy.env_allowlist |= set(config.get("security.env_allowlist", None) or [])
        policy.allowed_hosts = list(config.get("security.allowed_hosts", None) or [])
        policy.allow_private_hosts = bool(config.get("security.allow_private_hosts", False))
        commands = config.get("security.allowed_commands", None)
        if commands is not None:
            policy.allowed_commands = set(commands)
        policy.unrestricted_commands = set(config.get("security.unrestricted_commands", None) or [])
        policy.max_tool_calls = config.get("security.max_tool_calls", policy.max_tool_calls)
        policy.max_wall_time_s = config.get("security.max_wall_time_s", policy.max_wall_time_s)
        return policy

    # ------------------------------------------------------------------ paths
    def check_path(self, path: str | os.PathLike[str], *, write: bool = False) -> Path:
        """Resolve ``path`` (relative to the working directory) and return it when it lies inside
        an allowed root; raise :class:`PermissionDenied` naming the rule otherwise."""
        if isinstance(path, str) and ("\x00" in path or not path.strip()):
            raise InvalidArgument("path is empty or contains a NUL byte")
        resolved = _resolve(Path(path).expanduser(), Path.cwd(), str(path))
        if self._inside(resolved):
            return resolved
        action = "write" if write else "read"
        raise PermissionDenied(
            f"cannot {action} {str(path)!r}: it resolves to {resolved}, outside the allowed paths ({self._roots()}). "
            "Add its directory to AIKIT_ALLOWED_PATHS (or security.allowed_paths in aikit.toml) to allow it.",
            details={"rule": "allowed_paths", "path": str(resolved)},
        )

    def _inside(self, resolved: Path) -> bool:
        return any(resolved == root or resolved.is_relative_to(root) for root in self.allowed_paths)

    def _roots(self) -> str:
        return ", ".join(str(r) for r in self.allowed_paths) or "(none)"

    # ------------------------------------------------------------------ environment
    def check_env(self, name: str) -> bool:
        """True when scripts may read the environment variable ``name``."""
        return name in self.env_allowlist

    # ------------------------------------------------------------------ network
    def check_url(self, url: str) -> tuple[str, str, int]:
        """Validate an http(s) URL's form and host name against ``allowed_hosts``; return
        (scheme, host, port). Call :meth:`check_addresses` on the resolved addresses too."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https"):
            raise PermissionDenied(f"only http and https URLs are allowed, got {parts.scheme or 'no scheme'!r} in {url!r}",
                                   details={"rule": "url_scheme", "url": url})
        host = (parts.hostname or "").lower()
        if host.endswith(".") and not host.endswith(".."):
            host = host[:-1]  # "localhost." and "127.0.0.1." name the same host as without the dot
        if not host:
            raise InvalidArgument(f"URL has no host: {url!r}")
        try:
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError:
            raise InvalidArgument(f"URL has an invalid port: {url!r}") from None
        if self.allowed_hosts and not self.host_listed(host):
            raise PermissionDenied(
                f"host {host!r} is not in security.allowed_hosts ({', '.join(self.allowed_hosts)}); add it to allow it",
                details={"rule": "allowed_hosts", "host": host},
            )
        literal = _ip_or_none(host)
        if literal is not None:
            self.check_addresses(host, [str(literal)])
        elif (host == "localhost" or host.endswith(".localhost")) and not (
                self.allow_private_hosts or self.host_listed(host)):
            raise PermissionDenied(
                f"{host!r} is a loopback name (RFC 6761); network tools may not reach it. List the host in "
                "security.allowed_hosts (or set security.allow_private_hosts = true) to allow it.",
                details={"rule": "private_hosts", "host": host, "address": "127.0.0.1"})
        return parts.scheme, host, port

    def host_listed(self, host: str) -> bool:
        return any(fnmatch.fnmatchcase(host, pattern.lower()) for pattern in self.allowed_hosts)

    def check_addresses(self, host: str, addresses: Sequence[str]) -> None:
        """Deny private, loopback, link-local, multicast and reserved addresses unless allowed."""
        if self.allow_private_hosts or self.host_listed(host):
            return
        for address in addresses:
            ip = _ip_or_none(address)
            kind = _non_public(ip) if ip is not None else None
            if kind is not None:
                raise PermissionDenied(
                    f"{host!r} resolves to {address}, a {kind} address; network tools may not reach it. "
                    "List the host in security.allowed_hosts (or set security.allow_private_hosts = true) to allow it.",
                    details={"rule": "private_hosts", "host": host, "address": address},
                )

    async def resolve_and_check(self, url: str) -> tuple[str, str, int, list[str]]:
        """:meth:`check_url`, then resolve the host and :meth:`check_addresses` (async DNS)."""
        import asyncio

        scheme, host, port = self.check_url(url)
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except socket.gaierror as exc:
            raise IOFailure(f"cannot resolve host {host!r}: {exc.strerror} (check the name and the network)",
                            details={"host": host}) from None
        addresses = sorted({info[4][0] for info in infos})
        self.check_addresses(host, addresses)
        return scheme, host, port, addresses

    # ------------------------------------------------------------------ processes
    def check_command(self, argv: Sequence[str], cwd: str | os.PathLike[str] | None = None) -> list[str]:
        """Allow ``argv``, to be run in ``cwd`` (checked with :meth:`check_path`; default: the current
        directory), and return it with the program replaced by its absolute path on PATH.

        The program: its base name must be in ``allowed_commands`` (rule ``allowed_commands``), and a
        program given as a path must be that same file (a script's own ``./git`` is not the allowed
        git). An allowed program runs with the user's rights: an interpreter or a shell does whatever
        its arguments say, which no check here can contain, so none is allowed by default.

        The arguments (rule ``allowed_paths``): the policy does not know what a program does with an
        argument, so it checks every argument that looks like a path. Candidates are the argument
        itself, the value of ``--opt=value`` or ``name=value`` (after the first ``=``), and in a
        short-option cluster such as ``-f/etc/passwd`` the text from its first ``/``, ``~`` or
        ``.``. A candidate is checked when it is absolute, starts with ``~`` (expanded to the home
        directory), contains ``/`` or ``..``, or names an existing file (or symlink) in ``cwd``; it
        is resolved against ``cwd`` with symlinks followed and must land inside an allowed path
        (or be ``/dev/null``). URLs with a ``scheme://`` are not paths, except ``file://`` whose
        path is checked. So
        ``cat /etc/hostname``, ``cat ../x`` and ``cat link`` (a symlink in ``cwd`` pointing
        outside) are refused, while ``cat notes.txt``, ``grep -n word src/a.py``,
        ``git log HEAD~1..HEAD``, ``origin/main`` and ``https://...`` pass (a word such as
        ``a/b`` or ``a..b`` resolves inside ``cwd``). Text that merely looks like an outside path is
        refused too (``echo /etc``): pass such text on standard input instead.

        The argument rules (rule ``command_arguments``, see :mod:`.command_rules`): options that
        make a known program run another program, set the clock or follow symlinks out are refused;
        a program whose purpose is running others (``env``, ``xargs``...) is refused; ``git`` runs
        only built-in subcommands, with hardened settings placed before the caller's arguments (the
        returned argv is longer than the one given). Programs in ``unrestricted_commands`` skip
        these rules.
        """
        if not argv or not all(isinstance(a, str) for a in argv):
            raise InvalidArgument("command must be a non-empty list of strings (no shell)")
        if any("\x00" in a for a in argv):
            raise InvalidArgument("command arguments must not contain NUL bytes")
        program = os.path.basename(argv[0])
        if program not in self.allowed_commands:
            raise PermissionDenied(
                f"command {program!r} is not allowed (allowed: {', '.join(sorted(self.allowed_commands))}); "
                "add it to security.allowed_commands in aikit.toml to allow it (an allowed program runs "
                "with your rights: allowing an interpreter or a shell trusts whatever it is given)",
                details={"rule": "allowed_commands", "command": program},
            )
        resolved = shutil.which(program)
        if resolved is None:
            raise NotFound(f"command {program!r} is allowed but not installed (not found on PATH)")
        if os.sep in argv[0] and os.path.realpath(argv[0]) != os.path.realpath(resolved):
            raise PermissionDenied(
                f"{argv[0]!r} is not the allowed {program!r} ({resolved}); give the bare command name",
                details={"rule": "allowed_commands", "command": argv[0]},
            )
        if program in RUNS_PROGRAMS and program not in self.unrestricted_commands:
            raise PermissionDenied(
                f"command {program!r} exists to run other programs, which no argument check can contain; list it "
                "in security.unrestricted_commands in aikit.toml too if you trust it with anything",
                details={"rule": "command_arguments", "command": program},
            )
        workdir = self.check_path(cwd) if cwd is not None else Path.cwd()
        for arg in argv[1:]:
            for candidate in _path_candidates(arg):
                target = _argument_path(candidate, workdir)
                if target is None:
                    continue
                where = _resolve(target, workdir, arg)
                if not self._inside(where) and str(where) != os.devnull:
                    raise PermissionDenied(
                        f"{program}: argument {arg!r} names {where}, outside the allowed paths ({self._roots()}); "
                        "arguments that look like paths must stay inside them. Add the directory to "
                        "AIKIT_ALLOWED_PATHS (or security.allowed_paths in aikit.toml) to allow it, "
                        "or pass such text on standard input",
                        details={"rule": "allowed_paths", "command": program, "argument": arg, "path": str(where)},
                    )
        if program in self.unrestricted_commands:
            return [resolved, *argv[1:]]
        if program == "git":
            return harden_git(resolved, argv[1:], workdir, self._inside)
        if program in ARGUMENT_RULES:
            check_arguments(program, argv[1:], ARGUMENT_RULES[program])
        return [resolved, *argv[1:]]


def _resolve(path: Path, base: Path, shown: str) -> Path:
    """``path`` made absolute against ``base`` with ``..`` and symlinks resolved."""
    try:
        return (path if path.is_absolute() else base / path).resolve()
    except (RuntimeError, OSError) as exc:  # a symlink loop, an unreadable component
        raise InvalidArgument(f"cannot resolve path {shown!r}: {exc}", details={"path": shown}) from None


def _path_candidates(arg: str) -> list[str]:
    """The parts of one command argument that may name a file (see ``check_command``)."""
    if _url_scheme(arg):
        return [arg]  # a URL's query may hold "=/..." that names no local file
    candidates = [arg]
    if "=" in arg:
        candidates.append(arg.split("=", 1)[1])
    if arg.startswith("-") and not arg.startswith("--"):
        starts = [i for i in (arg.find("/", 1), arg.find("~", 1), arg.find(".", 1)) if i > 0]
        if starts:
            candidates.append(arg[min(starts):])
    return [c for c in candidates if c]


def _url_scheme(text: str) -> str | None:
    """The lower-cased scheme of ``scheme://...``, else None."""
    scheme, sep, _ = text.partition("://")
    if sep and scheme and scheme[0].isalpha() and all(c.isalnum() or c in "+.-" for c in scheme):
        return scheme.lower()
    return None


def _argument_path(candidate: str, workdir: Path) -> Path | None:
    """The path ``candidate`` names when it looks like one, else None."""
    scheme = _url_scheme(candidate)
    if scheme:
        if scheme != "file":
            return None
        rest = candidate.split("://", 1)[1]
        candidate = "/" + rest.split("/", 1)[1] if "/" in rest else "/"  # file://host/path -> /path
    if candidate.startswith("~"):
        try:
            return Path(candidate).expanduser()
        except RuntimeError:  # ~name of an unknown user: the program sees the literal text
            return Path(candidate)
    if os.path.isabs(candidate) or "/" in candidate or (os.altsep and os.altsep in candidate) or ".." in candidate:
        return Path(candidate)
    try:
        exists = os.path.lexists(workdir / candidate)
    except (OSError, ValueError):
        exists = False
    return Path(candidate) if exists else None


def _ip_or_none(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text.strip("[]").split("%")[0])
    except ValueError:
        return None


_NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))


def _non_public(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    """The kind of a non-public address (loopback, private, ...), else None. An IPv6 address that
    carries an IPv4 one (mapped, compatible, 6to4, Teredo, NAT64) is judged by that one too."""
    if not ip.is_global or ip.is_multicast or ip.is_reserved or ip.is_unspecified:
        return _address_kind(ip)
    if isinstance(ip, ipaddress.IPv6Address):
        embedded: list[ipaddress.IPv4Address] = []
        if ip.ipv4_mapped is not None:
            embedded.append(ip.ipv4_mapped)
        if ip.sixtofour is not None:
            embedded.append(ip.sixtofour)
        if ip.teredo is not None:
            embedded.extend(ip.teredo)
        if int(ip) >> 32 == 0 or any(ip in net for net in _NAT64):  # ::a.b.c.d (compatible), NAT64
            embedded.append(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
        for inner in embedded:
            kind = _non_public(inner)
            if kind is not None:
                return f"{kind} (embedded in {ip})"
    return None


def _address_kind(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
    for attr, label in (("is_loopback", "loopback"), ("is_link_local", "link-local"), ("is_private", "private"),
                        ("is_multicast", "multicast"), ("is_reserved", "reserved"), ("is_unspecified", "unspecified")):
        if getattr(ip, attr):
            return label
    return "non-public"
