"""Deterministic synthetic billing feed rows: record N is a pure function of (seed, N).

Besides calls and service fees, a generator can write what PHP/MySQL feeds send (each at its own rate):
account-level fees and credits with no calling or called number, MySQL's unset BillDate "0000-00-00",
whole numbers as "60.0", and UTC offsets spelled "+13", "13:00", "+12:45", "0" or "1". All of these are
billing records the connector must publish; only the deliberately invalid rows (`invalid_rate`) break one of
the five fields that decide a record's fate.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from enum import StrEnum
from typing import Final
from zoneinfo import ZoneInfo

#: A generated value: counts are int, money is Decimal, everything else (and broken values) is str.
FeedValue = int | str | Decimal
FeedRow = dict[str, FeedValue]

NZ: Final = ZoneInfo("Pacific/Auckland")
# The default window (7 days before this local date) spans a month end and the April 2023 DST end.
BASE_DATE: Final = date(2023, 4, 6)
GST_RATE: Final = Decimal("1.15")
_CENTS4: Final = Decimal("0.0001")
_ZERO: Final = Decimal("0.0000")
_MASK64: Final = (1 << 64) - 1
_EPOCH: Final = datetime(1970, 1, 1)


class InvalidKind(StrEnum):
    """How a deliberately broken record is broken: always in one of the fields that decide its fate."""

    MISSING_ACCOUNT = "missing_account"
    BLANK_ACCOUNT = "blank_account"
    BAD_UTC = "bad_utc"
    ZERO_UTC = "zero_utc"
    BAD_CHARGE = "bad_charge"


_INVALID_KINDS: Final = tuple(InvalidKind)
_QUIRKS: Final = ("account_fee", "credit", "zero_bill_date", "whole_float", "offset_spelling")
_NO_QUIRKS: Final[frozenset[str]] = frozenset()
_NOT_CALLS: Final = frozenset(("account_fee", "credit"))


def mix64(value: int) -> int:
    """splitmix64 finaliser: a stable, salt-free hash so (seed, id) always maps to the same stream."""
    x = (value + 0x9E3779B97F4A7C15) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


def _weighted(*pairs: tuple[str, int]) -> tuple[str, ...]:
    # An expanded table makes a weighted pick one index operation.
    return tuple(name for name, weight in pairs for _ in range(weight))


_CALL_TYPES: Final = _weighted(
    ("Local", 28),
    ("National", 14),
    ("Mobile", 30),
    ("International", 6),
    ("Onnet", 8),
    ("TollFree", 4),
    ("SMS", 10),
)
# (cause, status, answered)
_OUTCOMES: Final = (
    *[("0016", "Ok", True)] * 78,
    *[("0031", "Ok", True)] * 4,
    *[("0017", "Busy", False)] * 6,
    *[("0019", "No Answer", False)] * 6,
    ("0018", "No Answer", False),
    *[("0001", "Unallocated", False)] * 2,
    ("0034", "Error", False),
    ("0038", "Error", False),
    ("0041", "Error", False),
)
_AREAS: Final = {
    "3": "Christchurch",
    "4": "Wellington",
    "6": "Palmerston North",
    "7": "Hamilton",
    "9": "Auckland",
}
_MOBILE_PREFIXES: Final = ("6421", "6422", "6427")
# (prefix, digits after it, description, rate per minute excl GST)
_INTERNATIONAL: Final = (
    ("614", 8, "Australia, mobile", Decimal("0.2900")),
    ("612", 8, "Australia, Sydney", Decimal("0.0900")),
    ("4420", 8, "United Kingdom, London", Decimal("0.0900")),
    ("1", 10, "USA & Canada", Decimal("0.0500")),
    ("86", 11, "China", Decimal("0.1200")),
    ("679", 7, "Fiji", Decimal("0.8900")),
    ("685", 7, "Samoa", Decimal("1.1900")),
    ("91", 10, "India", Decimal("0.1500")),
)
_RATES: Final = {
    "Local": Decimal("0.0500"),
    "National": Decimal("0.0800"),
    "Mobile": Decimal("0.1900"),
    "Onnet": _ZERO,
    "TollFree": Decimal("0.0600"),
    "SMS": Decimal("0.0900"),
}
# Carriers bill these per started minute; the rest per second.
_PER_MINUTE: Final = frozenset({"Mobile", "International", "TollFree"})
_MANUAL_CHARGES: Final = (
    ("Install fee\t(site visit)", Decimal("120.0000")),
    ('Credit: "goodwill", outage', Decimal("-15.0000")),
    ("Porting fee, 2 numbers", Decimal("30.0000")),
    ("Late payment fee", Decimal("8.6957")),
)
_BROADBAND: Final = ("Fibre 300/100 | static IP", "Fibre 900/500", "VDSL unlimited")
# Fees billed to an account, not to one of its numbers: (TextDesc1, TextDesc2, amount excl GST).
_ACCOUNT_FEES: Final = (
    ("Broadband monthly", "Fibre 300/100 | static IP", Decimal("69.5652")),
    ("Broadband monthly", "VDSL unlimited", Decimal("59.1304")),
    ("Manual charge", "Install fee\t(site visit)", Decimal("120.0000")),
    ("Manual charge", "Account admin fee", Decimal("4.3478")),
)
_CREDITS: Final = (
    ('Credit: "goodwill", outage', Decimal("-15.0000")),
    ("Refund, overbilled calls", Decimal("-3.4783")),
    ("Credit note 1042", Decimal("-100.0000")),
)
# Where a feed's local time may be, and how its offset may be spelled. NZ (most rows), the Chatham Islands
# (+12:45, +13:45 in summer) and the UK (0, or 1 in summer), as the same platform runs in both countries.
_ZONES: Final = (ZoneInfo("Pacific/Auckland"), ZoneInfo("Pacific/Chatham"), ZoneInfo("Europe/London"))
_WHOLE_FIELDS: Final = ("Seconds", "NetworkSeconds", "ConnectSeconds", "FreeUnitsUsed")
_MONTHS: Final = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_PLANS: Final = ("VOIP-BUS-01", "VOIP-BUS-02", "VOIP-RES-01", "SIPTRUNK-10", "SIPTRUNK-30")


@dataclass(frozen=True, slots=True)
class Account:
    """A customer: its code, its lines and the plan settings its rows carry."""

    code: str
    lines: tuple[str, ...]
    tollfree: str
    service_type: str
    billing_group: str
    calling_group: str
    profile: str
    bundle: bool


@dataclass(frozen=True, slots=True)
class GeneratorConfig:
    """What the data looks like. Two generators with equal configs make identical rows."""

    seed: int = 1
    first_id: int = 1
    accounts: int = 50
    invalid_rate: float = 0.0
    service_rate: float = 0.05
    # What PHP/MySQL feeds send, each a share of all records (all valid billing records):
    #: fees billed to the account (broadband, manual charges), with no AParty, BParty or BillNumber;
    account_fee_rate: float = 0.0
    #: credits and refunds: negative amounts, no numbers;
    credit_rate: float = 0.0
    #: BillDate as MySQL's unset date, "0000-00-00";
    zero_bill_date_rate: float = 0.0
    #: whole numbers (Seconds, NetworkSeconds, ConnectSeconds, FreeUnitsUsed) written "60.0";
    whole_float_rate: float = 0.0
    #: UTCOffset spelled "+13", "13:00", "+12:45", "0", "1" (local Date and Time follow the zone).
    offset_spelling_rate: float = 0.0
    base_date: date = BASE_DATE
    window_days: float = 7.0
    #: Records spread over the window; later IDs continue at the same pace past its end.
    span_records: int = 1000


def _digits(rng: random.Random, count: int) -> str:
    return str(int(rng.random() * 10**count)).zfill(count)


def _landline(rng: random.Random) -> str:
    return "64" + "39467"[int(rng.random() * 5)] + _digits(rng, 7)


def _mobile(rng: random.Random) -> str:
    return _MOBILE_PREFIXES[int(rng.random() * 3)] + _digits(rng, 7)


def _money(amount: Decimal) -> Decimal:
    return amount.quantize(_CENTS4, rounding=ROUND_HALF_UP)


def _bill_date(local: datetime) -> str:
    year, month = (local.year + 1, 1) if local.month == 12 else (local.year, local.month + 1)
    return f"{year:04d}-{month:02d}-01"


class FeedGenerator:
    """Makes feed rows. Every row, timestamp and invalid choice depends only on (config, id)."""

    def __init__(self, config: GeneratorConfig) -> None:
        if config.accounts < 1 or config.span_records < 1 or config.window_days <= 0:
            raise ValueError("accounts, span_records and window_days must be positive")
        self.config = config
        self._seed_key = mix64(config.seed & _MASK64)
        window_end = datetime.combine(config.base_date, datetime.min.time(), NZ)
        self._window = int(config.window_days * 86400)
        self._window_start = int(window_end.timestamp()) - self._window
        self._service_cut = int(config.service_rate * 0x10000)
        self._invalid_cut = int(config.invalid_rate * 0x100000000)
        self._quirk_cuts = tuple(
            int(rate * 0x10000)
            for rate in (
                config.account_fee_rate,
                config.credit_rate,
                config.zero_bill_date_rate,
                config.whole_float_rate,
                config.offset_spelling_rate,
            )
        )
        self.accounts = self._make_accounts(random.Random(mix64(self._seed_key ^ 0xACC0)))

    def _make_accounts(self, rng: random.Random) -> tuple[Account, ...]:
        codes = rng.sample(range(10**7), self.config.accounts)
        return tuple(
            Account(
                code=f"8{code:07d}",
                lines=tuple(_landline(rng) for _ in range(1 + int(rng.random() * 4))),
                tollfree="64800" + _digits(rng, 6) if rng.random() < 0.3 else "",
                service_type=_PLANS[int(rng.random() * len(_PLANS))],
                billing_group="Default" if rng.random() < 0.8 else "Branch, Wellington",
                calling_group="Default" if rng.random() < 0.85 else "International barred",
                profile="Default" if rng.random() < 0.9 else "Business",
                bundle=rng.random() < 0.3,
            )
            for code in codes
        )

    def _key(self, record_id: int) -> int:
        return mix64(self._seed_key ^ (record_id & _MASK64))

    def _timestamp_from_key(self, record_id: int, key: int) -> int:
        # floor((k + u) * window / span) with u in [0, 1) never decreases as k grows.
        jitter = ((key & 0xFFFFFFFF) * self._window) >> 32
        step = (record_id - self.config.first_id) * self._window + jitter
        return self._window_start + step // self.config.span_records

    def timestamp(self, record_id: int) -> int:
        """UTC epoch seconds of the record; non-decreasing in ID."""
        return self._timestamp_from_key(record_id, self._key(record_id))

    def is_service(self, record_id: int) -> bool:
        """A fee or a credit, not a call (what `servicesonly=1` asks for)."""
        key = self._key(record_id)
        return (key >> 32) & 0xFFFF < self._service_cut or not self._quirks_from_key(key).isdisjoint(_NOT_CALLS)

    def invalid_kind(self, record_id: int) -> InvalidKind | None:
        """How this record is broken, or None. Independent of every other field's randomness."""
        if not self._invalid_cut:
            return None
        check = mix64(self._key(record_id) ^ 0x1BAD)
        if check & 0xFFFFFFFF >= self._invalid_cut:
            return None
        return _INVALID_KINDS[(check >> 32) % len(_INVALID_KINDS)]

    def is_invalid(self, record_id: int) -> bool:
        return self.invalid_kind(record_id) is not None

    def quirks(self, record_id: int) -> frozenset[str]:
        """Which PHP/MySQL forms the record is written in: "account_fee", "credit", "zero_bill_date",
        "whole_float", "offset_spelling". Independent of every other field's randomness."""
        return self._quirks_from_key(self._key(record_id))

    def _quirks_from_key(self, key: int) -> frozenset[str]:
        if not any(self._quirk_cuts):
            return _NO_QUIRKS
        bits = mix64(key ^ 0x9E1F) ^ (mix64(key ^ 0x0FF5) << 64)
        return frozenset(
            name
            for index, (name, cut) in enumerate(zip(_QUIRKS, self._quirk_cuts, strict=True))
            if (bits >> (16 * index)) & 0xFFFF < cut
        )

    def row(self, record_id: int) -> FeedRow:
        key = self._key(record_id)
        ts = self._timestamp_from_key(record_id, key)
        quirks = self._quirks_from_key(key)
        rng = random.Random(key)
        zone = _ZONES[int(rng.random() * len(_ZONES))] if "offset_spelling" in quirks else NZ
        local = datetime.fromtimestamp(ts, zone)
        offset = local.utcoffset()
        account = self.accounts[int(rng.random() * len(self.accounts))]
        if "credit" in quirks:
            f = _credit_fields(rng)
        elif "account_fee" in quirks:
            f = _account_fee_fields(rng)
        elif (key >> 32) & 0xFFFF < self._service_cut:
            f = _service_fields(rng, account, local)
        else:
            f = self._call_fields(rng, account)
        row: FeedRow = {
            "ID": record_id,
            "AccountCode": account.code,
            "Direction": f["Direction"],
            "CallType": f["CallType"],
            "BillDate": _bill_date(local),
            "Date": local.date().isoformat(),
            "Time": local.time().isoformat(),
            "UTCDateTime": str(_EPOCH + timedelta(seconds=ts)),
            "UTCOffset": int(offset.total_seconds()) // 3600 if offset else 0,
            "AParty": f["AParty"],
            "BParty": f["BParty"],
            "BillNumber": f["BillNumber"],
            "Seconds": f["Seconds"],
            "NetworkSeconds": f["NetworkSeconds"],
            "ConnectSeconds": f["ConnectSeconds"],
            "Charge": f["Charge"],
            "ChargeExcl": f["ChargeExcl"],
            "FreeUnitsUsed": f["FreeUnitsUsed"],
            "TextDesc1": f["TextDesc1"],
            "TextDesc2": f["TextDesc2"],
            "ReleaseCause": f["ReleaseCause"],
            "Status": f["Status"],
            "ServiceType": account.service_type,
            "BillingGroup": account.billing_group,
            "CallingGroup": account.calling_group,
            "Profile": account.profile,
        }
        if quirks:
            _write_as_php(row, quirks, rng, offset)
        kind = self.invalid_kind(record_id)
        if kind is not None:
            _break(row, kind)
        return row

    def _call_fields(self, rng: random.Random, account: Account) -> FeedRow:
        call_type = _CALL_TYPES[int(rng.random() * len(_CALL_TYPES))]
        if call_type == "TollFree" and not account.tollfree:
            call_type = "Local"
        line = account.lines[int(rng.random() * len(account.lines))]
        rate = _RATES.get(call_type, _ZERO)
        direction, desc1 = "outbound", f"{call_type} call"
        if call_type == "Local":
            other, desc2 = line[:3] + _digits(rng, 7), _AREAS[line[2]]
        elif call_type == "National":
            other = _landline(rng)
            desc2 = _AREAS[other[2]]
        elif call_type in ("Mobile", "SMS"):
            other = _mobile(rng)
            desc1, desc2 = ("SMS" if call_type == "SMS" else "Call to mobile"), f"NZ mobile 0{other[2:4]}"
        elif call_type == "International":
            prefix, width, desc2, rate = _INTERNATIONAL[int(rng.random() * len(_INTERNATIONAL))]
            other = prefix + _digits(rng, width)
        elif call_type == "Onnet":
            peer = self.accounts[int(rng.random() * len(self.accounts))]
            other, direction, desc1, desc2 = peer.lines[0], "onnet", "On-net call", "Free"
        else:  # TollFree: a caller rings the customer's 0800 number, and the customer pays
            caller = _landline(rng) if rng.random() < 0.5 else _mobile(rng)
            return _usage_fields(rng, account, call_type, rate) | {
                "Direction": "inbound",
                "CallType": call_type,
                "AParty": caller,
                "BParty": account.tollfree,
                "BillNumber": account.tollfree,
                "TextDesc1": "0800 inbound",
                "TextDesc2": "Freephone",
            }
        a_party, b_party = line, other
        if call_type in ("Local", "National", "Mobile") and rng.random() < 0.2:
            # A received call is free and billed to the line that was called.
            direction, a_party, b_party, rate, desc1 = "inbound", other, line, _ZERO, "Inbound call"
        elif direction == "outbound" and rng.random() < 0.05:
            # A diverted call: the original caller shows as AParty, the diverting line pays.
            a_party, desc1 = _mobile(rng), "Diverted call"
        return _usage_fields(rng, account, call_type, rate) | {
            "Direction": direction,
            "CallType": call_type,
            "AParty": a_party,
            "BParty": b_party,
            "BillNumber": line,
            "TextDesc1": desc1,
            "TextDesc2": desc2,
        }


