from __future__ import annotations

import csv
import io
from decimal import Decimal

import orjson

from cdr_stream.records.fields import FEED_FIELDS
from cdr_stream.simulator import FeedGenerator, GeneratorConfig
from cdr_stream.simulator.formats import RowCache, framing, json_row
from tests.memory import rss_kib


def test_json_money_keeps_its_decimal_digits() -> None:
    money = {"Charge": Decimal("0.2185"), "ChargeExcl": Decimal("0.1900")}
    row = FeedGenerator(GeneratorConfig()).row(1) | money
    assert b'"Charge":0.2185,"ChargeExcl":0.1900,' in json_row(row, "number")
    assert b'"Charge":"0.2185","ChargeExcl":"0.1900",' in json_row(row, "string")


def test_text_rows_carry_every_column_even_when_a_field_is_missing() -> None:
    generator = FeedGenerator(GeneratorConfig(invalid_rate=1.0))
    missing = next(i for i in range(1, 500) if generator.invalid_kind(i) == "missing_account")
    cache = RowCache(generator, "number")
    text = (framing("pipe").opening + cache.rows([missing], "pipe")[0]).decode()
    (parsed,) = csv.DictReader(io.StringIO(text), delimiter="|")
    assert list(parsed) == list(FEED_FIELDS)
    assert parsed["AccountCode"] == ""
    assert orjson.loads(framing("json").empty) == []


def test_cached_rows_cost_about_their_size_in_memory() -> None:
    cache = RowCache(FeedGenerator(GeneratorConfig(span_records=20_000)), "number")
    before = rss_kib()
    cache.preload(20_000)
    # A JSON row is ~560 bytes; holding orjson's own output would cost ~8 KiB a row.
    assert (rss_kib() - before) / 20_000 < 2
