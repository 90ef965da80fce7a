"""One answer against one expectation: did the endpoint give the verdict the vector asks for?

An :class:`Expectation` is a sidecar's ``expect`` (with its strict-DUIS verdict);
an :class:`Answer` is what came back over HTTP. :func:`judge` reads the answer
as a verdict (refused; answered with a signed ``sr:Response`` and its DUIS
code; a directive's ``accepted``) and returns a :class:`Judgement`: what was
got and, when it is not what was wanted, the kind of :class:`Miss`.

Which answers accept depends on what the vector tests. A signature-level
vector (the catalogue's; every vector under ``strict-duis``) is accepted by
any signed ``sr:Response``: authentication passed, whatever the policy said.
A policy-level vector (an exact DUIS code) is accepted only by I0 or I99.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from lxml import etree

from gateway.namespaces import DS, SR
from vectors.expect import Profile, Verdict

ANY_CODE = "*"
"""A sidecar's ``response_code`` when the vector does not fix it (signature-level acceptance)."""
ACCEPTING_CODES = frozenset({"I0", "I99"})
NOT_A_VERDICT_STATUSES: Mapping[int, str] = {
    404: "no DUIS endpoint at this URL",
    405: "no DUIS endpoint at this URL",
    408: "timed out",
    429: "rate limited",
}
"""4xx answers that say nothing about the request's content."""

_RESPONSE = f"{{{SR}}}Response"
_SIGNATURE = f"{{{DS}}}Signature"
_RESPONSE_CODE = f"{{{SR}}}Header/{{{SR}}}ResponseCode"
_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)


class Miss(enum.Enum):
    """How an answer differs from the expectation, worst first."""

    ACCEPTED_ATTACK = "accepted-attack"
    """A request that must be refused was accepted."""
    REFUSED_VALID = "refused-valid"
    """A request that must be accepted was refused."""
    WRONG_REASON = "wrong-reason"
    """Refused (or accepted) as it must be, but not with the check or code expected (``ours`` only)."""
    NO_VERDICT = "no-verdict"
    """No verdict at all: a 5xx, no answer, an answer that is neither a refusal nor a signed response."""


@dataclass(frozen=True, slots=True)
class Expectation:
    """What the endpoint must answer to one vector."""

    http_status: int
    check: str | None = None
    """The problem's ``check`` id, for a refusal before authentication."""
    response_code: str | None = None
    """The DUIS code after authentication, or :data:`ANY_CODE`."""
    accepted: bool | None = None
    """A directive's verdict (``/api/v1/admin``)."""
    strict_duis: Verdict | None = None
    """The verdict any strict DUIS gateway must give, or None: outside that profile."""

    @classmethod
    def from_sidecar(cls, sidecar: Mapping[str, Any]) -> Expectation:
        expect = sidecar["expect"]
        strict = sidecar.get("strict_duis")
        return cls(
            http_status=int(expect["http_status"]),
            check=expect.get("check"),
            response_code=expect.get("response_code"),
            accepted=expect.get("accepted"),
            strict_duis=Verdict(strict) if strict is not None else None,
        )

    def verdict(self, profile: Profile) -> Verdict:
        if profile is Profile.STRICT_DUIS:
            if self.strict_duis is None:
                raise ValueError("this vector is outside the strict-duis profile")
            return self.strict_duis
        if self.accepted is not None:
            return Verdict.ACCEPT if self.accepted else Verdict.REFUSE
        if self.http_status != 200:
            return Verdict.REFUSE
        code = self.response_code or ANY_CODE
        return Verdict.ACCEPT if code == ANY_CODE or code in ACCEPTING_CODES else Verdict.REFUSE

    def wanted(self, profile: Profile) -> str:
        """The expected answer, as the report prints it."""
        if profile is Profile.STRICT_DUIS:
            return "accepted" if self.verdict(profile) is Verdict.ACCEPT else "refused (4xx)"
        if self.accepted is not None:
            return f"200 {'accepted' if self.accepted else 'refused'}"
        return f"{self.http_status} {self.check or self.response_code}"

    @property
    def signature_level(self) -> bool:
        """Judged on authentication alone: any signed sr:Response accepts."""
        return self.accepted is None and (self.http_status != 200 or self.response_code in (None, ANY_CODE))


@dataclass(frozen=True, slots=True)
class Answer:
    """What the endpoint sent back."""

    status: int
    content_type: str = ""
    body: bytes = b""


@dataclass(frozen=True, slots=True)
class Judgement:
    got: str
    """The answer as the report prints it, e.g. ``401 signature-object`` or ``200 I99``."""
    miss: Miss | None = None

    @property
    def ok(self) -> bool:
        return self.miss is None


