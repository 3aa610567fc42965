"""Argument rules for allowed programs: a program allowed by name can still run other programs,
change the system or leave the allowed paths through its options. This module is the table of
what each such program may not be given, and the hardening applied to ``git``.

Used by :meth:`SecurityPolicy.check_command`; every refusal is a :class:`PermissionDenied` with
``rule = "command_arguments"`` (or ``"child_environment"``) that names the option and how to allow
it. Programs listed in ``security.unrestricted_commands`` skip these rules (a deliberate decision to
trust them with anything; the path checks still apply).

What the rules do not do: confine a child at the operating-system level (namespaces, seccomp,
Landlock). A program allowed here still runs with the user's rights; the rules close the ways the
default programs are known to run other programs, not every way an arbitrary program might.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from .errors import PermissionDenied

RULE = "command_arguments"
ENV_RULE = "child_environment"


@dataclass(frozen=True)
class ArgumentRule:
    """What one program may not be given.

    ``long``: long options refused, also in any abbreviation GNU getopt or git accepts
    (``--compress-prog`` for ``--compress-program``). ``short``: single-letter options refused,
    also inside a cluster (``-us`` holds ``-s``). ``short_with_value``: single-letter options that
    take a value, so the rest of a cluster is that value, not more options. ``words``: exact
    arguments refused (``find``'s single-dash actions). ``reason``: why, in one clause."""

    long: tuple[str, ...] = ()
    short: str = ""
    short_with_value: str = ""
    words: tuple[str, ...] = ()
    reason: str = ""


# Programs of the default allowlist (config/defaults.py DEFAULT_COMMANDS) with a dangerous option,
# and common programs a user may add. git has its own, fuller treatment (check_git).
ARGUMENT_RULES: dict[str, ArgumentRule] = {
    "sort": ArgumentRule(long=("--compress-program", "--files0-from"), short_with_value="kSTto",
                         reason="it runs the named program, or reads files named in a list the path checks never see"),
    "wc": ArgumentRule(long=("--files0-from",), reason="it reads files named in a list the path checks never see"),
    "date": ArgumentRule(long=("--set",), short="s", short_with_value="dfIr",
                         reason="it sets the system clock"),
    "grep": ArgumentRule(long=("--dereference-recursive",), short="R", short_with_value="efmABCdD",
                         reason="it follows symlinks out of the allowed paths (use -r, which does not)"),
    "ls": ArgumentRule(long=("--dereference",), short="L", short_with_value="ITw",
                       reason="with recursion it follows symlinks out of the allowed paths"),
    "find": ArgumentRule(words=("-exec", "-execdir", "-ok", "-okdir", "-delete", "-L", "-follow", "-fprint",
                                "-fprint0", "-fprintf", "-fls"),
                         reason="it runs programs, deletes files, writes files or follows symlinks"),
    "tar": ArgumentRule(long=("--to-command", "--use-compress-program", "--checkpoint-action", "--rsh-command",
                              "--info-script", "--new-volume-script", "--dereference", "--files-from"),
                        short="IFhT", short_with_value="bCfgKLNVX",
                        reason="it runs the named program, follows symlinks or reads a list of names"),
    "rsync": ArgumentRule(long=("--rsh", "--rsync-path"), short="e", reason="it runs the named program"),
}

# Programs whose whole purpose is to run another program: no argument rule can contain them.
RUNS_PROGRAMS = frozenset({"xargs", "env", "nice", "nohup", "timeout", "stdbuf", "setsid", "sudo", "su",
                           "doas", "chroot", "unshare", "nsenter", "watch", "flock", "ionice", "taskset",
                           "strace", "ltrace", "script", "busybox"})

# Variables a caller may not set for a child: each makes a program load or run other code, or
# (GIT_*) replaces git's hardened configuration. Matched case-sensitively, by prefix when ending in *.
FORBIDDEN_CHILD_ENV = ("GIT_*", "LD_*", "DYLD_*", "PYTHON*", "PERL5*", "PERLLIB", "RUBYOPT", "RUBYLIB",
                       "NODE_OPTIONS", "NODE_PATH", "BASH_ENV", "ENV", "BASH_FUNC_*", "SHELLOPTS", "BASHOPTS",
                       "PS4", "PROMPT_COMMAND", "IFS", "CDPATH", "GLOBIGNORE", "PATH", "LESSOPEN", "LESSCLOSE",
                       "PAGER", "EDITOR", "VISUAL", "SSH_ASKPASS", "GCONV_PATH", "LOCPATH", "NLSPATH",
                       "MALLOC_*", "GLIBC_TUNABLES", "TMPDIR", "XDG_CONFIG_HOME", "XDG_CONFIG_DIRS",
                       "HOSTALIASES", "RESOLV_HOST_CONF", "OPENSSL_CONF", "OPENSSL_ENGINES", "SSL_CERT_FILE",
                       "HOME")  # HOME: git would read a ~/.gitconfig of the caller's choosing


# Harmless exceptions: who and when a commit is by.
ALLOWED_CHILD_ENV = frozenset({"GIT_AUTHOR_NAME", "GIT_AUTHOR_EMAIL", "GIT_AUTHOR_DATE", "GIT_COMMITTER_NAME",
                               "GIT_COMMITTER_EMAIL", "GIT_COMMITTER_DATE"})


def forbidden_env_name(name: str) -> str | None:
    """The FORBIDDEN_CHILD_ENV pattern ``name`` matches, else None."""
    if name in ALLOWED_CHILD_ENV:
        return None
    for pattern in FORBIDDEN_CHILD_ENV:
        if pattern.endswith("*") and name.startswith(pattern[:-1]) or name == pattern:
            return pattern
    return None


def check_child_env(names: Sequence[str]) -> None:
    """Refuse environment variables a caller may not pass to a child (see FORBIDDEN_CHILD_ENV)."""
    for name in names:
        pattern = forbidden_env_name(name)
        if pattern is not None:
            raise PermissionDenied(
                f"environment variable {name!r} may not be passed to a program: variables matching {pattern} make "
                "programs load or run other code (or undo git's hardened settings). Pass the value as an argument "
                "or on stdin instead; a variable the kernel itself has can reach programs through "
                "tools.process_inherit_env = true in aikit.toml",
                details={"rule": ENV_RULE, "name": name, "pattern": pattern})


def _refuse(program: str, arg: str, reason: str, hint: str = "") -> PermissionDenied:
    how = hint or (f"if you trust {program} with anything, list it in security.unrestricted_commands in aikit.toml "
                   "(the path checks still apply)")
    return PermissionDenied(
        f"{program}: argument {arg!r} is refused: {reason}. {how}",
        details={"rule": RULE, "command": program, "argument": arg})


def _long_matches(arg: str, forbidden: Sequence[str]) -> str | None:
    """The forbidden long option ``arg`` spells, in full or abbreviated, else None."""
    if not arg.startswith("--") or len(arg) < 3:
        return None
    name = arg.split("=", 1)[0]
    for option in forbidden:
        if option.startswith(name) and len(name) >= 3:
            return option
    return None


def _short_matches(arg: str, rule: ArgumentRule) -> str | None:
    if not arg.startswith("-") or arg.startswith("--") or len(arg) < 2:
        return None
    for letter in arg[1:]:
        if letter in rule.short:
            return "-" + letter
        if letter in rule.short_with_value:
            return None
    return None


def check_arguments(program: str, args: Sequence[str], rule: ArgumentRule) -> None:
    """Refuse the first argument of ``args`` that ``rule`` forbids (options end at ``--``)."""
    for arg in args:
        if arg == "--":
            return
        hit = arg if arg in rule.words else _long_matches(arg, rule.long) or _short_matches(arg, rule)
        if hit is not None:
            raise _refuse(program, arg, f"{hit} is not allowed for {program} ({rule.reason})")


# ----------------------------------------------------------------------------------------- git
# Subcommands git may run: builtins only, so an alias (``alias.x = !sh``) or a git-x program on
# PATH never runs, and none that exists to run other programs (difftool, mergetool, submodule
# foreach, filter-branch, bisect run, send-email, instaweb, help/--help: man viewers).
GIT_SUBCOMMANDS = frozenset({
    "add", "am", "annotate", "apply", "archive", "bisect", "blame", "branch", "bundle", "cat-file", "check-attr",
    "check-ignore", "check-ref-format", "checkout", "cherry", "cherry-pick", "clean", "clone", "commit",
    "commit-tree", "config", "count-objects", "describe", "diff", "diff-files", "diff-index", "diff-tree",
    "fetch", "for-each-ref", "format-patch", "fsck", "gc", "grep", "hash-object", "init", "log", "ls-files",
    "ls-remote", "ls-tree", "merge", "merge-base", "merge-file", "merge-tree", "mv", "name-rev", "notes",
    "pull", "push", "range-diff", "read-tree", "rebase", "reflog", "remote", "repack", "reset", "restore",
    "rev-list", "rev-parse", "revert", "rm", "shortlog", "show", "show-branch", "show-ref", "sparse-checkout",
    "stash", "status", "stripspace", "switch", "symbolic-ref", "tag", "update-index", "update-ref", "var",
    "verify-commit", "verify-tag", "version", "whatchanged", "worktree", "write-tree",
})

_GIT_GLOBAL_WITH_VALUE = ("-C", "--git-dir", "--work-tree", "--namespace")
_GIT_GLOBAL_FLAGS = ("--no-pager", "-P", "--bare", "--literal-pathspecs", "--glob-pathspecs", "--noglob-pathspecs",
                     "--icase-pathspecs", "--no-replace-objects", "--no-optional-locks", "--version")
_GIT_GLOBAL_FORBIDDEN = {
    "-c": "it sets configuration, which can name programs for git to run",
    "--config-env": "it sets configuration, which can name programs for git to run",
    "--exec-path": "it changes where git looks for its own programs",
    "-p": "a pager is a program", "--paginate": "a pager is a program",
    "--help": "it starts a manual viewer, a program named by configuration", "--html-path": "", "--man-path": "",
    "--info-path": "", "--list-cmds": "", "--super-prefix": "internal",
}

# Options per subcommand that run a program, write configuration outside the repository, or
# take configuration: refused in any abbreviation; short letters as for ArgumentRule.
GIT_SUBCOMMAND_RULES: dict[str, ArgumentRule] = {
    "clone": ArgumentRule(long=("--upload-pack", "--config", "--template", "--server-option"), short="uc",
                          short_with_value="ob", reason="it runs a program or sets configuration for the new repository"),
    "fetch": ArgumentRule(long=("--upload-pack",), reason="it runs the named program"),
    "pull": ArgumentRule(long=("--upload-pack",), reason="it runs the named program"),
    "ls-remote": ArgumentRule(long=("--upload-pack",), reason="it runs the named program"),
    "push": ArgumentRule(long=("--receive-pack", "--exec"), reason="it runs the named program"),
    "archive": ArgumentRule(long=("--exec",), reason="it runs the named program"),
    "rebase": ArgumentRule(long=("--exec",), short="x", short_with_value="CS", reason="it runs a shell command"),
    "grep": ArgumentRule(long=("--open-files-in-pager",), short="O", short_with_value="efABCm",
                         reason="it runs the named program"),
    "bisect": ArgumentRule(words=("run",), reason="it runs a program"),
    "config": ArgumentRule(long=("--global", "--system", "--edit"), short="e", short_with_value="f",
                           reason="it changes configuration outside the repository or starts an editor"),
    "init": ArgumentRule(long=("--template",), reason="a template can carry configuration and hooks"),
}

# Settings pinned on every git command line (command-line configuration wins over every file):
# no hooks, no pager, no editor, no fsmonitor, no external diff, no ssh/askpass/credential
# programs from configuration, no ext:: transport, signatures by the standard programs only.
GIT_PINNED_CONFIG = (
    f"core.hooksPath={os.devnull}", "core.fsmonitor=false", "core.pager=cat", "core.editor=true",
    "sequence.editor=true", "core.sshCommand=ssh", "core.askPass=", "credential.helper=",
    "protocol.ext.allow=never", "gpg.program=gpg", "gpg.openpgp.program=gpg", "gpg.x509.program=gpgsm",
    "gpg.ssh.program=ssh-keygen", "interactive.diffFilter=", "core.untrackedCache=false",
)
# Environment pinned for git children (an empty GIT_PROXY_COMMAND disables core.gitProxy).
GIT_PINNED_ENV = {"GIT_PROXY_COMMAND": "", "GIT_TERMINAL_PROMPT": "0", "GIT_PAGER": "cat", "GIT_EDITOR": "true",
                  "GIT_SEQUENCE_EDITOR": "true", "GIT_SSH_COMMAND": "ssh"}

# Repository (local/worktree) settings that name a program: neutralized per name found.
_GIT_LOCAL_PROGRAM_KEYS: tuple[tuple[str, str, str], ...] = (
    # (section, variable, neutral value); the subsection (e.g. a filter's name) is kept
    ("filter", "clean", ""), ("filter", "smudge", ""), ("filter", "process", ""), ("filter", "required", "false"),
    ("diff", "textconv", "cat"), ("merge", "driver", "false"),
    ("credential", "helper", ""), ("pager", "", "cat"), ("gpg", "defaultkeycommand", ""),
)
# Repository settings that name a program and cannot be neutralized from the command line (an
# empty external diff is an error; for a remote's upload/receive program the first value wins):
# their presence makes aikit refuse to run git in that repository.
_GIT_LOCAL_REFUSED = (("diff", "external"), ("diff", "command"), ("remote", "uploadpack"),
                      ("remote", "receivepack"))
# Repository settings whose value is a file git reads: must stay inside the allowed paths.
_GIT_LOCAL_PATH_KEYS = frozenset({"commit.template", "core.excludesfile", "core.attributesfile", "include.path",
                                  "blame.ignorerevsfile", "mailmap.file", "http.sslcert", "http.sslkey",
                                  "http.sslcainfo", "http.cookiefile", "core.worktree", "gpg.ssh.allowedsignersfile"})


def _git_split(args: Sequence[str]) -> tuple[list[str], str | None, list[str]]:
    """(global options, subcommand or None, the subcommand's arguments), refusing forbidden
    global options."""
    i = 0
    globals_: list[str] = []
    while i < len(args):
        arg = args[i]
        if not arg.startswith("-"):
            return globals_, arg, list(args[i + 1:])
        name = arg.split("=", 1)[0]
        if name in _GIT_GLOBAL_FORBIDDEN or (name != "-C" and name.startswith("-c")):
            reason = _GIT_GLOBAL_FORBIDDEN.get(name) or "it sets configuration or is not needed by scripts"
            raise _refuse("git", arg, f"{name} is not allowed ({reason})",
                          "git runs with hardened settings that a script may not change; run such a command "
                          "outside aikit")
        if arg in _GIT_GLOBAL_WITH_VALUE:
            globals_ += args[i:i + 2]
            i += 2
            continue
        if name in _GIT_GLOBAL_WITH_VALUE or arg in _GIT_GLOBAL_FLAGS:
            globals_.append(arg)
            i += 1
            continue
        raise _refuse("git", arg, f"the option {name} before the subcommand is not one aikit knows to be harmless",
                      "put options after the subcommand, or use one of "
                      f"{', '.join(_GIT_GLOBAL_WITH_VALUE + _GIT_GLOBAL_FLAGS)}")
    return globals_, None, []


def check_git(args: Sequence[str]) -> tuple[list[str], str | None]:
    """Refuse a git command line that could run another program; return (global options,
    subcommand)."""
    globals_, sub, rest = _git_split(args)
    if sub is None:
        return globals_, None
    if sub not in GIT_SUBCOMMANDS:
        raise _refuse("git", sub, f"the subcommand {sub!r} is not allowed: aliases and git-* programs never run "
                      "through aikit, nor subcommands that exist to run other programs",
                      f"allowed subcommands: {', '.join(sorted(GIT_SUBCOMMANDS))}; if you trust git with anything, "
                      "list it in security.unrestricted_commands in aikit.toml")
    for arg in rest:
        if arg == "--":
            break
        if arg == "--help":
            raise _refuse("git", arg, "--help starts a manual viewer, a program named by configuration",
                          "read the manual outside aikit")
    rule = GIT_SUBCOMMAND_RULES.get(sub)
    if rule is not None:
        check_arguments(f"git {sub}", rest, rule)
    return globals_, sub


def git_repository_overrides(git: str, globals_: Sequence[str], cwd: Path,
                             inside: Callable[[Path], bool]) -> list[str]:
    """``-c`` overrides neutralizing the program-naming settings of the configuration a script
    could have written (the repository's local and worktree files, and any file inside the allowed
    paths: see ``_trusted_origin``), found by listing it; refuse such a setting naming a file
    outside the allowed paths, or one that cannot be neutralized."""
    try:
        listing = subprocess.run(
            [git, *globals_, "config", "--list", "--show-scope", "--show-origin", "--includes", "-z"], cwd=cwd,
            capture_output=True, timeout=20, check=False,
            env={"PATH": os.environ.get("PATH", os.defpath), "HOME": os.environ.get("HOME", "/"), "LC_ALL": "C"})
    except (OSError, subprocess.TimeoutExpired):
        return []
    if listing.returncode != 0:
        return []
    overrides: list[str] = []
    fields = listing.stdout.decode("utf-8", errors="replace").split("\0")
    for scope, origin, entry in zip(fields[0::3], fields[1::3], fields[2::3]):
        if _trusted_origin(scope, origin, inside):
            continue
        key, _, value = entry.partition("\n")
        section, _, rest = key.partition(".")
        subsection, _, variable = rest.rpartition(".")
        section, variable = section.lower(), variable.lower()
        for want_section, want_variable, neutral in _GIT_LOCAL_PROGRAM_KEYS:
            if section == want_section and (variable == want_variable or want_variable == ""):
                overrides += ["-c", f"{key}={neutral}"]
                if section == "filter" and variable in ("clean", "smudge", "process") and subsection:
                    overrides += ["-c", f"filter.{subsection}.required=false"]
        if (section, variable) in _GIT_LOCAL_REFUSED:
            raise PermissionDenied(
                f"git: the repository's configuration sets {key} = {value!r}, a program git would run; aikit will "
                f"not run git in this repository while it is set. Remove it (git config --unset {key}), or list git "
                "in security.unrestricted_commands in aikit.toml if you trust this repository",
                details={"rule": RULE, "command": "git", "key": key})
        if section == "submodule" and variable == "update" and value.startswith("!"):
            overrides += ["-c", f"{key}=checkout"]
        lowered = f"{section}.{variable}" if not subsection else None
        if lowered in _GIT_LOCAL_PATH_KEYS or (section == "includeif" and variable == "path"):
            target = Path(value).expanduser()
            target = (target if target.is_absolute() else cwd / target).resolve()
            if not inside(target) and str(target) != os.devnull:
                raise PermissionDenied(
                    f"git: the repository's configuration sets {key} = {value!r}, a file outside the allowed paths "
                    f"({target}); aikit will not run git there. Remove the setting (git config --unset {key}) "
                    "or add the directory to security.allowed_paths in aikit.toml",
                    details={"rule": RULE, "command": "git", "key": key, "path": str(target)})
    return overrides


def _trusted_origin(scope: str, origin: str, inside: Callable[[Path], bool]) -> bool:
    """System and global configuration are the user's own, unless the file (or a file it
    includes) lies inside the allowed paths, where a script could have written it (a home
    directory that is an allowed path). Command-line configuration comes from the kernel's own
    environment (the caller may not set ``GIT_*``)."""
    if scope == "command":
        return True
    if scope not in ("system", "global"):
        return False
    kind, _, name = origin.partition(":")
    if kind != "file" or not os.path.isabs(name):
        return False
    try:
        return not inside(Path(name).resolve())
    except (OSError, RuntimeError):
        return False


def _refuse_local_push(args: Sequence[str], cwd: Path) -> None:
    """A push to a repository on this machine runs *that* repository's hooks (git clears the
    command-line settings for the receiving side), which a script could have written."""
    after = list(args)[list(args).index("push") + 1:]
    for arg in after:
        if arg == "--":
            continue
        if arg.startswith("-"):
            continue
        local = arg.startswith(("file://", "/", "./", "../", "~")) or (cwd / arg).is_dir()
        if local:
            raise _refuse("git push", arg, "a push to a repository on this machine runs that repository's hooks, "
                          "which aikit cannot switch off", "push to a remote URL (https:// or ssh://), or run the push "
                          "outside aikit")
        return  # the first operand is the repository; the rest are refspecs


def harden_git(git: str, args: Sequence[str], cwd: Path, inside: Callable[[Path], bool]) -> list[str]:
    """The full argv to run ``git args`` in ``cwd``: checked (:func:`check_git`), with the pinned
    settings and the repository overrides placed before the caller's arguments."""
    globals_, sub = check_git(args)
    pinned: list[str] = ["--no-pager"]
    for item in GIT_PINNED_CONFIG:
        pinned += ["-c", item]
    if sub == "push":
        _refuse_local_push(args, cwd)
        pinned += ["-c", "protocol.file.allow=never"]  # also for a remote *named* here whose URL is local
    if sub is not None:
        pinned += git_repository_overrides(git, globals_, cwd, inside)
    return [git, *pinned, *args]
