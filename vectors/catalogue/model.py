"""Verification vectors as data: what to send, what the verifier must answer, and why.

A :class:`Vector` is a named builder of request bytes with provenance
(``reference``) and an expected verdict: the exact check id of
:class:`gateway.checks.Check` that must refuse it, or ``None`` when the
request must be accepted (false rejects matter as much as false accepts).
Builders take a :class:`VectorContext` (keys, certificates, the test CA, the
clock's "now", EUI-64s), so the test-suite and ``dcc-gateway vectors generate``
share one catalogue; see :mod:`vectors.catalogue` for the list and
:mod:`vectors.catalogue.context` for building a context from a
:class:`pki.TestSmkiCa`.

A vector that needs more than the baseline repository (root CA,
organisation CA, the signer's certificate) says so in ``prepare``; one that
must be checked at another instant says so in ``at``. Nothing else about the
world may differ between vectors.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from gateway.clock import FixedClock
from gateway.eui64 import Eui64
from gateway.parse import Limits
from gateway.smki.repository import SmkiRepository
from vectors.catalogue.tooling import RequestFields
from pki import IssuedCertificate, TestSmkiCa

# Categories, in catalogue order.
PARSE = "parse"
DOCUMENT = "document"
WRAPPING = "wrapping"
CONTENT = "content"
PROFILE = "profile"
MALLEABILITY = "malleability"
CERTIFICATE = "certificate"
POSITIVE = "positive"
CATEGORIES = (PARSE, DOCUMENT, WRAPPING, CONTENT, PROFILE, MALLEABILITY, CERTIFICATE, POSITIVE)


@dataclass(frozen=True)
class VectorContext:
    """Everything builders need. Build it with :func:`vectors.catalogue.context.build_context`."""

    ca: TestSmkiCa
    signer: IssuedCertificate
    """The xmlSign (87) certificate of ``request.originator``; in the baseline repository."""
    now: dt.datetime
    """The verifier's clock unless a vector says otherwise (``Vector.at``)."""
    request: RequestFields
    """The request every builder starts from (SR 1.6 to Credit, CV 1)."""
    other_user: Eui64
    """A second registered user, for signer/originator mismatches."""
    limits: Limits
    """The verifier's ingress limits (limit vectors sit one step beyond them)."""
    certificates: Mapping[str, IssuedCertificate]
    """Extra certificates by name (see :mod:`vectors.catalogue.context`); none is in the baseline repository."""
    foreign_ca: TestSmkiCa
    """A second CA whose certificates are never in the repository."""

    def certificate(self, name: str) -> IssuedCertificate:
        try:
            return self.certificates[name]
        except KeyError:
            raise KeyError(f"no extra certificate named {name!r} in the vector context") from None


Builder = Callable[[VectorContext], bytes]
Prepare = Callable[[VectorContext, SmkiRepository], None]
At = Callable[[VectorContext], dt.datetime]
SignedFields = Callable[[VectorContext], RequestFields]


@dataclass(frozen=True, slots=True)
class Vector:
    """One request to verify, with the verdict the gateway must reach."""

    id: str
    category: str
    description: str
    reference: str
    """Where the attack or the rule comes from (SPEC/DOMAIN section, W3C spec section, CVE, paper)."""
    build: Builder
    expect_check: str | None
    """The check id that must refuse the request, or None: it must be accepted."""
    prepare: Prepare | None = None
    """Adds what the vector needs to the repository (extra certificates, CRLs)."""
    at: At | None = None
    """The instant to verify at, when not ``VectorContext.now``."""
    signed: SignedFields | None = None
    """For accepted vectors: the values that were signed, when not ``VectorContext.request``."""
    known_issue: str | None = None
    """A verifier bug this vector exposes (file, line, actual verdict); tests mark it xfail(strict)."""

    @property
    def verdict(self) -> str:
        """``valid`` or ``invalid``, as Wycheproof writes it."""
        return "valid" if self.expect_check is None else "invalid"

    def expected_fields(self, context: VectorContext) -> RequestFields:
        return self.signed(context) if self.signed is not None else context.request

    def apply_setup(self, context: VectorContext, repository: SmkiRepository, clock: FixedClock) -> None:
        """Prepares the repository and sets the clock for this vector."""
        if self.prepare is not None:
            self.prepare(context, repository)
        clock.set(self.at(context) if self.at is not None else context.now)
