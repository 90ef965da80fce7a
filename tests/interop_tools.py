"""Independent checkers for the interop and differential tests.

Three verifiers judge the same bytes:

* the project's :class:`~gateway.verify.verifier.Verifier` (:func:`project_verdict`);
* ``xmlsec1`` (Debian's 1.2.37 CLI) in a subprocess (:class:`Xmlsec1`);
* ``signxml`` with a strict configuration and a pinned certificate (:func:`signxml_verdict`).

Each answers a :class:`Verdict` instead of raising, so a test can compare them.
Only the *reference* tools are wrapped this way; the project's own verifier is
only asked for ``VerificationError``, so any other exception it raises still
fails the test that triggered it.

Also here: the DCC Boxed ZAZ1 keystore reader (:func:`load_keystore`), the
signxml signer that writes a KeyInfo the project accepts (:func:`signxml_sign`),
and the DUIS-form template for ``xmlsec1 --sign`` (:func:`xmlsec1_sign_template`).
"""

from __future__ import annotations

import datetime as dt
import json
import re
import subprocess
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from lxml import etree
from signxml import (
    CanonicalizationMethod,
    DigestAlgorithm,
    SignatureConfiguration,
    SignatureConstructionMethod,
    SignatureMethod,
    XMLSigner,
    XMLVerifier,
)

from gateway.checks import VerificationError
from gateway.eui64 import Eui64
from gateway.namespaces import DS, SR
from gateway.signing import SigningKey
from gateway.verify.verifier import Verifier

XML_SIGN_ROLE = 135
"""DCC Boxed keystore ``role`` of xmlSign certificates (0x87)."""

_REQUEST_ID = etree.XPath(
    "/sr:Request/sr:Header/sr:RequestID/text()", namespaces={"sr": SR}
)
_DS = f"{{{DS}}}"


@dataclass(frozen=True, slots=True)
class Verdict:
    """What one verifier said about one document."""

    accepted: bool
    reason: str
    """``ok``, a project check id, or the reference tool's error text."""

    def __bool__(self) -> bool:
        return self.accepted


