"""The audit log's hash chain: how a record's hash is made, and how a whole log is checked.

Record ``n`` stores ``sha256(hash(n-1) || canonical JSON of entry n)``; record 1
links to :data:`~gateway.store.base.GENESIS_HASH`. Editing, deleting, reordering
or inserting a record anywhere before the end therefore breaks the link of some
later record, and :func:`verify_chain` names the first sequence number at which
the log stops being what was written.

What a chain alone cannot show (THREAT_MODEL material): anyone who can write the
file can *truncate* the tail, or *append* records with correctly computed hashes.
Catching that needs the head hash kept somewhere else (an anchor) or a keyed hash.

This module is backend-neutral: every store encodes times and JSON with
:func:`utc_text` and :func:`canonical_json` so that what is stored, what is
hashed and what is read back are the same text.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Mapping
from dataclasses import dataclass, fields
from typing import Any, Final

from gateway.eui64 import Eui64
from gateway.store.base import GENESIS_HASH, AuditEntry, AuditRecord

_UTC_TEXT = re.compile(r"\A\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z\Z")
_HASH = re.compile(r"[0-9a-fA-F]{64}")


class AuditRecordUnreadable(ValueError):
    """A stored audit row cannot even be decoded (bad time, bad JSON): evidence of tampering.

    Stores raise it from ``audit_records()`` so that :func:`verify_chain` can name
    the record instead of crashing on it.
    """

    def __init__(self, sequence: int, reason: str) -> None:
        super().__init__(f"audit record {sequence}: {reason}")
        self.sequence = sequence
        self.reason = reason


@dataclass(frozen=True, slots=True)
class ChainReport:
    """The verdict on a whole audit log (a diagnostic for ``dcc-gateway audit verify``)."""

    ok: bool
    records: int
    """How many records were read."""
    first_broken: int | None
    """The first sequence number at which the log is not what was written; None when ok."""
    reason: str
    head: ChainAnchor | None = None
    """The last record read (None for an empty log): keep it elsewhere, and a later
    ``verify_chain(..., anchors=[head])`` also catches a cut or rewritten tail."""


@dataclass(frozen=True, slots=True)
class ChainAnchor:
    """A record's sequence and hash, kept outside the store (``SEQUENCE:HASH``).

    The chain alone shows every change *before* its last record, not a tail cut off or
    rewritten along with every later link. A head written down elsewhere (a ticket, another
    system's log) turns that into a break: the record must still be there, with that hash.
    """

    sequence: int
    hash: str

    @classmethod
    def parse(cls, text: str) -> ChainAnchor:
        sequence, separator, digest = text.strip().partition(":")
        if not separator or not sequence.isdigit() or int(sequence) < 1 or not _HASH.fullmatch(digest):
            raise ValueError(f"an anchor is SEQUENCE:HASH (a record number and 64 hex digits), not {text!r}")
        return cls(int(sequence), digest.lower())

    def __str__(self) -> str:
        return f"{self.sequence}:{self.hash}"


# --- encodings shared by every store ----------------------------------------------------


def utc_text(when: dt.datetime) -> str:
    """``2026-06-01T12:00:00.000000Z``: fixed width, so text order is time order (SQL compares it)."""
    if when.tzinfo is dt.UTC:  # the common case: isoformat ends "+00:00", and years are 4 digits
        return when.isoformat(timespec="microseconds")[:-6] + "Z"
    if when.tzinfo is None or when.utcoffset() is None:
        raise ValueError(f"the store needs timezone-aware datetimes, not {when!r}")
    naive_utc = when.astimezone(dt.UTC).replace(tzinfo=None)
    return naive_utc.isoformat(timespec="microseconds") + "Z"


def parse_utc_text(text: str) -> dt.datetime:
    """The inverse of :func:`utc_text`; accepts only that exact form."""
    if not _UTC_TEXT.match(text):
        raise ValueError(f"not a stored UTC time: {text!r}")
    return dt.datetime.fromisoformat(text[:-1]).replace(tzinfo=dt.UTC)


def _json_default(value: object) -> object:
    """The few non-JSON types callers put in details; anything else is a bug, so it raises."""
    if isinstance(value, dt.datetime):
        return utc_text(value)
    if isinstance(value, Eui64):
        return str(value)
    if isinstance(value, Mapping):
        return dict(value)
    raise TypeError(f"not JSON-serialisable in the audit log: {type(value).__name__}")


def canonical_json(value: object) -> str:
    """One text per value: sorted keys, no spaces, UTF-8 as is, no NaN.

    Decoding and re-encoding it gives the same text, which is what lets a record
    read back from the store hash to the value computed when it was written.
    """
    return json.dumps(
        value,
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
        allow_nan=False,
        default=_json_default,
    )


# --- the chain --------------------------------------------------------------------------


_ENTRY_FIELDS: Final = tuple(f.name for f in fields(AuditEntry))


def entry_document(entry: AuditEntry) -> dict[str, Any]:
    """Every field of the entry, so that a field added later is covered by the hash too."""
    return {name: getattr(entry, name) for name in _ENTRY_FIELDS}


def chain_hash(previous_hash: str, entry: AuditEntry) -> str:
    """``sha256(previous_hash || canonical JSON of the entry)`` as lower-case hex."""
    payload = previous_hash.encode("ascii") + canonical_json(entry_document(entry)).encode("utf-8")
    return hashlib.sha256(payload).hexdigest()


_STORED_FIELDS: Final = ("at", "kind", "actor", "subject", "outcome", "reason", "detail")
if frozenset(_ENTRY_FIELDS) != frozenset(_STORED_FIELDS):  # a new field must be hashed here too
    raise RuntimeError(f"chain_hash_of_stored does not cover the audit entry's fields {_ENTRY_FIELDS}")
_json_string = json.JSONEncoder(ensure_ascii=False, allow_nan=False).encode


def chain_hash_of_stored(
    previous_hash: str, at: str, kind: str, actor: str, subject: str, outcome: str, reason: str, detail: str
) -> str:
    """:func:`chain_hash` of the entry that these stored texts decode to, without decoding them.

    ``at`` is :func:`utc_text` and ``detail`` :func:`canonical_json` text, as a store writes them:
    the canonical JSON of the decoded entry is then exactly this text with its keys in order, so
    a record is serialised once and hashed once when it is written, and a reader re-hashing the
    decoded record (:func:`verify_chain`) gets the same digest.
    """
    document = (
        '{"actor":' + _json_string(actor) + ',"at":"' + at + '","detail":' + detail + ',"kind":' + _json_string(kind)
        + ',"outcome":' + _json_string(outcome) + ',"reason":' + _json_string(reason)
        + ',"subject":' + _json_string(subject) + "}"
    )
    return hashlib.sha256(previous_hash.encode("ascii") + document.encode("utf-8")).hexdigest()


def _link_fault(record: AuditRecord, expected_previous: str) -> str | None:
    if record.previous_hash == expected_previous:
        return None
    if record.sequence == 1:
        return "record 1 does not start from the genesis hash"
    return (
        f"record {record.sequence}'s previous_hash is not the hash of record {record.sequence - 1} "
        f"(record {record.sequence - 1} was rewritten, or this record was inserted)"
    )


def _content_fault(record: AuditRecord) -> str | None:
    try:
        expected = chain_hash(record.previous_hash, record.entry)
    except (TypeError, ValueError) as exc:
        return f"record {record.sequence} cannot be hashed: {exc}"
    if record.hash != expected:
        return f"record {record.sequence}'s hash does not match its contents (the record was modified)"
    return None


def _fault(record: AuditRecord, expected_sequence: int, expected_previous: str) -> tuple[int, str] | None:
    """Where and why ``record`` breaks the chain, checking position, then link, then contents."""
    if record.sequence != expected_sequence:
        return expected_sequence, (
            f"expected record {expected_sequence} next, found record {record.sequence} "
            "(records were deleted, inserted or reordered)"
        )
    reason = _link_fault(record, expected_previous) or _content_fault(record)
    return None if reason is None else (record.sequence, reason)


async def _each(records: AsyncIterable[AuditRecord] | Iterable[AuditRecord]) -> AsyncIterator[AuditRecord]:
    if isinstance(records, AsyncIterable):
        async for record in records:
            yield record
    else:
        for record in records:
            yield record


async def verify_chain(
    records: AsyncIterable[AuditRecord] | Iterable[AuditRecord], anchors: Iterable[ChainAnchor] = ()
) -> ChainReport:
    """Checks a log in sequence order (numbering from 1) and names the first broken record.

    Reading continues after a break only to count the records; the first fault is
    the one reported, because every later link depends on it. Each anchor's record
    must be there with the anchored hash (a missing one means the tail was cut).
    """
    wanted = {anchor.sequence: anchor.hash for anchor in anchors}
    count, expected_sequence, expected_previous = 0, 1, GENESIS_HASH
    broken: tuple[int, str] | None = None
    head: ChainAnchor | None = None
    try:
        async for record in _each(records):
            count += 1
            broken = broken or _fault(record, expected_sequence, expected_previous) or _anchor_fault(record, wanted)
            expected_sequence, expected_previous = record.sequence + 1, record.hash
            head = ChainAnchor(record.sequence, record.hash)
    except AuditRecordUnreadable as exc:
        count += 1
        broken = broken or (exc.sequence, str(exc))
    beyond = [sequence for sequence in wanted if head is None or sequence > head.sequence]
    if broken is None and beyond:
        last = 0 if head is None else head.sequence
        broken = (last + 1, f"the log ends at record {last} but record {min(beyond)} was anchored: its tail was cut")
    if broken is None:
        return ChainReport(ok=True, records=count, first_broken=None, reason=f"{count} records, chain intact", head=head)
    return ChainReport(ok=False, records=count, first_broken=broken[0], reason=broken[1], head=head)


def _anchor_fault(record: AuditRecord, anchors: dict[int, str]) -> tuple[int, str] | None:
    anchored = anchors.get(record.sequence)
    if anchored is None or anchored == record.hash:
        return None
    return record.sequence, f"record {record.sequence} is not the one anchored (hash {anchored[:16]}…)"
