from __future__ import annotations

import argparse
import asyncio
import os
import re
import signal
import sys
from pathlib import Path

import aiohttp

from cdr_stream.simulator import cli

REPO = Path(__file__).resolve().parents[2]


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    return parser.parse_args(argv)


def test_flags_map_onto_the_config() -> None:
    args = parse(
        "--records",
        "500",
        "--page-size",
        "100",
        "--numbers",
        "string",
        "--seed",
        "4",
        "--rate",
        "2.5",
        "--error-5xx-rate",
        "0.1",
        "--retry-after",
        "9",
        "--out-of-order",
        "--invalid-rate",
        "0.05",
        "--preload",
    )
    config = cli.config_from_args(args, "pw")
    assert (config.records, config.page_size, config.numbers_as, config.seed, config.rate) == (
        500,
        100,
        "string",
        4,
        2.5,
    )
    assert (config.error_5xx_rate, config.retry_after_seconds, config.out_of_order) == (0.1, 9, True)
    assert (config.invalid_rate, config.preload, config.port, config.login) == (0.05, True, 8080, "demo")
    assert args.password_env == "CDR_SIM_PASSWORD"


def test_connection_and_body_fault_flags_map_onto_the_config() -> None:
    args = parse(
        *("--reset-rate", "0.1", "--drip-rate", "0.2", "--drip-interval-ms", "30"),
        *("--empty-body-rate", "0.3", "--not-array-rate", "0.4", "--oversize-every", "7", "--oversize-bytes", "9"),
    )
    config = cli.config_from_args(args, "pw")
    assert (config.reset_rate, config.drip_rate, config.drip_interval_ms) == (0.1, 0.2, 30.0)
    assert (config.empty_body_rate, config.not_array_rate) == (0.3, 0.4)
    assert (config.oversize_every, config.oversize_bytes) == (7, 9)


async def serve_once(env_password: str | None, expected_password: str) -> tuple[str, int]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("CDR_SIM_PASSWORD", None)
    if env_password is not None:
        env["CDR_SIM_PASSWORD"] = env_password
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "cdr_stream.simulator.cli",
        "--port",
        "0",
        "--records",
        "3",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stdout is not None
    line = (await asyncio.wait_for(process.stdout.readline(), 20)).decode()
    url = re.search(r"http://\S+/billingfeed\.php", line)
    assert url, line
    async with aiohttp.ClientSession() as session:
        form = {"login": "demo", "password": expected_password, "fromid": "0", "format": "json"}
        async with session.post(url.group(), data=form) as response:
            assert response.status == 200
            assert [row["ID"] for row in await response.json()] == [1, 2, 3]
    process.send_signal(signal.SIGTERM)
    _, stderr = await asyncio.wait_for(process.communicate(), 20)
    return stderr.decode(), await process.wait()


async def test_serves_with_the_password_from_the_environment_and_stops_on_sigterm() -> None:
    stderr, code = await serve_once("from-env-Pw-1", "from-env-Pw-1")
    assert code == 0
    assert "demo password" not in stderr
    assert "from-env-Pw-1" not in stderr


async def test_falls_back_to_the_demo_password_with_a_warning() -> None:
    stderr, code = await serve_once(None, cli.DEMO_PASSWORD)
    assert code == 0
    assert "demo password" in stderr


def test_php_form_rates_map_onto_the_config_and_are_on_by_default() -> None:
    default = cli.config_from_args(parse(), "pw")
    assert min(default.account_fee_rate, default.credit_rate, default.zero_bill_date_rate) > 0
    assert min(default.whole_float_rate, default.offset_spelling_rate) > 0
    args = parse(
        *("--account-fee-rate", "0.1", "--credit-rate", "0.2", "--zero-bill-date-rate", "0.3"),
        *("--whole-float-rate", "0.4", "--offset-spelling-rate", "0"),
    )
    config = cli.config_from_args(args, "pw")
    assert (config.account_fee_rate, config.credit_rate, config.zero_bill_date_rate) == (0.1, 0.2, 0.3)
    assert (config.whole_float_rate, config.offset_spelling_rate) == (0.4, 0.0)
