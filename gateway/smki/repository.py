"""The gateway's SMKI repository: the only source of trusted keys.

A signature's KeyInfo only *names* a certificate (issuer and serial); the
certificate and its key come from here, never from the message. The
repository holds organisation certificates, the CA certificates they chain
to, and revocations read from CRLs (or recorded later by the DCC operator).

Files: a world directory's ``pki/`` tree (written by ``dcc-gateway init``)
and ``smki/imported/`` (written by ``dcc-gateway smki import``).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ec

from gateway.eui64 import Eui64
from gateway.smki.certificate import SmkiCertificate
from gateway.smki.names import NameKey

IMPORTED_DIR = Path("smki") / "imported"
_PEM_BLOCK = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----\r?\n.*?-----END \1-----", re.DOTALL)


class RepositoryError(ValueError):
    """A file could not be imported into the repository."""


@dataclass(frozen=True, slots=True)
class CertificateAuthority:
    certificate: x509.Certificate
    subject: NameKey


class SmkiRepository:
    """Certificates by (issuer name, serial), CAs by subject name, revocations."""

    def __init__(self) -> None:
        self._certificates: dict[tuple[NameKey, int], SmkiCertificate] = {}
        self._authorities: dict[NameKey, list[CertificateAuthority]] = {}
        self._revoked: dict[tuple[NameKey, int], dt.datetime] = {}
        self._chain_errors: dict[tuple[NameKey, int], str | None] = {}

    # --- loading ----------------------------------------------------------

    @classmethod
    def load_world(cls, directory: Path) -> SmkiRepository:
        """Every certificate and CRL under DIR/pki and DIR/smki/imported."""
        repository = cls()
        files = [
            path
            for folder in (directory / "pki", directory / IMPORTED_DIR)
            if folder.is_dir()
            for path in sorted(folder.rglob("*.pem"))
        ]
        blocks = [(label, block, str(path)) for path in files for label, block in _pem_blocks(path.read_bytes())]
        # Certificates before CRLs: a CRL is only accepted once its issuing CA is known.
        for wanted in ("CERTIFICATE", "X509 CRL"):
            for label, block, source in blocks:
                if label == wanted:
                    repository.add_pem(block, source=source)
        return repository

    def add_pem(self, data: bytes, *, source: str = "<bytes>") -> list[SmkiCertificate]:
        """Adds every certificate and CRL in a PEM file; private keys are ignored.

        Raises RepositoryError naming the first unreadable block; blocks before it stay added.
        """
        added: list[SmkiCertificate] = []
        for index, (label, block) in enumerate(_pem_blocks(data)):
            try:
                if label == "CERTIFICATE":
                    smki = self.add_certificate(x509.load_pem_x509_certificate(block))
                    if smki is not None:
                        added.append(smki)
                elif label == "X509 CRL":
                    self.add_crl(x509.load_pem_x509_crl(block), source=source)
            except ValueError as exc:
                raise RepositoryError(f"{source}: PEM block {index + 1} ({label}) is unreadable: {exc}") from exc
        return added

    def add_certificate(self, certificate: x509.Certificate) -> SmkiCertificate | None:
        """Adds a CA (returns None) or an organisation certificate (returns it)."""
        if _is_ca(certificate):
            subject = NameKey.from_name(certificate.subject)
            known = self._authorities.setdefault(subject, [])
            if all(ca.certificate != certificate for ca in known):
                known.append(CertificateAuthority(certificate, subject))
                self._chain_errors.clear()
            return None
        smki = SmkiCertificate.load(certificate)
        key = (smki.issuer, smki.serial)
        known = self._certificates.get(key)
        if known is not None and known.certificate != certificate:
            raise RepositoryError(
                f"a different certificate with serial {smki.serial} from {certificate.issuer.rfc4514_string()} "
                "is already in the repository"
            )
        self._certificates[key] = smki
        self._chain_errors.pop(key, None)
        return smki

    def add_crl(self, crl: x509.CertificateRevocationList, *, source: str = "<crl>") -> None:
        """Records a CRL's revocations after checking it was signed by a known CA."""
        issuer = NameKey.from_name(crl.issuer)
        if not any(_crl_signed_by(crl, ca.certificate) for ca in self._authorities.get(issuer, ())):
            raise RepositoryError(f"{source}: CRL not signed by a known CA ({crl.issuer.rfc4514_string()})")
        for entry in crl:
            self.record_revocation(issuer, entry.serial_number, entry.revocation_date_utc)

    def record_revocation(self, issuer: NameKey, serial: int, when: dt.datetime) -> None:
        key = (issuer, serial)
        earlier = self._revoked.get(key)
        self._revoked[key] = when if earlier is None else min(earlier, when)

    def revoke_subject(self, eui64: Eui64, when: dt.datetime) -> int:
        """Revokes every certificate issued to ``eui64`` (the DCC revoking a failed supplier's certificates)."""
        revoked = [c for c in self._certificates.values() if c.eui64 == eui64]
        for certificate in revoked:
            self.record_revocation(certificate.issuer, certificate.serial, when)
        return len(revoked)

    # --- queries ----------------------------------------------------------

    def lookup(self, issuer: NameKey, serial: int) -> SmkiCertificate | None:
        return self._certificates.get((issuer, serial))

    def certificates(self) -> Iterator[SmkiCertificate]:
        return iter(self._certificates.values())

    def revoked_at(self, certificate: SmkiCertificate) -> dt.datetime | None:
        """When the certificate was revoked, or None."""
        return self._revoked.get((certificate.issuer, certificate.serial))

    def chain_error(self, certificate: SmkiCertificate) -> str | None:
        """Why the certificate does not chain to its known CA; None when it does or the CA is unknown.

        SPEC §4: the chain is checked when the organisation CA is in the
        repository (DCC Boxed's ZAZ1 CA certificate is not published).
        Results are cached: the CA signature check is as costly as the
        request's own signature check.
        """
        key = (certificate.issuer, certificate.serial)
        if key not in self._chain_errors:
            self._chain_errors[key] = self._compute_chain_error(certificate)
        return self._chain_errors[key]

    def _compute_chain_error(self, certificate: SmkiCertificate) -> str | None:
        authorities = self._authorities.get(certificate.issuer)
        if not authorities:
            return None
        for ca in authorities:
            try:
                certificate.certificate.verify_directly_issued_by(ca.certificate)
            except (ValueError, TypeError, InvalidSignature):
                continue
            return None
        return f"not issued by the known CA {certificate.certificate.issuer.rfc4514_string()}"

    # --- import (dcc-gateway smki import) -----------------------------------

    def import_files(self, directory: Path, files: Iterable[Path]) -> ImportReport:
        """Adds PEM files or DCC Boxed keystore.json files and keeps them under DIR/smki/imported.

        Each certificate or CRL is imported on its own: one unreadable entry
        (the ZAZ1 keystore holds a few that modern parsers refuse) is
        reported and skipped, not fatal. Private keys are never stored.
        """
        target = directory / IMPORTED_DIR
        target.mkdir(parents=True, exist_ok=True)
        report = ImportReport()
        for path in files:
            data = path.read_bytes()
            pems = _keystore_certificates(data, source=str(path)) if path.suffix.lower() == ".json" else [data]
            for pem in pems:
                for label, block in _pem_blocks(pem):
                    if label not in ("CERTIFICATE", "X509 CRL"):
                        continue
                    try:
                        report.certificates.extend(self.add_pem(block, source=str(path)))
                    except RepositoryError as exc:
                        report.skipped.append(str(exc))
                        continue
                    digest = hashlib.sha256(block).hexdigest()[:32]
                    (target / f"{label.replace(' ', '-').lower()}-{digest}.pem").write_bytes(block)
        return report


