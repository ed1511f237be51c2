"""Command line for the billing feed simulator (wired into the main CLI as `simulate`)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
from typing import Final

from cdr_stream.simulator.server import FeedSimulator, SimulatorConfig

log = logging.getLogger(__name__)

DEMO_PASSWORD: Final = "demo-secret"  # noqa: S105 - published on purpose, for local demos only
_DEFAULTS: Final = SimulatorConfig(password="")


def _probability(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text} is not a probability between 0 and 1")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    d = _DEFAULTS
    add = parser.add_argument
    add("--host", default=d.host, help="address to bind (default %(default)s)")
    add("--port", type=int, default=8080, help="port to bind, 0 picks a free one (default %(default)s)")
    add("--login", default=d.login, help="login the feed accepts (default %(default)s)")
    add(
        "--password-env",
        default="CDR_SIM_PASSWORD",
        metavar="NAME",
        help=f"environment variable holding the password; unset means the demo password {DEMO_PASSWORD!r}",
    )
    add("--records", type=int, default=d.records, help="records held at start (default %(default)s)")
    add("--first-id", type=int, default=d.first_id, help="ID of the first record (default %(default)s)")
    add("--rate", type=float, default=d.rate, help="records added per second, 0 = no live growth")
    add("--page-size", type=int, default=d.page_size, help="most rows per answer, 0 = no cap")
    add(
        "--numbers",
        choices=("number", "string"),
        default=d.numbers_as,
        help="JSON numbers as numbers or as strings (default %(default)s)",
    )
    add("--seed", type=int, default=d.seed, help="data and fault seed (default %(default)s)")
    add("--accounts", type=int, default=d.accounts, help="distinct accounts (default %(default)s)")
    add("--invalid-rate", type=_probability, default=d.invalid_rate, help="share of broken records")
    php = parser.add_argument_group("what PHP/MySQL feeds send (shares of all records; all valid billing records)")
    php_arg = php.add_argument
    php_arg(
        "--account-fee-rate",
        type=_probability,
        default=d.account_fee_rate,
        help="account-level fees with no AParty, BParty or BillNumber (default %(default)s)",
    )
    php_arg("--credit-rate", type=_probability, default=d.credit_rate, help="credits: negative amounts, no numbers")
    php_arg(
        "--zero-bill-date-rate",
        type=_probability,
        default=d.zero_bill_date_rate,
        help='BillDate "0000-00-00" (default %(default)s)',
    )
    php_arg(
        "--whole-float-rate",
        type=_probability,
        default=d.whole_float_rate,
        help='whole numbers written "60.0" (default %(default)s)',
    )
    php_arg(
        "--offset-spelling-rate",
        type=_probability,
        default=d.offset_spelling_rate,
        help='UTCOffset spelled "+13", "13:00", "+12:45", "0" or "1" (default %(default)s)',
    )
    add("--preload", action="store_true", help="render every record to JSON before serving")
    faults = parser.add_argument_group("faults (probabilities per request)")
    fault = faults.add_argument
    fault("--error-5xx-rate", type=_probability, default=d.error_5xx_rate)
    fault("--rate-limit-rate", type=_probability, default=d.rate_limit_rate)
    fault(
        "--retry-after",
        type=int,
        default=d.retry_after_seconds,
        metavar="SECONDS",
        help="Retry-After of a 429 (default %(default)s)",
    )
    fault("--latency-ms", type=float, default=d.latency_ms, help="delay before every answer")
    fault("--truncate-rate", type=_probability, default=d.truncate_rate)
    fault("--html-error-rate", type=_probability, default=d.html_error_rate)
    fault("--duplicate-rate", type=_probability, default=d.duplicate_rate)
    fault("--out-of-order", action="store_true", help="shuffle the rows of every answer")
    fault("--resend-rate", type=_probability, default=d.resend_rate)
    fault("--reset-rate", type=_probability, default=d.reset_rate, help="reset the connection (TCP RST)")
    fault("--drip-rate", type=_probability, default=d.drip_rate, help="send the answer one byte at a time")
    fault("--drip-interval-ms", type=float, default=d.drip_interval_ms, help="pause between dripped bytes")
    fault("--empty-body-rate", type=_probability, default=d.empty_body_rate, help="HTTP 200 with no body")
    fault("--not-array-rate", type=_probability, default=d.not_array_rate, help="a JSON object, not an array")
    fault(
        "--oversize-every",
        type=int,
        default=d.oversize_every,
        metavar="N",
        help="every record whose ID is a multiple of N gets a huge extra field (JSON only; 0 = none)",
    )
    fault("--oversize-bytes", type=int, default=d.oversize_bytes, help="size of that field (default %(default)s)")


def config_from_args(args: argparse.Namespace, password: str) -> SimulatorConfig:
    return SimulatorConfig(
        password=password,
        login=args.login,
        host=args.host,
        port=args.port,
        records=args.records,
        first_id=args.first_id,
        rate=args.rate,
        page_size=args.page_size,
        numbers_as=args.numbers,
        seed=args.seed,
        accounts=args.accounts,
        invalid_rate=args.invalid_rate,
        account_fee_rate=args.account_fee_rate,
        credit_rate=args.credit_rate,
        zero_bill_date_rate=args.zero_bill_date_rate,
        whole_float_rate=args.whole_float_rate,
        offset_spelling_rate=args.offset_spelling_rate,
        preload=args.preload,
        error_5xx_rate=args.error_5xx_rate,
        rate_limit_rate=args.rate_limit_rate,
        retry_after_seconds=args.retry_after,
        latency_ms=args.latency_ms,
        truncate_rate=args.truncate_rate,
        html_error_rate=args.html_error_rate,
        duplicate_rate=args.duplicate_rate,
        out_of_order=args.out_of_order,
        resend_rate=args.resend_rate,
        reset_rate=args.reset_rate,
        drip_rate=args.drip_rate,
        drip_interval_ms=args.drip_interval_ms,
        empty_body_rate=args.empty_body_rate,
        not_array_rate=args.not_array_rate,
        oversize_every=args.oversize_every,
        oversize_bytes=args.oversize_bytes,
    )


def run(args: argparse.Namespace) -> int:
    """Serve until SIGINT or SIGTERM, then stop cleanly."""
    password = os.environ.get(args.password_env)
    if not password:
        log.warning("%s is not set: using the built-in demo password; never expose this simulator", args.password_env)
        password = DEMO_PASSWORD
    return asyncio.run(_serve(config_from_args(args, password)))


async def _serve(config: SimulatorConfig) -> int:
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    signals = (signal.SIGINT, signal.SIGTERM)
    for signum in signals:
        loop.add_signal_handler(signum, stopping.set)
    try:
        async with FeedSimulator(config) as sim:
            print(
                f"billing feed simulator: {sim.url} (login {config.login}, {config.records} records)",
                flush=True,
            )
            await stopping.wait()
    finally:
        for signum in signals:
            loop.remove_signal_handler(signum)
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    cli = argparse.ArgumentParser(prog="cdr-stream simulate", description="Run the billing feed simulator.")
    add_arguments(cli)
    raise SystemExit(run(cli.parse_args()))
