"""``aikit doctor [--json] [--quick]``: check this installation and say how to fix what is wrong."""

from __future__ import annotations

import argparse

from aikit_kernel.cli.common import Subparsers, add_command

EXAMPLES = ("aikit doctor                 every check, including one token from the local model",
            "aikit doctor --quick         skip loading the local and embedding models (a few seconds)",
            "aikit doctor --json | jq '.checks[] | select(.status != \"ok\")'")


def register(subparsers: Subparsers) -> None:
    """Add the ``doctor`` subcommand to *subparsers*."""
    parser = add_command(
        subparsers, "doctor", "check the installation (kernelspec, data dir, models, providers, ...) and how to fix it",
        description="Check Python and aikit, the Jupyter kernelspec, the data directory (writable, free space, "
                    "database versions), the local model (llama.cpp loads it and generates a token), the "
                    "embedding model, each configured provider (key present, one tiny request), PostgreSQL and "
                    "Ray when configured, the C compiler for the debugger and the security policy. Each check is "
                    "ok, warn or fail with the command or setting that fixes it; exit status 1 when one fails.",
        examples=EXAMPLES, handler=_doctor)
    parser.add_argument("--json", action="store_true", help="print the checks as JSON (for scripts)")
    parser.add_argument("--quick", action="store_true",
                        help="do not load the local and embedding models (providers are still asked, with a timeout)")


def _doctor(args: argparse.Namespace) -> int:
    from aikit_kernel.cli.doctor import doctor_command

    return doctor_command(as_json=args.json, quick=args.quick)
