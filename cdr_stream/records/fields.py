"""The 26 fields of a billing feed row, in the provider's order, their event names, and which of them decide
whether a row is published."""

from __future__ import annotations

from typing import Final

#: Feed field name -> event field name. Order is the provider's column order.
FEED_TO_EVENT: Final[dict[str, str]] = {
    "ID": "id",
    "AccountCode": "account_code",
    "Direction": "direction",
    "CallType": "call_type",
    "BillDate": "bill_date",
    "Date": "local_date",
    "Time": "local_time",
    "UTCDateTime": "utc_datetime",
    "UTCOffset": "utc_offset_hours",
    "AParty": "a_party",
    "BParty": "b_party",
    "BillNumber": "bill_number",
    "Seconds": "seconds",
    "NetworkSeconds": "network_seconds",
    "ConnectSeconds": "connect_seconds",
    "Charge": "charge",
    "ChargeExcl": "charge_excl",
    "FreeUnitsUsed": "free_units_used",
    "TextDesc1": "text_desc1",
    "TextDesc2": "text_desc2",
    "ReleaseCause": "release_cause",
    "Status": "status",
    "ServiceType": "service_type",
    "BillingGroup": "billing_group",
    "CallingGroup": "calling_group",
    "Profile": "profile",
}

FEED_FIELDS: Final[tuple[str, ...]] = tuple(FEED_TO_EVENT)

#: The fields that key, order and price a record. They alone decide whether a row is published: a row
#: whose five are valid is a billing record. They are the row schema's required fields.
DECIDING_FIELDS: Final[tuple[str, ...]] = ("ID", "AccountCode", "UTCDateTime", "Charge", "ChargeExcl")

#: The other 21 fields: a value of one that cannot be read is published as null and reported.
DESCRIPTIVE_FIELDS: Final[tuple[str, ...]] = tuple(name for name in FEED_FIELDS if name not in DECIDING_FIELDS)
