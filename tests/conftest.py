from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from hypothesis import settings

from gateway.clock import FixedClock
from gateway.schema import DocumentSchemas, load_schemas
from gateway.signing import SigningKey
from gateway.smki.repository import SmkiRepository
from gateway.verify.verifier import Verifier
from pki import IssuedCertificate, TestSmkiCa
from tests import factories
from tests.store_backends import BACKENDS, StoreOpener, store_opener

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


@pytest.fixture(params=BACKENDS)
async def store_factory(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[StoreOpener]:
    """Opens stores on a fresh database of each backend (SQLite file; PostgreSQL schema on the real server).

    ``await store_factory.open(**options)`` gives a new opened store on that database (call it
    again for a second worker or a restart); all are closed, and a PostgreSQL schema dropped, after
    the test. See :mod:`tests.store_backends`.
    """
    async with store_opener(request.param, tmp_path) as opener:
        yield opener
