"""The audit log's hash chain: how a record's hash is made, and how a whole log is checked.

Record ``n`` stores ``sha256(hash(n-1) || canonical JSON of entry n)``; record 1
links to :data:`~gateway.store.base.GENESIS_HASH`. Editing, deleting, reordering
or inserting a record anywhere before the end therefore breaks the link of some
later record, and :func:`verify_chain` names the first sequence number at which
the log stops being what was written.

What a chain alone cannot show (THREAT_MODEL material): anyone who can write the
file can *truncate* the tail, or *append* records with correctly computed hashes.
Catching that needs the head hash kept somewhere else (an anchor) or a keyed hash.

Several writers (PostgreSQL workers) each chain their own *lane* (see
:class:`~gateway.store.base.AuditRecord`): a record links to the one before it in its
lane, so writers never wait for one another to append. Each writer writes its lane's head
into the *anchor chain* from time to time (:class:`~gateway.store.base.LaneAnchor`, itself
hash-chained), and :func:`verify_chain` checks every lane, every anchor's record, and the
anchor chain: a lane cut or rewritten up to an anchored head breaks; what a lane wrote after
its last anchor is as exposed as the tail of a single chain.

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
from gateway.store.base import GENESIS_HASH, MAIN_LANE, AuditEntry, AuditRecord, LaneAnchor

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


def lane_genesis(lane: int) -> str:
    """What a lane's first record links to: the genesis hash for the main lane, and for every
    other lane a hash of its number (so a lane's records cannot pass for another lane's)."""
    if lane == MAIN_LANE:
        return GENESIS_HASH
    return hashlib.sha256(f"dcc-gateway audit lane {lane}".encode("ascii")).hexdigest()


def anchor_hash(previous_hash: str, lane: int, position: int, lane_hash: str, at: dt.datetime) -> str:
    """The anchor chain's link: ``sha256(previous_hash || canonical JSON of what it anchors)``."""
    document = {"at": at, "lane": lane, "lane_hash": lane_hash, "position": position}
    payload = previous_hash.encode("ascii") + canonical_json(document).encode("utf-8")
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
    position = record.lane_position
    if record.lane != MAIN_LANE:
        if position == 1:
            return f"record {record.sequence} does not start lane {record.lane}"
        return (
            f"record {record.sequence}'s previous_hash is not the hash of the record before it in lane "
            f"{record.lane} (that record was rewritten, or this one was inserted)"
        )
    if position == 1:
        return "record 1 does not start from the genesis hash"
    return (
        f"record {position}'s previous_hash is not the hash of record {position - 1} "
        f"(record {position - 1} was rewritten, or this record was inserted)"
    )


def _content_fault(record: AuditRecord) -> str | None:
    try:
        expected = chain_hash(record.previous_hash, record.entry)
    except (TypeError, ValueError) as exc:
        return f"record {record.sequence} cannot be hashed: {exc}"
    if record.hash != expected:
        return f"record {record.sequence}'s hash does not match its contents (the record was modified)"
    return None


def _position_fault(record: AuditRecord, expected_position: int) -> str | None:
    if record.lane_position == expected_position:
        return None
    if record.lane == MAIN_LANE:
        return (
            f"expected record {expected_position} next, found record {record.sequence} "
            "(records were deleted, inserted or reordered)"
        )
    return (
        f"expected position {expected_position} of lane {record.lane} next, found record {record.sequence} "
        f"at position {record.lane_position} (records were deleted, inserted or reordered)"
    )


@dataclass(slots=True)
class _Lane:
    """What verifying one lane has seen so far."""

    position: int
    previous: str
    anchored: list[LaneAnchor]
    """Its anchors not reached yet, in position order."""
    last_sequence: int = 0


async def _each(records: AsyncIterable[AuditRecord] | Iterable[AuditRecord]) -> AsyncIterator[AuditRecord]:
    if isinstance(records, AsyncIterable):
        async for record in records:
            yield record
    else:
        for record in records:
            yield record


def anchor_chain_fault(lane_anchors: Iterable[LaneAnchor]) -> str | None:
    """Where the anchor chain is not what was written (numbered from 1, each linked to the last)."""
    expected_sequence, previous = 1, GENESIS_HASH
    for anchor in lane_anchors:
        if anchor.sequence != expected_sequence:
            return f"expected anchor {expected_sequence} next, found anchor {anchor.sequence} (anchors were deleted)"
        if anchor.previous_hash != previous:
            return f"anchor {anchor.sequence} does not link to anchor {anchor.sequence - 1}"
        try:
            expected = anchor_hash(anchor.previous_hash, anchor.lane, anchor.position, anchor.lane_hash, anchor.at)
        except (TypeError, ValueError) as exc:
            return f"anchor {anchor.sequence} cannot be hashed: {exc}"
        if anchor.hash != expected:
            return f"anchor {anchor.sequence}'s hash does not match its contents (the anchor was modified)"
        expected_sequence, previous = anchor.sequence + 1, anchor.hash
    return None


