"""One counter source for the stateful vectors, and an independent check of a suite's run order.

The live gateway consumes a RequestID counter per (originator, target) when it
admits a request (I99, I0 for CV4, E43), and refuses a counter not greater
than the last consumed one with E40 (SPEC §5). A suite that expects I99 must
therefore hand out counters that grow along the run order, and a replay
vector must sit at or below one already consumed. :class:`CounterSource`
gives the policy scenario its counters; :func:`plan_errors` re-reads every
request of a suite *from its bytes*, in run order, and says where the
expectations could not all come true against a fresh store. It models the
store's rule rather than sharing its code, so a slip in the generator and a
slip in the model would have to agree to go unnoticed.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from lxml import etree

from gateway.namespaces import SR

ANY_CODE = "*"
ADMITTED = frozenset({"I99", "I0", "E43"})
"""Codes the store gives after consuming the counter (for CV5, I99 comes from the Pre-Command instead)."""
SIGNED_PRE_COMMAND_FORMS = frozenset({5, 6, 7})
_SR = f"{{{SR}}}"


class CounterSource:
    """Strictly increasing RequestID/DirectiveID counters, one sequence for a whole suite.

    One sequence for every (originator, target) pair means no two stateful
    vectors can collide by accident; a vector that *wants* an old counter (a
    replay) takes it from :attr:`issued` explicitly.
    """

    def __init__(self, start: int) -> None:
        if start < 0:
            raise ValueError(f"counters are unsigned: {start}")
        self._next = start
        self.issued: list[int] = []

    def next(self) -> int:
        counter = self._next
        self._next += 1
        self.issued.append(counter)
        return counter


@dataclass(frozen=True, slots=True)
class PlannedRequest:
    """What a request vector carries, read back from its bytes, and what it expects."""

    vector_id: str
    originator: str
    target: str
    counter: int
    command_variant: int
    expected_code: str
    """A DUIS code, or ``*`` when the vector does not fix it (signature-level acceptance)."""

    @property
    def pair(self) -> tuple[str, str]:
        return self.originator, self.target

    @property
    def request_id(self) -> str:
        return f"{self.originator}:{self.target}:{self.counter}"


def read_planned(vector_id: str, data: bytes, expected_code: str) -> PlannedRequest | None:
    """The request's RequestID and command variant, or None when the bytes do not carry a plain one."""
    try:
        root = etree.fromstring(data, etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False))
    except etree.XMLSyntaxError:
        return None
    request_id = root.findtext(f"{_SR}Header/{_SR}RequestID")
    variant = root.findtext(f"{_SR}Header/{_SR}CommandVariant")
    if root.tag != _SR + "Request" or request_id is None or variant is None:
        return None
    parts = request_id.strip().split(":")
    if len(parts) != 3 or not parts[2].isdigit() or not variant.strip().isdigit():
        return None
    originator, target = parts[0].upper(), parts[1].upper()
    return PlannedRequest(vector_id, originator, target, int(parts[2]), int(variant), expected_code)


def plan_errors(requests: Iterable[PlannedRequest]) -> list[str]:
    """Why ``requests``, sent in this order to a fresh store, could not all get their expected code.

    ``*`` vectors may or may not be admitted: a later exact expectation must
    hold either way (a later I99 must beat their counter; a later E40 may not
    rely on them).
    """
    errors: list[str] = []
    surely: dict[tuple[str, str], int] = {}
    maybe: dict[tuple[str, str], int] = {}
    pending: dict[str, str] = {}
    """RequestID -> id of the CV4 vector whose Pre-Command is issued and not yet taken by a CV5."""
    for request in requests:
        pair, code = request.pair, request.expected_code
        if request.command_variant in SIGNED_PRE_COMMAND_FORMS:
            issued_by = pending.pop(request.request_id, None)
            if code == "I99" and issued_by is None:
                errors.append(f"{request.vector_id}: expects I99 for a Signed Pre-Command no earlier CV4 issued")
            continue
        highest = max(surely.get(pair, -1), maybe.get(pair, -1))
        if code in ADMITTED or code == ANY_CODE:
            if code != ANY_CODE and request.counter <= highest:
                errors.append(
                    f"{request.vector_id}: expects {code} with counter {request.counter}, "
                    f"but {highest} may already be consumed for {request.originator} -> {request.target}"
                )
            if code == ANY_CODE:
                maybe[pair] = max(maybe.get(pair, -1), request.counter)
            else:
                surely[pair] = max(surely.get(pair, -1), request.counter)
                if code == "I0" and request.command_variant == 4:
                    pending[request.request_id] = request.vector_id
        elif code == "E40" and request.counter > surely.get(pair, -1):
            errors.append(
                f"{request.vector_id}: expects E40 (replay) with counter {request.counter}, "
                f"but no counter >= it is surely consumed for {request.originator} -> {request.target}"
            )
    return errors