@dataclass
class ImportReport:
    """What ``smki import`` added and what it had to skip (with reasons)."""

    certificates: list[SmkiCertificate] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def _pem_blocks(data: bytes) -> Iterator[tuple[str, bytes]]:
    for match in _PEM_BLOCK.finditer(data):
        yield match.group(1).decode("ascii"), match.group(0)


def _keystore_certificates(data: bytes, *, source: str) -> Iterator[bytes]:
    """Certificates of a DCC Boxed keystore.json: {eui: {usage: {serial: {certificate, ...}}}}."""
    try:
        keystore = json.loads(data)
    except ValueError as exc:
        raise RepositoryError(f"{source}: not JSON ({exc})") from exc
    if not isinstance(keystore, dict):
        raise RepositoryError(f"{source}: not a DCC Boxed keystore (expected an object)")
    for usages in keystore.values():
        if not isinstance(usages, dict):
            raise RepositoryError(f"{source}: not a DCC Boxed keystore (bad entry)")
        for entries in usages.values():
            for entry in entries.values() if isinstance(entries, dict) else ():
                pem = entry.get("certificate") if isinstance(entry, dict) else None
                if isinstance(pem, str) and pem.strip():
                    yield pem.encode()


def _is_ca(certificate: x509.Certificate) -> bool:
    """A CA both by basicConstraints and by keyUsage (keyCertSign).

    An organisation certificate that wrongly claims CA=true stays an organisation
    certificate, so the verifier refuses it with ``certificate-profile`` instead of
    the repository trusting it to issue others.
    """
    try:
        constraints = certificate.extensions.get_extension_for_class(x509.BasicConstraints).value
        usage = certificate.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return False
    return bool(constraints.ca and usage.key_cert_sign)


def _crl_signed_by(crl: x509.CertificateRevocationList, ca: x509.Certificate) -> bool:
    key = ca.public_key()
    return isinstance(key, ec.EllipticCurvePublicKey) and crl.is_signature_valid(key)
