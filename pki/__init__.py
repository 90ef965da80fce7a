"""A deterministic *test* SMKI PKI in the DCC organisation certificate profile.

For simulation, tests and vectors only: every private key is derived from a
seed, so anyone holding the seed holds the keys.

``TestSmkiCa.create(seed, ...)`` makes a root and an organisation CA;
``issue(...)`` makes organisation certificates (optionally broken on purpose
with :class:`ProfileViolations`); ``crl(...)`` makes CRLs.
"""

from pki.ca import IssuedCertificate, TestSmkiCa, build_crl
from pki.keys import derive_private_key, derive_serial, key_identifier
from pki.profile import (
    SMKI_POLICY_OID,
    X500_UNIQUE_IDENTIFIER_OID,
    KeyUsageKind,
    ProfileViolations,
    read_subject_eui64,
    read_subject_role,
)
from pki.roles import RemotePartyRole

__all__ = [
    "SMKI_POLICY_OID",
    "X500_UNIQUE_IDENTIFIER_OID",
    "IssuedCertificate",
    "KeyUsageKind",
    "ProfileViolations",
    "RemotePartyRole",
    "TestSmkiCa",
    "build_crl",
    "derive_private_key",
    "derive_serial",
    "key_identifier",
    "read_subject_eui64",
    "read_subject_role",
]