def _usage_fields(rng: random.Random, account: Account, call_type: str, rate: Decimal) -> FeedRow:
    network = connect = billed = free_units = 0
    charge = _ZERO
    if call_type == "SMS":
        cause, status = "0016", "Ok"
        charge, free_units = (_ZERO, 1) if account.bundle else (rate, 0)
    else:
        cause, status, answered = _OUTCOMES[int(rng.random() * len(_OUTCOMES))]
        connect = 1 + int(rng.random() * (12 if answered else 30))
        if answered:
            network = min(7200, 1 + int(rng.expovariate(1 / 150)))
            billed = -(-network // 60) * 60 if call_type in _PER_MINUTE else network
            charge = _money(rate * billed / 60)
            if account.bundle and call_type in ("National", "Mobile") and charge:
                charge, free_units = _ZERO, billed
    return {
        "Seconds": billed,
        "NetworkSeconds": network,
        "ConnectSeconds": connect,
        "Charge": _money(charge * GST_RATE),
        "ChargeExcl": charge,
        "FreeUnitsUsed": free_units,
        "ReleaseCause": cause,
        "Status": status,
    }


def _service_fields(rng: random.Random, account: Account, local: datetime) -> FeedRow:
    line = account.lines[int(rng.random() * len(account.lines))]
    pick = rng.random()
    if pick < 0.5:
        month = _MONTHS[local.month - 1]
        desc1, desc2, amount = "Number rental", f"Rental {line}, {month} {local.year}", Decimal("10.0000")
    elif pick < 0.8:
        desc1, desc2, amount = "Broadband monthly", _BROADBAND[int(rng.random() * 3)], Decimal("69.5652")
    else:
        desc1 = "Manual charge"
        desc2, amount = _MANUAL_CHARGES[int(rng.random() * len(_MANUAL_CHARGES))]
    return _service_row(desc1, desc2, amount, line)


def _service_row(desc1: str, desc2: str, amount: Decimal, line: str = "") -> FeedRow:
    """A service fee: billed to one of the account's lines, or (no `line`) to the account itself, with no
    direction and no calling, called or billed number."""
    return {
        "Direction": "",
        "CallType": "Service",
        "AParty": line,
        "BParty": "",
        "BillNumber": line,
        "Seconds": 0,
        "NetworkSeconds": 0,
        "ConnectSeconds": 0,
        "Charge": _money(amount * GST_RATE),
        "ChargeExcl": amount,
        "FreeUnitsUsed": 0,
        "TextDesc1": desc1,
        "TextDesc2": desc2,
        "ReleaseCause": "",
        "Status": "Ok",
    }


def _account_fee_fields(rng: random.Random) -> FeedRow:
    return _service_row(*_ACCOUNT_FEES[int(rng.random() * len(_ACCOUNT_FEES))])


def _credit_fields(rng: random.Random) -> FeedRow:
    desc2, amount = _CREDITS[int(rng.random() * len(_CREDITS))]
    return _service_row("Credit", desc2, amount)


def _offset_spelling(offset: timedelta | None, rng: random.Random) -> str:
    minutes = int(offset.total_seconds()) // 60 if offset else 0
    sign, hours, rest = ("-" if minutes < 0 else "+"), abs(minutes) // 60, abs(minutes) % 60
    spellings = [f"{sign}{hours}:{rest:02d}", f"{'-' if minutes < 0 else ''}{hours:02d}:{rest:02d}"]
    if not rest:
        spellings += [f"{sign}{hours}", str(minutes // 60)]  # "+13", and "0" or "1" as a plain string
    return spellings[int(rng.random() * len(spellings))]


def _write_as_php(row: FeedRow, quirks: frozenset[str], rng: random.Random, offset: timedelta | None) -> None:
    if "zero_bill_date" in quirks:
        row["BillDate"] = "0000-00-00"
    if "whole_float" in quirks:
        # Decimal keeps the ".0": a JSON answer writes 60.0 as a number, or "60.0" as a string.
        for name in _WHOLE_FIELDS:
            row[name] = Decimal(f"{row[name]}.0")
    if "offset_spelling" in quirks:
        row["UTCOffset"] = _offset_spelling(offset, rng)


def _break(row: FeedRow, kind: InvalidKind) -> None:
    if kind is InvalidKind.MISSING_ACCOUNT:
        del row["AccountCode"]
    elif kind is InvalidKind.BLANK_ACCOUNT:
        row["AccountCode"] = ""
    elif kind is InvalidKind.BAD_UTC:
        row["UTCDateTime"] = "31/02/2024 25:00"
    elif kind is InvalidKind.ZERO_UTC:
        row["UTCDateTime"] = "0000-00-00 00:00:00"  # MySQL's unset DATETIME: the call's time is unknown
    else:
        row["Charge"] = "N/A"
