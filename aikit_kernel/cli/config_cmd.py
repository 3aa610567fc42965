"""``aikit config show|path``: the effective configuration (secrets masked) and where it comes from."""

from __future__ import annotations

import argparse
import json
import os
import sys

from aikit_kernel.cli.common import PROG, error


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``config`` subcommand (with ``show`` and ``path``) to *subparsers*."""
    parser = subparsers.add_parser(
        "config",
        help="show the effective configuration",
        description=(
            "Show the configuration aikit uses: built-in defaults, the user aikit.toml, the "
            "project aikit.toml (working directory), the selected profile and AIKIT_<SECTION>__<KEY> "
            "environment overrides, in increasing precedence. Secrets are always masked."
        ),
    )
    actions = parser.add_subparsers(dest="config_action", metavar="ACTION", required=True)

    show = actions.add_parser(
        "show",
        help="print the effective configuration (secrets masked)",
        description="Print the effective configuration as TOML (or JSON), with secrets masked.",
    )
    show.add_argument("-p", "--profile", help="select a [profiles.NAME] profile (default: $AIKIT_PROFILE)")
    show.add_argument("--json", action="store_true", help="print JSON instead of TOML")
    show.set_defaults(handler=_show)

    show.add_argument("--origins", action="store_true",
                      help="after each security-relevant setting, say which layer set it")

    for name, verb in (("trust", "trust"), ("untrust", "stop trusting")):
        action = actions.add_parser(
            name,
            help=f"{verb} the project aikit.toml to widen rights (security policy, limits, ...)",
            description=(
                "A project aikit.toml (in the working directory, where scripts can write) may narrow the security "
                "policy but not widen it, unless you trust it: `aikit config trust` records the file's SHA-256 "
                "in your user config directory; any later change makes it untrusted again."),
        )
        action.add_argument("directory", nargs="?", default=".", help="the project directory (default: here)")
        action.set_defaults(handler=_trust if name == "trust" else _untrust)

    where = actions.add_parser(
        "path",
        help="print where configuration is looked for",
        description="Print the config files aikit reads, in increasing precedence, and whether they exist.",
    )
    where.set_defaults(handler=_path)


def _show(args: argparse.Namespace) -> int:
    """Handle ``aikit config show``."""
    from aikit_components.config import Config
    from aikit_components.errors import ConfigError

    try:
        config = Config.load(profile=args.profile)
    except ConfigError as exc:
        return error(exc.message)
    for warning in config.warnings:
        print(f"{PROG}: warning: {warning}", file=sys.stderr)
    effective = _with_model_default(config.to_dict(mask=True))
    if args.json:
        print(json.dumps(effective, indent=2))
        return 0
    header = ["# aikit effective configuration (secrets masked)", "# sources: built-in defaults"]
    header += [f"#          {source}" for source in config.sources]
    header.append(f"# profile: {config.profile if config.profile is not None else '(none)'}")
    if config.env_overrides:
        header.append("# environment overrides: " + ", ".join(config.env_overrides))
    if config.ignored:
        header.append("# ignored (untrusted project file; `aikit config trust`): " + ", ".join(config.ignored))
    header.append("# [models] default is the model agents use when they name none; change it in aikit.toml")
    sys.stdout.write("\n".join(header) + "\n\n" + Config(effective).to_toml(mask=True))
    if args.origins:
        from aikit_components.config.trust import grants_rights

        print("\n# where the settings that grant rights come from")
        for key in sorted(config.origins):
            if grants_rights(tuple(key.split("."))):
                print(f"# {key}: {config.origin(key)}")
    return 0


def _trust(args: argparse.Namespace) -> int:
    """Handle ``aikit config trust``."""
    from pathlib import Path

    from aikit_components.config import project_config_path, user_config_path
    from aikit_components.config.trust import TRUST_FILE, TrustStore

    project = project_config_path(Path(args.directory))
    if not project.is_file():
        return error(f"no aikit.toml in {Path(args.directory).resolve()}")
    digest = TrustStore(user_config_path().parent / TRUST_FILE).trust(project)
    print(f"trusted {project.resolve()} (sha256 {digest[:16]}...); a change to the file makes it untrusted again")
    return 0


def _untrust(args: argparse.Namespace) -> int:
    """Handle ``aikit config untrust``."""
    from pathlib import Path

    from aikit_components.config import project_config_path, user_config_path
    from aikit_components.config.trust import TRUST_FILE, TrustStore

    project = project_config_path(Path(args.directory))
    found = TrustStore(user_config_path().parent / TRUST_FILE).forget(project)
    print(f"{'no longer trusted' if found else 'was not trusted'}: {project.resolve()}")
    return 0


def _with_model_default(settings: dict) -> dict:
    """The settings with the effective ``[models] default`` (the built-in one when none is set)."""
    from aikit_components.providers.registry import DEFAULT_MODEL

    models = settings.setdefault("models", {})
    if isinstance(models, dict) and not (isinstance(models.get("aliases"), dict) and "default" in models["aliases"]):
        models.setdefault("default", DEFAULT_MODEL)
    return settings


def _path(args: argparse.Namespace) -> int:
    """Handle ``aikit config path``."""
    from aikit_components.config import project_config_path, user_config_path

    user = user_config_path()
    project = project_config_path()
    origin = " (from $AIKIT_CONFIG)" if os.environ.get("AIKIT_CONFIG") else ""

    def state(path: os.PathLike[str]) -> str:
        return "found" if os.path.isfile(path) else "not found"

    print(f"user:        {user}  [{state(user)}]{origin}")
    print(f"project:     {project}  [{state(project)}]")
    print("profile:     [profiles.NAME] tables in those files; select with --profile or $AIKIT_PROFILE"
          + (f" (now {os.environ['AIKIT_PROFILE']!r})" if os.environ.get("AIKIT_PROFILE") else ""))
    print("environment: AIKIT_<SECTION>__<KEY>=VALUE overrides any setting (highest precedence)")
    return 0
