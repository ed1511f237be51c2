"""Feed rows for unit tests, built here so each test says what it changes."""

from __future__ import annotations

from typing import Any

from cdr_stream.answers.formats import ANSWER_FORMATS

# The formats the SFTP source's tests run in, once each.
FILE_FORMATS = ANSWER_FORMATS


def feed_row(row_id: int = 1, **changes: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "ID": row_id,
        "AccountCode": "81234567",
        "Direction": "Outbound",
        "CallType": "Mobile",
        "BillDate": "2024-05-01",
        "Date": "2024-04-06",
        "Time": "10:11:12",
        "UTCDateTime": "2024-04-05 22:11:12",
        "UTCOffset": 12,
        "AParty": "6491234567",
        "BParty": "6421234567",
        "BillNumber": "6491234567",
        "Seconds": 60,
        "NetworkSeconds": 42,
        "ConnectSeconds": 3,
        "Charge": 0.4485,
        "ChargeExcl": 0.39,
        "FreeUnitsUsed": 0,
        "TextDesc1": "Mobile call",
        "TextDesc2": "NZ mobile, peak",
        "ReleaseCause": "0016",
        "Status": "Ok",
        "ServiceType": "PLAN1",
        "BillingGroup": "Default",
        "CallingGroup": "Default",
        "Profile": "Default",
    }
    row.update(changes)
    return row


def as_strings(row: dict[str, Any]) -> dict[str, Any]:
    """The same row as a PHP feed that sends every value as a string would."""
    return {
        key: (
            value
            if value is None or isinstance(value, str)
            else repr(value)
            if isinstance(value, float)
            else str(value)
        )
        for key, value in row.items()
    }
