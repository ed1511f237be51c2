"""The `cdr-stream` command: run, status, backfill, verify, simulate, state show, state set, dlq show,
dlq replay. Thin: it builds the parser from the command modules (`cdr_stream.commands`) and delegates."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from cdr_stream import __version__
from cdr_stream.commands import backfill, dlq, run, state, status, verify
from cdr_stream.commands.common import Exit, log
from cdr_stream.config import load_settings
from cdr_stream.errors import ConfigError
from cdr_stream.ops.logs import configure_logging


def build_parser() -> argparse.ArgumentParser:
    from cdr_stream.simulator import cli as simulator_cli

    parser = argparse.ArgumentParser(prog="cdr-stream", description=__doc__)
    parser.add_argument("--version", action="version", version=f"cdr-stream {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    run.add_to(commands)
    status.add_to(commands)
    backfill.add_to(commands)
    simulate = commands.add_parser("simulate", help="serve a simulated billing feed (development, tests, demo)")
    simulator_cli.add_arguments(simulate)
    simulate.set_defaults(handler=_simulate, settings=False)
    state.add_to(commands)
    verify.add_to(commands)
    dlq.add_to(commands)
    return parser


def _simulate(args: argparse.Namespace) -> int:
    from cdr_stream.simulator import cli as simulator_cli

    configure_logging("INFO")
    return simulator_cli.run(args)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not getattr(args, "settings", True):
        return int(args.handler(args))
    try:
        settings = load_settings(args.config)
    except ConfigError as exc:
        print(f"cdr-stream: {exc}", file=sys.stderr)
        return Exit.CONFIG
    configure_logging(settings.log_level, settings.log_format, settings.secrets())
    for warning in settings.warnings():
        log.warning(warning)
    return int(args.handler(settings, args))


if __name__ == "__main__":
    sys.exit(main())