async def verify_chain(
    records: AsyncIterable[AuditRecord] | Iterable[AuditRecord],
    anchors: Iterable[ChainAnchor] = (),
    lane_anchors: Iterable[LaneAnchor] = (),
) -> ChainReport:
    """Checks a log in sequence order and names the first broken record.

    Each lane (the main lane numbering from 1 with its sequence, the others by position) must
    run from its genesis without a gap, every record linking to the one before it in its lane.
    Reading continues after a break only to count the records; the first fault is the one
    reported, because every later link depends on it. Each anchor's record must be there with
    the anchored hash (a missing one means the tail was cut); ``lane_anchors`` (the anchor chain,
    in order) must be intact, and each lane must hold the head each of them names.
    """
    lane_anchors = list(lane_anchors)
    chain_fault = anchor_chain_fault(lane_anchors)
    wanted = {anchor.sequence: anchor.hash for anchor in anchors}
    lanes: dict[int, _Lane] = {}
    pending: dict[int, list[LaneAnchor]] = {}
    for anchor in sorted(lane_anchors, key=lambda a: (a.lane, a.position)):
        pending.setdefault(anchor.lane, []).append(anchor)
    count = 0
    broken: tuple[int, str] | None = None
    head: ChainAnchor | None = None
    try:
        async for record in _each(records):
            count += 1
            lane = lanes.get(record.lane)
            if lane is None:
                lane = lanes[record.lane] = _Lane(1, lane_genesis(record.lane), pending.pop(record.lane, []))
            broken = broken or _fault(record, lane) or _anchor_fault(record, wanted)
            lane.position, lane.previous, lane.last_sequence = record.lane_position + 1, record.hash, record.sequence
            head = ChainAnchor(record.sequence, record.hash)
    except AuditRecordUnreadable as exc:
        count += 1
        broken = broken or (exc.sequence, str(exc))
    beyond = [sequence for sequence in wanted if head is None or sequence > head.sequence]
    if broken is None and beyond:
        last = 0 if head is None else head.sequence
        broken = (last + 1, f"the log ends at record {last} but record {min(beyond)} was anchored: its tail was cut")
    if broken is None:
        broken = _cut_lane(lanes, pending)
    if broken is None and chain_fault is not None:
        broken = (0, f"the anchor chain is broken: {chain_fault}")
    if broken is None:
        return ChainReport(ok=True, records=count, first_broken=None, reason=f"{count} records, chain intact", head=head)
    return ChainReport(ok=False, records=count, first_broken=broken[0], reason=broken[1], head=head)


def _fault(record: AuditRecord, lane: _Lane) -> tuple[int, str] | None:
    """Where and why ``record`` breaks its lane, checking position, then link, then contents, then
    the anchor of its position."""
    misplaced = _position_fault(record, lane.position)
    if misplaced is not None:  # in the main lane, the record that should have been there is named
        return (lane.position if record.lane == MAIN_LANE else lane.last_sequence + 1), misplaced
    reason = _link_fault(record, lane.previous) or _content_fault(record) or _lane_anchor_fault(record, lane)
    return None if reason is None else (record.sequence, reason)


def _lane_anchor_fault(record: AuditRecord, lane: _Lane) -> str | None:
    """The record against the anchor of its position, if the anchor chain has one."""
    while lane.anchored and lane.anchored[0].position == record.lane_position:
        anchor = lane.anchored.pop(0)
        if anchor.lane_hash != record.hash:
            return f"record {record.sequence} is not the head anchor {anchor.sequence} names for lane {record.lane}"
    return None


def _cut_lane(lanes: dict[int, _Lane], never_seen: dict[int, list[LaneAnchor]]) -> tuple[int, str] | None:
    """A lane that ends before a head the anchor chain names: its tail (or all of it) was cut."""
    for number, lane in sorted(lanes.items()):
        if lane.anchored:
            anchor = lane.anchored[0]
            return (
                lane.last_sequence + 1,
                f"lane {number} ends at position {lane.position - 1} but anchor {anchor.sequence} names its "
                f"position {anchor.position}: its tail was cut",
            )
    for number, anchored in sorted(never_seen.items()):
        return (0, f"anchor {anchored[0].sequence} names lane {number}, which has no record left: it was cut")
    return None


def _anchor_fault(record: AuditRecord, anchors: dict[int, str]) -> tuple[int, str] | None:
    anchored = anchors.get(record.sequence)
    if anchored is None or anchored == record.hash:
        return None
    return record.sequence, f"record {record.sequence} is not the one anchored (hash {anchored[:16]}…)"
