from __future__ import annotations

import io

from cdr_stream.kafka.protocol import (
    DescribeProducersRequest,
    DescribeProducersResponse_v0,
    DescribeTransactionsRequest,
    DescribeTransactionsResponse_v0,
)


def test_describe_transactions_is_encoded_as_kafka_defines_version_0() -> None:
    request = DescribeTransactionsRequest(["cdr-stream-hero"]).prepare({65: (0, 0)})
    # A compact array of one compact string (lengths + 1 as unsigned varints), then no tagged fields.
    assert request.encode() == b"\x02\x10cdr-stream-hero\x00"
    assert request.FLEXIBLE_VERSION


def test_a_describe_transactions_answer_of_kafka_4_decodes() -> None:
    # Kafka 4.4's answer for an unknown transactional id (error 105), after the response header.
    body = b"\x00\x00\x00\x00\x02\x00i\x05nope\x01" + b"\x00" * 22 + b"\x01\x00\x00"
    (state,) = DescribeTransactionsResponse_v0.decode(io.BytesIO(body)).transaction_states
    assert state[0] == 105 and state[1] == "nope" and state[5:7] == (0, 0)


def test_describe_producers_asks_for_each_topic_once_with_its_partitions() -> None:
    request = DescribeProducersRequest({"b": [0, 2], "a": [1]}).prepare({61: (0, 0)})
    assert request.encode() == b"\x03\x02a\x02\x00\x00\x00\x01\x00\x02b\x03\x00\x00\x00\x00\x00\x00\x00\x02\x00\x00"


def test_a_describe_producers_answer_gives_each_producers_open_transaction() -> None:
    producer = (
        (7).to_bytes(8, "big")  # producer id
        + (3).to_bytes(4, "big")  # epoch
        + (41).to_bytes(4, "big")  # last sequence
        + (1_700_000_000_000).to_bytes(8, "big")  # last timestamp
        + (0).to_bytes(4, "big")  # coordinator epoch
        + (56).to_bytes(8, "big")  # current transaction's first offset
        + b"\x00"
    )
    partition = (4).to_bytes(4, "big") + b"\x00\x00" + b"\x00" + b"\x02" + producer + b"\x00"
    body = b"\x00\x00\x00\x00" + b"\x02" + b"\x07events" + b"\x02" + partition + b"\x00" + b"\x00"
    ((name, partitions, _),) = DescribeProducersResponse_v0.decode(io.BytesIO(body)).topics
    ((index, code, message, producers, _),) = partitions
    assert (name, index, code, message) == ("events", 4, 0, None)
    assert [entry[:6] for entry in producers] == [(7, 3, 41, 1_700_000_000_000, 0, 56)]
