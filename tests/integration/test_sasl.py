"""Kafka over SASL SCRAM-SHA-512, on a private broker instance with a SASL listener and a user made at
format time: the connector works end to end, and a wrong password stops it with a clear error."""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from cdr_stream.config import KafkaSettings, TopicSettings
from cdr_stream.connector import Connector
from cdr_stream.errors import KafkaAuthenticationError
from cdr_stream.ops.checker import IdSet
from cdr_stream.simulator import FeedSimulator, SimulatorConfig
from tests.integration.conftest import BROKER
from tests.integration.support import (
    PASSWORD,
    assert_clean,
    run_until_caught_up,
    settings_for,
    start_process,
    write_config,
)
from tests.leaks import assert_no_secrets, captured_logs, exception_text

pytestmark = [pytest.mark.kafka]

SASL_USER = "cdr-stream"
SASL_PASSWORD = "Scram-Secret-0f-the-Tests"
WRONG_PASSWORD = "Not-The-Scram-Secret"
SECRETS = [PASSWORD, SASL_PASSWORD, WRONG_PASSWORD]


@dataclass(frozen=True)
class SaslBroker:
    bootstrap: str  # the SASL_PLAINTEXT listener
    directory: Path

    def settings(self, password: str) -> KafkaSettings:
        password_file = self.directory / f"password-{len(password)}-{password[:3]}"
        password_file.write_text(password + "\n")
        return KafkaSettings(
            bootstrap_servers=self.bootstrap,
            security_protocol="SASL_PLAINTEXT",
            sasl_mechanism="SCRAM-SHA-512",
            sasl_username=SASL_USER,
            sasl_password_file=password_file,
        )


@pytest.fixture(scope="module")
def sasl_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SaslBroker]:
    """A private broker (instance "sasl", ports after the suite's own) with a fresh data dir and one user."""
    directory = tmp_path_factory.mktemp("sasl-broker")
    users = directory / "scram-users"
    users.write_text(f"{SASL_USER}:{SASL_PASSWORD}\n")
    base = int(os.environ.get("KAFKA_PORT", "19092")) + 5
    env = dict(
        os.environ,
        KAFKA_INSTANCE="sasl",
        KAFKA_PORT=str(base),
        KAFKA_CONTROLLER_PORT=str(base + 1),
        KAFKA_SASL_PORT=str(base + 2),
        KAFKA_SCRAM_USERS_FILE=str(users),
        KAFKA_DATA_DIR=str(directory / "data"),
    )
    started = subprocess.run([str(BROKER), "start"], env=env, capture_output=True, text=True, timeout=300, check=False)
    if started.returncode != 0:
        pytest.fail(f"the SASL broker could not be started:\n{started.stdout}\n{started.stderr}", pytrace=False)
    assert_no_secrets(started.stdout + started.stderr, [SASL_PASSWORD], "the broker script's output")
    try:
        yield SaslBroker(f"127.0.0.1:{base + 2}", directory)
    finally:
        subprocess.run([str(BROKER), "stop"], env=env, capture_output=True, timeout=60, check=False)


async def test_the_connector_works_end_to_end_over_sasl_scram(
    sasl_broker: SaslBroker, topics: TopicSettings, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)  # aiokafka's own debug lines included
    kafka = sasl_broker.settings(SASL_PASSWORD)
    async with FeedSimulator(SimulatorConfig(password=PASSWORD, records=1500, page_size=400)) as sim:
        settings = settings_for(sim, kafka, topics).model_copy(update={"kafka": kafka})
        await run_until_caught_up(settings, sim)
        expected = set(sim.ids())
    await assert_clean(kafka, topics, IdSet(expected))  # read back over SASL too
    logs = captured_logs(caplog)
    assert f"Authenticated as {SASL_USER} via SCRAM-SHA-512" in logs
    assert_no_secrets(logs, SECRETS, "the logs")


async def test_a_wrong_sasl_password_is_an_authentication_error(
    sasl_broker: SaslBroker, topics: TopicSettings, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with FeedSimulator(SimulatorConfig(password=PASSWORD, records=10)) as sim:
        settings = settings_for(sim, sasl_broker.settings(WRONG_PASSWORD), topics)
        settings = settings.model_copy(update={"kafka": sasl_broker.settings(WRONG_PASSWORD)})
        connector = Connector(settings)
        with pytest.raises(KafkaAuthenticationError) as refused:
            await asyncio.wait_for(connector.start(), 30)
        await connector.stop()
    text = exception_text(refused.value)
    assert "authentication" in text and SASL_USER in text
    assert_no_secrets(text, SECRETS, "the exception")
    assert_no_secrets(captured_logs(caplog), SECRETS, "the logs")


async def test_a_wrong_sasl_password_stops_the_process_with_exit_1_and_says_why(
    sasl_broker: SaslBroker, topics: TopicSettings, tmp_path: Path
) -> None:
    async with FeedSimulator(SimulatorConfig(password=PASSWORD, records=10)) as sim:
        kafka = sasl_broker.settings(WRONG_PASSWORD)
        config = write_config(tmp_path / "c.toml", settings_for(sim, kafka, topics))
        sasl = (
            '[kafka]\nsecurity_protocol = "SASL_PLAINTEXT"\nsasl_mechanism = "SCRAM-SHA-512"\n'
            f'sasl_username = "{SASL_USER}"\nsasl_password_file = "{kafka.sasl_password_file}"\n'
        )
        config.write_text('log_level = "DEBUG"\n' + config.read_text().replace("[kafka]\n", sasl))
        log = tmp_path / "connector.log"
        process = start_process("run", "--config", str(config), log=log)
        code = await asyncio.to_thread(process.wait, 60)  # no retrying for ever: a person must fix it
    output = log.read_text()
    assert code == 1, output[-2000:]
    assert "refused the SASL authentication of user 'cdr-stream' (SCRAM-SHA-512)" in output, output[-2000:]
    assert_no_secrets(output, SECRETS, "the process output")
