"""`cdr-stream status`: a running connector's feeds, read from its /status endpoint."""

from __future__ import annotations

import argparse
import asyncio
import sys

from cdr_stream.commands.common import Commands, Exit
from cdr_stream.errors import StatusError
from cdr_stream.ops.status import fetch_status, status_table, status_url


def add_to(commands: Commands) -> None:
    status = commands.add_parser(
        "status",
        help="print a running connector's feeds: state, last committed ID, failures, next attempt",
        description="Read the /status endpoint of a running connector (its http_port) and print one line per "
        "feed. Exit 0 when every feed works, 1 when a feed has failed or the connector cannot be read.",
    )
    status.add_argument(
        "--url", required=True, help="the connector's HTTP address, e.g. http://127.0.0.1:8080 (its http_port)"
    )
    status.set_defaults(handler=handle, settings=False)


def handle(args: argparse.Namespace) -> int:
    return asyncio.run(print_status(args.url))


async def print_status(url: str) -> int:
    try:
        status = await fetch_status(status_url(url))
    except StatusError as exc:
        print(f"cdr-stream: {exc}", file=sys.stderr)
        return Exit.FAILED
    print(status_table(status))
    return Exit.OK if status.get("status") == "ok" else Exit.FAILED
