"""Connection options shared by every Kafka client the connector makes (producer, consumer, admin)."""

from __future__ import annotations

from typing import Any

from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.conn import create_conn
from aiokafka.errors import (
    AuthenticationFailedError,
    KafkaError,
    SaslAuthenticationFailed,
    UnsupportedSaslMechanismError,
)

from cdr_stream.config import KafkaSettings
from cdr_stream.errors import KafkaAuthenticationError
from cdr_stream.ops.tls import tls_context


def connection_options(kafka: KafkaSettings) -> dict[str, Any]:
    options: dict[str, Any] = {
        "bootstrap_servers": [server.strip() for server in kafka.bootstrap_servers.split(",") if server.strip()],
        "client_id": kafka.client_id,
        "security_protocol": kafka.security_protocol,
        "request_timeout_ms": kafka.request_timeout_ms,
    }
    if kafka.security_protocol in ("SSL", "SASL_SSL"):
        options["ssl_context"] = tls_context(kafka.ssl_cafile, kafka.ssl_certfile, kafka.ssl_keyfile)
    if kafka.security_protocol.startswith("SASL"):
        assert kafka.sasl_password is not None  # enforced by KafkaSettings
        options["sasl_mechanism"] = kafka.sasl_mechanism
        options["sasl_plain_username"] = kafka.sasl_username
        options["sasl_plain_password"] = kafka.sasl_password.get_secret_value()
    return options


def committed_reader(kafka: KafkaSettings) -> AIOKafkaConsumer:
    """A group-less consumer that sees only committed transactions."""
    return AIOKafkaConsumer(
        isolation_level="read_committed",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=200,
        **connection_options(kafka),
    )


def admin_client(kafka: KafkaSettings) -> AIOKafkaAdminClient:
    options = connection_options(kafka)
    options.pop("request_timeout_ms")
    return AIOKafkaAdminClient(request_timeout_ms=kafka.request_timeout_ms, **options)


async def check_authentication(kafka: KafkaSettings) -> None:
    """Raise KafkaAuthenticationError when a bootstrap server refuses the SASL login.

    aiokafka's clients report a refused login and an unreachable broker alike ("Unable to bootstrap");
    one connection made here tells them apart. Anything but a refusal is left to the caller's retries.
    """
    if not kafka.security_protocol.startswith("SASL"):
        return
    options = connection_options(kafka)
    for server in options.pop("bootstrap_servers"):
        host, _, port = server.rpartition(":")
        try:
            connection = await create_conn(host, int(port), **options)
        except (SaslAuthenticationFailed, AuthenticationFailedError, UnsupportedSaslMechanismError) as exc:
            raise KafkaAuthenticationError(
                f"Kafka at {server} refused the SASL authentication of user {kafka.sasl_username!r} "
                f"({kafka.sasl_mechanism}): {exc}; check sasl_username, sasl_mechanism and the password secret"
            ) from None
        except (KafkaError, OSError, TimeoutError, ValueError):
            continue  # unreachable or not answering: not a verdict on the login
        connection.close()
        return
