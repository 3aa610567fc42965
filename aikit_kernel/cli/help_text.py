"""Every subcommand's ``--help`` says what it does in one line and ends with examples.

:func:`complete_help` walks the built parser: a subcommand without a description gets its one-line
``help``; one without its own examples (:func:`aikit_kernel.cli.common.add_command`) gets an
``examples:`` epilog from :data:`EXAMPLES` (a test checks that none is missing), and ``aikit
mission --help`` says what a mission file is.
"""

from __future__ import annotations

import argparse

from aikit_kernel.cli.common import EXAMPLES_HEADING, HelpFormatter, examples_epilog, sentence

#: "subcommand path" -> example command lines (shown under "examples:" at the end of its --help).
EXAMPLES: dict[str, tuple[str, ...]] = {
    "config trust": ("aikit config trust", "aikit config trust path/to/project"),
    "config untrust": ("aikit config untrust",),
    "mission approve": ("aikit mission approve RUN_ID review", "aikit mission approve RUN_ID review --deny"),
    "trace": ("aikit trace list --last 5", "aikit trace show 4bf92f35"),
    "trace list": ("aikit trace list --last 20 --errors",),
    "trace show": ("aikit trace show 4bf92f35",),
    "trace export": ("aikit trace export 4bf92f35 --format otlp-json > trace.json",),
    "audit": ("aikit audit verify", "aikit audit list --since 1h"),
    "audit list": ("aikit audit list --since 30m --type tool",),
    "audit verify": ("aikit audit verify",),
    "audit export": ("aikit audit export > ledger.jsonl",),
    "stop": ("aikit stop --all", "aikit stop --kernel ~/.local/share/jupyter/runtime/kernel-1234.json"),
    "approvals": ("aikit approvals list", "aikit approvals approve RUN_ID write_file"),
    "approvals list": ("aikit approvals list",),
    "approvals approve": ("aikit approvals approve RUN_ID write_file --reason 'checked the path'",),
    "approvals deny": ("aikit approvals deny RUN_ID run_process --reason 'not on this machine'",),
    "mcp": ("aikit mcp serve --stdio", "aikit mcp serve --port 8765 --script setup.lua"),
    "mcp serve": ("aikit mcp serve --stdio --tools 'text.*'",),
    "kernel": ("aikit kernel install",),
    "kernel install": ("aikit kernel install --user",),
    "kernel uninstall": ("aikit kernel uninstall",),
    "config": ("aikit config show", "aikit config path"),
    "config show": ("aikit config show", "aikit config show --json --profile dev"),
    "config path": ("aikit config path",),
    "tools": ("aikit tools list", "aikit tools info read_file"),
    "tools list": ("aikit tools list", "aikit tools list --category filesystem --json"),
    "tools info": ("aikit tools info read_file",),
    "tools call": ("aikit tools call calculate '{\"expression\": \"2 ** 10\"}'",),
    "mission": ("aikit mission validate examples/missions/sales_report.yaml",
                "aikit mission run examples/missions/sales_report.yaml --input out_dir=report"),
    "mission validate": ("aikit mission validate examples/missions/sales_report.yaml --dry-run",),
    "mission run": ("aikit mission run examples/missions/sales_report.yaml --input out_dir=report",),
    "mission resume": ("aikit mission resume RUN_ID --file examples/missions/sales_report.yaml",),
    "mission list": ("aikit mission list --limit 5",),
    "mission types": ("aikit mission types",),
}

MISSION_FORMAT = (
    "A mission is a YAML file (the RustChain format): name, version, optional inputs and config "
    "(timeout_seconds, fail_fast, retry_attempts, ...), and steps, each with an id, a step_type "
    "(create_file, command, tool, llm, agent, csv_process, ...: `aikit mission types` lists them), "
    "depends_on and parameters that may use {{input.NAME}} and {{STEP.output.FIELD}}. "
    "Full format: docs/missions.md."
)


def complete_help(parser: argparse.ArgumentParser, path: str = "") -> list[str]:
    """Give every subparser under ``parser`` a description and its examples; return the subcommand
    paths that have no example (for the test)."""
    missing: list[str] = []
    for action in parser._actions:  # argparse keeps subparsers only there
        if not isinstance(action, argparse._SubParsersAction):
            continue
        helps = {choice.dest: choice.help for choice in action._choices_actions}
        for name, sub in action.choices.items():
            full = f"{path} {name}".strip()
            if not sub.description and helps.get(name):
                sub.description = sentence(helps[name])
            if full == "mission":
                sub.description = f"{sub.description or ''} {MISSION_FORMAT}".strip()
            examples = EXAMPLES.get(full)
            sub.formatter_class = HelpFormatter
            if (sub.epilog or "").startswith(EXAMPLES_HEADING):
                pass  # the command's own examples stand
            elif examples and not sub.epilog:
                sub.epilog = examples_epilog(examples)
            else:
                missing.append(full)
            missing += complete_help(sub, full)
    return missing