def judge(expectation: Expectation, answer: Answer, profile: Profile = Profile.OURS) -> Judgement:
    """Whether ``answer`` gives the verdict ``expectation`` asks for under ``profile``, and if not, how not."""
    reading = _Reading.of(answer)
    wanted = expectation.verdict(profile)
    if profile is Profile.STRICT_DUIS or expectation.signature_level:
        got = reading.signature_verdict()
    elif expectation.accepted is not None:
        got = reading.directive_verdict()
    else:
        got = reading.policy_verdict()
    if got is None:
        return Judgement(reading.got(expectation), Miss.NO_VERDICT)
    if got is not wanted:
        wrong = Miss.ACCEPTED_ATTACK if got is Verdict.ACCEPT else Miss.REFUSED_VALID
        return Judgement(reading.got(expectation), wrong)
    if profile is Profile.OURS and not reading.is_exactly(expectation):
        return Judgement(reading.got(expectation), Miss.WRONG_REASON)
    return Judgement(reading.got(expectation))


def unanswered(reason: str) -> Judgement:
    """The judgement when no answer came (connection refused, timeout, reset)."""
    return Judgement(f"error: {reason}", Miss.NO_VERDICT)


class _Kind(enum.Enum):
    REFUSED = "refused"
    RESPONSE = "response"
    DIRECTIVE = "directive"
    OTHER = "other"


@dataclass(frozen=True, slots=True)
class _Reading:
    """An answer read once: its kind and what it carries."""

    kind: _Kind
    status: int
    check: str | None = None
    code: str | None = None
    accepted: bool | None = None
    why_no_verdict: str | None = None

    @classmethod
    def of(cls, answer: Answer) -> _Reading:
        if answer.status == 200:
            code = _signed_response_code(answer.body)
            if code is not None:
                return cls(_Kind.RESPONSE, 200, code=code)
            accepted = _directive_verdict(answer)
            if accepted is not None:
                return cls(_Kind.DIRECTIVE, 200, accepted=accepted)
            return cls(_Kind.OTHER, 200)
        check = _problem_check(answer)
        if 400 <= answer.status < 500 and answer.status not in NOT_A_VERDICT_STATUSES:
            return cls(_Kind.REFUSED, answer.status, check=check)
        return cls(_Kind.OTHER, answer.status, check=check, why_no_verdict=NOT_A_VERDICT_STATUSES.get(answer.status))

    def signature_verdict(self) -> Verdict | None:
        return {_Kind.RESPONSE: Verdict.ACCEPT, _Kind.REFUSED: Verdict.REFUSE}.get(self.kind)

    def policy_verdict(self) -> Verdict | None:
        if self.kind is _Kind.RESPONSE:
            return Verdict.ACCEPT if self.code in ACCEPTING_CODES else Verdict.REFUSE
        return Verdict.REFUSE if self.kind is _Kind.REFUSED else None

    def directive_verdict(self) -> Verdict | None:
        if self.kind is _Kind.DIRECTIVE:
            return Verdict.ACCEPT if self.accepted else Verdict.REFUSE
        return Verdict.REFUSE if self.kind is _Kind.REFUSED else None

    def is_exactly(self, expectation: Expectation) -> bool:
        if expectation.accepted is not None:
            return self.kind is _Kind.DIRECTIVE and self.accepted is expectation.accepted
        if expectation.http_status != 200:
            return self.status == expectation.http_status and self.check == expectation.check
        wanted = expectation.response_code or ANY_CODE
        return self.kind is _Kind.RESPONSE and (wanted == ANY_CODE or self.code == wanted)

    def got(self, expectation: Expectation) -> str:
        if self.kind is _Kind.RESPONSE:
            return f"200 {self.code}"
        if self.kind is _Kind.DIRECTIVE:
            return f"200 {'accepted' if self.accepted else 'refused'}"
        if self.kind is _Kind.OTHER and self.status == 200:
            wanted = "directive verdict" if expectation.accepted is not None else "signed sr:Response"
            return f"200 (no {wanted})"
        detail = self.check or (f"({self.why_no_verdict})" if self.why_no_verdict else None)
        return f"{self.status} {detail}" if detail else str(self.status)


def _signed_response_code(body: bytes) -> str | None:
    """The ResponseCode of a DUIS sr:Response that carries a ds:Signature (read, not verified)."""
    try:
        root = etree.fromstring(body, _PARSER)
    except etree.XMLSyntaxError:
        return None
    if root.tag != _RESPONSE or root.find(_SIGNATURE) is None:
        return None
    code = root.findtext(_RESPONSE_CODE)
    return code.strip() if code is not None else None


def _directive_verdict(answer: Answer) -> bool | None:
    """``accepted`` of a directive's JSON answer ``{"accepted": bool, "reason": ...}``."""
    if not answer.content_type.startswith("application/json"):
        return None
    try:
        parsed = json.loads(answer.body)
    except ValueError:
        return None
    accepted = parsed.get("accepted") if isinstance(parsed, dict) else None
    return accepted if isinstance(accepted, bool) else None


def _problem_check(answer: Answer) -> str | None:
    """The ``check`` of an RFC 9457 problem (this gateway's refusals name the failed check there)."""
    if not answer.content_type.startswith("application/problem+json"):
        return None
    try:
        parsed = json.loads(answer.body)
    except ValueError:
        return None
    check = parsed.get("check") if isinstance(parsed, dict) else None
    return check if isinstance(check, str) else None
