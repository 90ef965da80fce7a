from __future__ import annotations

import os

import pytest
from hypothesis import settings

from gateway.clock import FixedClock
from gateway.schema import DocumentSchemas, load_schemas
from gateway.signing import SigningKey
from gateway.smki.repository import SmkiRepository
from gateway.verify.verifier import Verifier
from pki import IssuedCertificate, TestSmkiCa
from tests import factories

# CI runs the same examples every time (a failure there reproduces locally with CI=true).
settings.register_profile("ci", derandomize=True, database=None, deadline=None, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")


@pytest.fixture(scope="session")
def test_ca() -> TestSmkiCa:
    return factories.make_ca()


@pytest.fixture(scope="session")
def supplier_cert(test_ca: TestSmkiCa) -> IssuedCertificate:
    return factories.issue_xml_sign(test_ca, factories.SUPPLIER)


@pytest.fixture(scope="session")
def supplier_key(supplier_cert: IssuedCertificate) -> SigningKey:
    return factories.signing_key(supplier_cert)


@pytest.fixture(scope="session")
def project_schemas() -> DocumentSchemas:
    return load_schemas()


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(factories.NOW)


@pytest.fixture
def repository(test_ca: TestSmkiCa, supplier_cert: IssuedCertificate) -> SmkiRepository:
    return factories.repository_with(test_ca, supplier_cert)


@pytest.fixture
def verifier(repository: SmkiRepository, clock: FixedClock, project_schemas: DocumentSchemas) -> Verifier:
    return Verifier(repository, clock, schemas=project_schemas, dsp_user_id=factories.DSP)
