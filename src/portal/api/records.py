"""The records the sync API takes: the import format's records (portal/importer.py, so one set
of rules for both), each with the source's `updated_at` and/or `version`, and the `record` field
that names it on a line of a bulk batch."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from portal.importer import (
    AppointmentIn,
    BusinessUnitIn,
    CustomerIn,
    Id,
    InvoiceIn,
    JobIn,
    MembershipIn,
    UtcTime,
)

Version = Annotated[int, msgspec.Meta(ge=0, le=2**62)]
Kind = Literal["business_unit", "customer", "job", "invoice", "membership", "appointment"]


class BusinessUnitRecord(BusinessUnitIn, tag="business_unit", tag_field="record", kw_only=True):
    """A business unit (trade division); `id` is the source's id."""

    updated_at: UtcTime | None = None
    version: Version | None = None


class CustomerRecord(CustomerIn, tag="customer", tag_field="record", kw_only=True):
    """A customer with its contact emails and service locations. Locations are matched by
    their `id`; one left out of a later push stays (its jobs and invoices keep it)."""

    updated_at: UtcTime | None = None
    version: Version | None = None


class JobRecord(JobIn, tag="job", tag_field="record", kw_only=True):
    """A job (a scheduled one with its times shows on the Scheduler unless an appointment
    stands for it)."""

    updated_at: UtcTime | None = None
    version: Version | None = None


class InvoiceRecord(InvoiceIn, tag="invoice", tag_field="record", kw_only=True):
    """An invoice with its lines. `balance_cents` is what the source says is still owed;
    left out, it is the total less the payments made in the portal. `pdf_base64`
    optionally replaces the portal's own PDF of the invoice. `status` "void" voids it
    (nothing owed, never payable; refused with 409 while money is on it)."""

    updated_at: UtcTime | None = None
    version: Version | None = None


class MembershipRecord(MembershipIn, tag="membership", tag_field="record", kw_only=True):
    """A membership (residential) or contract (commercial) with its visits."""

    updated_at: UtcTime | None = None
    version: Version | None = None


class AppointmentRecord(AppointmentIn, tag="appointment", tag_field="record", kw_only=True):
    """An appointment the business booked: a time window (`starts_at` to `ends_at`) at one
    of the customer's locations, for a `service_type`, with its `status`; optionally the
    `job` it is for (by number) and the portal's appointment request it answers
    (`booking_request`: the `booking_request_id` of a `booking.requested` event). The
    customer sees upcoming ones on the Scheduler tab."""

    booking_request: Annotated[int, msgspec.Meta(ge=1, le=2**31 - 1)] | None = None
    updated_at: UtcTime | None = None
    version: Version | None = None


class DeleteRecord(msgspec.Struct, tag="delete", tag_field="record", forbid_unknown_fields=True):
    """Delete the record of `kind` with the source id `id` (refused while money records —
    payments — depend on it)."""

    kind: Kind
    id: Id
    updated_at: UtcTime | None = None
    version: Version | None = None


Record = (
    BusinessUnitRecord
    | CustomerRecord
    | JobRecord
    | InvoiceRecord
    | MembershipRecord
    | AppointmentRecord
    | DeleteRecord
)
BulkLine = Record  # one line of an NDJSON batch

KIND_OF: dict[type, str] = {
    BusinessUnitRecord: "business_unit",
    CustomerRecord: "customer",
    JobRecord: "job",
    InvoiceRecord: "invoice",
    MembershipRecord: "membership",
    AppointmentRecord: "appointment",
}


def source_id(record: Record) -> str:
    """The source's own id of a record (jobs and invoices are known by their number)."""
    if isinstance(record, JobRecord | InvoiceRecord):
        return record.number
    return record.id


def version_of(record: Record) -> int:
    """The record's version for "older never overwrites newer": its explicit `version`,
    else its `updated_at` in microseconds, else 0 (applied in the order received)."""
    if record.version is not None:
        return record.version
    if record.updated_at is not None:
        return int(record.updated_at.timestamp() * 1_000_000)
    return 0
