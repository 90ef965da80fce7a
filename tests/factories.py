"""Builders shared by the tests: a test SMKI, signing keys and DUIS requests."""

from __future__ import annotations

import datetime as dt

from lxml import etree

from gateway import duis_request
from gateway.eui64 import Eui64
from gateway.signing import SigningKey, sign_tree, to_bytes
from gateway.smki.repository import SmkiRepository
from pki import IssuedCertificate, ProfileViolations, RemotePartyRole, TestSmkiCa

UTC = dt.timezone.utc
CA_NOT_BEFORE = dt.datetime(2024, 1, 1, tzinfo=UTC)
CA_NOT_AFTER = dt.datetime(2124, 1, 1, tzinfo=UTC)
NOW = dt.datetime(2026, 6, 1, 12, 0, tzinfo=UTC)

SUPPLIER = Eui64.parse("90-B3-D5-1F-30-AA-00-01")
OTHER_USER = Eui64.parse("90-B3-D5-1F-30-AA-00-02")
DSP = Eui64.parse("90-B3-D5-1F-30-00-00-02")
DEVICE = Eui64.parse("00-DB-12-34-56-78-90-A0")


def make_ca(seed: bytes = b"tests") -> TestSmkiCa:
    return TestSmkiCa.create(seed, not_before=CA_NOT_BEFORE, not_after=CA_NOT_AFTER)


def issue_xml_sign(
    ca: TestSmkiCa,
    eui64: Eui64 = SUPPLIER,
    *,
    label: str | None = None,
    role: RemotePartyRole = RemotePartyRole.XML_SIGN,
    not_before: dt.datetime | None = None,
    not_after: dt.datetime | None = None,
    violations: ProfileViolations | None = None,
) -> IssuedCertificate:
    return ca.issue(
        label or f"xml-sign/{eui64.compact}",
        eui64=eui64,
        role=role,
        not_before=not_before,
        not_after=not_after,
        violations=violations,
    )


def signing_key(issued: IssuedCertificate) -> SigningKey:
    return SigningKey(issued.private_key, issued.certificate)


def repository_with(ca: TestSmkiCa, *issued: IssuedCertificate) -> SmkiRepository:
    repository = SmkiRepository()
    repository.add_certificate(ca.root.certificate)
    repository.add_certificate(ca.org.certificate)
    for item in issued:
        repository.add_certificate(item.certificate)
    return repository


def request_tree(
    *,
    originator: Eui64 = SUPPLIER,
    target: Eui64 = DEVICE,
    counter: int = 1000,
    command_variant: int = 1,
    service_reference: str = "1.6",
    service_reference_variant: str = "1.6",
    body: etree._Element | None = None,
) -> etree._Element:
    """An unsigned DUIS Service Request (default: SR 1.6 Update Payment Mode to Credit)."""
    return duis_request.request_tree(
        originator=originator,
        target=target,
        counter=counter,
        command_variant=command_variant,
        service_reference=service_reference,
        service_reference_variant=service_reference_variant,
        body=body if body is not None else duis_request.payment_mode_element("Credit"),
    )


def signed_request(key: SigningKey, **fields: object) -> bytes:
    return to_bytes(sign_tree(request_tree(**fields), key))  # type: ignore[arg-type]