# --- the ZAZ1 keystore ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class KeystoreEntry:
    """One certificate and private key of a DCC Boxed ``keystore.json``."""

    eui64: Eui64
    usage: str
    """``digitalSignature`` or ``keyAgreement``."""
    serial: str
    name: str
    role: int
    certificate_pem: bytes
    private_key_pem: bytes

    @property
    def certificate(self) -> x509.Certificate:
        return x509.load_pem_x509_certificate(self.certificate_pem)

    def signing_key(self) -> SigningKey:
        key = serialization.load_pem_private_key(self.private_key_pem, password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise TypeError(f"{self.name}: not an EC private key")
        return SigningKey(key, self.certificate)


def load_keystore(path: Path) -> list[KeystoreEntry]:
    """Every entry of ``{eui_hex: {usage: {serial: {certificate, privateKey, name, role}}}}``."""
    keystore = json.loads(path.read_text())
    return [
        KeystoreEntry(
            eui64=Eui64.parse_compact(eui),
            usage=usage,
            serial=serial,
            name=entry["name"],
            role=int(entry["role"]),
            certificate_pem=entry["certificate"].encode(),
            private_key_pem=entry["privateKey"].encode(),
        )
        for eui, usages in keystore.items()
        for usage, entries in usages.items()
        for serial, entry in entries.items()
    ]


def xml_sign_entries(entries: Iterable[KeystoreEntry]) -> dict[Eui64, KeystoreEntry]:
    """The xmlSign (role 135, digitalSignature) entry of each EUI-64 that has one."""
    return {
        e.eui64: e
        for e in entries
        if e.role == XML_SIGN_ROLE and e.usage == "digitalSignature"
    }


def request_originator(document: bytes) -> Eui64:
    """The originator EUI-64 of an ``sr:Request``'s RequestID."""
    root = etree.fromstring(
        document, etree.XMLParser(resolve_entities=False, no_network=True)
    )
    (request_id,) = _REQUEST_ID(root)
    return Eui64.parse(str(request_id).split(":")[0].strip())


def pem(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(serialization.Encoding.PEM)


# --- the project ------------------------------------------------------------------


def project_verdict(verifier: Verifier, document: bytes) -> Verdict:
    """The project's answer; anything but VerificationError propagates (a crash is a bug)."""
    try:
        verified = verifier.verify(document)
    except VerificationError as exc:
        return Verdict(False, exc.check_id)
    return Verdict(True, f"ok: signed by {verified.signer.eui64}")


# --- signxml ----------------------------------------------------------------------


def strict_signxml_config(at: dt.datetime | None = None) -> SignatureConfiguration:
    """One reference; the Signature a child of the root; ecdsa-sha256 and sha256 only."""
    return SignatureConfiguration(
        expect_references=1,
        location="./",
        signature_methods=frozenset({SignatureMethod.ECDSA_SHA256}),
        digest_algorithms=frozenset({DigestAlgorithm.SHA256}),
        verification_time=at,
    )


def signxml_verdict(
    document: bytes, certificate: x509.Certificate, *, at: dt.datetime | None = None
) -> Verdict:
    """signxml's answer with the trusted certificate pinned (``x509_cert``), never one from the message."""
    try:
        XMLVerifier().verify(
            document, x509_cert=certificate, expect_config=strict_signxml_config(at)
        )
    # A reference oracle: whatever signxml (or lxml under it) raises on hostile
    # input is its way of saying "rejected"; the type is kept in the reason.
    except Exception as exc:  # noqa: BLE001
        return Verdict(False, f"{type(exc).__name__}: {exc}")
    return Verdict(True, "ok")


def signxml_sign(root: etree._Element, key: SigningKey) -> bytes:
    """Signs like signxml does (enveloped + exc-c14n transforms), with a KeyInfo the project accepts.

    signxml's own KeyInfo embeds the certificate, which SPEC §4 forbids; its
    ``key_info`` argument takes ours instead: X509IssuerSerial only.
    """
    key_info = etree.Element(_DS + "KeyInfo", nsmap={"ds": DS})
    issuer_serial = etree.SubElement(
        etree.SubElement(key_info, _DS + "X509Data"), _DS + "X509IssuerSerial"
    )
    etree.SubElement(
        issuer_serial, _DS + "X509IssuerName"
    ).text = key.certificate.issuer.rfc4514_string()
    etree.SubElement(issuer_serial, _DS + "X509SerialNumber").text = str(
        key.certificate.serial_number
    )
    signer = XMLSigner(
        method=SignatureConstructionMethod.enveloped,
        signature_algorithm=SignatureMethod.ECDSA_SHA256,
        digest_algorithm=DigestAlgorithm.SHA256,
        c14n_algorithm=CanonicalizationMethod.EXCLUSIVE_XML_CANONICALIZATION_1_0,
    )
    signed = signer.sign(root, key=key.private_key, key_info=key_info)
    return etree.tostring(signed.getroottree(), xml_declaration=True, encoding="UTF-8")


# --- xmlsec1 ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TrustChain:
    """How xmlsec1 is told to trust a signing certificate.

    xmlsec1 1.2.37 looks the KeyInfo's X509IssuerSerial up among the
    *untrusted* certificates only (a certificate given with ``--trusted-pem``
    is a trust anchor, never a signing key), then validates the chain to a
    trusted root. So:

    * with ``root`` (the project's test CA): ``--trusted-pem ROOT
      --untrusted-pem ORG --untrusted-pem CERT`` and full chain validation at
      ``at``;
    * without (DCC Boxed ZAZ1: the ``ZA`` root above ``OU=07, CN=Z1`` is not
      published): ``--untrusted-pem CERT --insecure``, which skips chain and
      validity checks only; the key is still found by issuer and serial, so a
      KeyInfo naming another certificate fails (tested in test_interop.py);
    * with ``pin_key``: ``--pubkey-cert-pem CERT``, the key given out of band
      whatever KeyInfo says, as signxml's ``x509_cert`` does. This judges the
      signature alone: xmlsec1 matches X509IssuerName more strictly than
      X.520 (see test_differential.py), a difference in certificate lookup,
      not in what is signed.
    """

    certificate_pem: bytes
    root_pem: bytes | None = None
    intermediates: tuple[bytes, ...] = ()
    at: dt.datetime | None = None
    pin_key: bool = False

    def pinned(self) -> TrustChain:
        return TrustChain(self.certificate_pem, pin_key=True)


class Xmlsec1:
    """The ``xmlsec1`` command line, one subprocess per document."""

    def __init__(self, executable: str, *, timeout: float = 60.0) -> None:
        self.executable = executable
        self.timeout = timeout

    def verify(self, document: bytes, trust: TrustChain) -> Verdict:
        with tempfile.TemporaryDirectory(prefix="xmlsec1-") as folder:
            directory = Path(folder)
            args = [
                self.executable,
                "--verify",
                "--enabled-reference-uris",
                "empty",
                *_trust_args(directory, trust),
            ]
            args.append(str(_write(directory / "document.xml", document)))
            result = self._run(args)
        if result.returncode == 0:
            return Verdict(True, "ok")
        return Verdict(False, _xmlsec1_reason(result))

    def sign(self, template: bytes, *, key_pem: bytes, cert_pem: bytes) -> bytes:
        """``xmlsec1 --sign --privkey-pem KEY,CERT``: fills a DUIS-form template's empty values."""
        with tempfile.TemporaryDirectory(prefix="xmlsec1-") as folder:
            directory = Path(folder)
            key = _write(directory / "key.pem", key_pem)
            cert = _write(directory / "cert.pem", cert_pem)
            template_path = _write(directory / "template.xml", template)
            output = directory / "signed.xml"
            result = self._run(
                [
                    self.executable,
                    "--sign",
                    "--privkey-pem",
                    f"{key},{cert}",
                    "--output",
                    str(output),
                    str(template_path),
                ]
            )
            if result.returncode != 0:
                raise RuntimeError(f"xmlsec1 --sign failed: {_xmlsec1_reason(result)}")
            return output.read_bytes()

    def _run(self, args: Sequence[str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            args,
            capture_output=True,
            text=True,
            errors="replace",
            timeout=self.timeout,
            check=False,
        )


def _trust_args(directory: Path, trust: TrustChain) -> list[str]:
    certificate = str(_write(directory / "signer.pem", trust.certificate_pem))
    if trust.pin_key:
        return ["--pubkey-cert-pem", certificate]
    if trust.root_pem is None:
        return ["--untrusted-pem", certificate, "--insecure"]
    args = [
        "--trusted-pem",
        str(_write(directory / "root.pem", trust.root_pem)),
        "--untrusted-pem",
        certificate,
    ]
    for index, intermediate in enumerate(trust.intermediates):
        args += [
            "--untrusted-pem",
            str(_write(directory / f"ca-{index}.pem", intermediate)),
        ]
    if trust.at is not None:
        args += [
            "--verification-gmt-time",
            f"{trust.at.astimezone(dt.UTC):%Y-%m-%d %H:%M:%S}",
        ]
    return args


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _xmlsec1_reason(result: subprocess.CompletedProcess[str]) -> str:
    if result.returncode < 0:
        return f"xmlsec1 killed by signal {-result.returncode}"
    errors = [
        line
        for line in result.stderr.splitlines()
        if "error=" in line or line.startswith("Error")
    ]
    return (
        errors[0] if errors else result.stderr.strip()[-300:]
    ) or f"exit {result.returncode}"


def xmlsec1_sign_template(template: bytes) -> bytes:
    """A DUIS template made ready for ``xmlsec1 --sign``, in the DUIS form.

    The templates carry a placeholder signature (``ZGVmYXVsdA==`` values, a
    note in a comment, a made-up issuer and serial). Keep its shape, drop the
    comment, empty DigestValue and SignatureValue, and leave an empty
    X509IssuerSerial for xmlsec1 to fill in from the signing certificate.
    """
    parser = etree.XMLParser(
        resolve_entities=False, no_network=True, remove_comments=True
    )
    root = etree.fromstring(template, parser)
    signature = root[-1]
    if signature.tag != _DS + "Signature":
        raise ValueError("the template's last child is not ds:Signature")
    for name in ("DigestValue", "SignatureValue"):
        for element in signature.iter(_DS + name):
            element.text = None
    for issuer_serial in signature.iter(_DS + "X509IssuerSerial"):
        for child in list(issuer_serial):
            issuer_serial.remove(child)
        issuer_serial.text = None
    return etree.tostring(root.getroottree(), xml_declaration=True, encoding="UTF-8")


def key_info_names(document: bytes) -> tuple[str, int]:
    """(X509IssuerName text, X509SerialNumber) of a signed document."""
    root = etree.fromstring(
        document, etree.XMLParser(resolve_entities=False, no_network=True)
    )
    namespaces = {"ds": DS}
    issuer = root.xpath(
        "string(ds:Signature/ds:KeyInfo/ds:X509Data/ds:X509IssuerSerial/ds:X509IssuerName)",
        namespaces=namespaces,
    )
    serial = root.xpath(
        "string(ds:Signature/ds:KeyInfo/ds:X509Data/ds:X509IssuerSerial/ds:X509SerialNumber)",
        namespaces=namespaces,
    )
    return str(issuer).strip(), int(str(serial).strip())


_RESPONSE_DATE_TIME = re.compile(rb"<sr:ResponseDateTime>([^<]+)</sr:ResponseDateTime>")


def response_date_time(document: bytes) -> str:
    """The ``sr:ResponseDateTime`` text of a response, as written."""
    match = _RESPONSE_DATE_TIME.search(document)
    if match is None:
        raise ValueError("no sr:ResponseDateTime")
    return match.group(1).decode()
