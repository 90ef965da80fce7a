"""Signing and verifying General-Signing APDUs (ECDSA P-256 / SHA-256, raw r‖s).

The user signs a Pre-Command with its Supplier (role 02) Digital Signing key;
the device checks it against the key its trust anchor names. On CV5 the gateway
checks that what came back is the Pre-Command it issued plus a signature.
"""

from __future__ import annotations

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature

from gateway.gbcs.apdu import SIGNATURE_SIZE, GeneralSigningApdu
from gateway.gbcs.errors import ApduError

P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
"""r and s must lie in [1, n-1]."""
_SCALAR_SIZE = SIGNATURE_SIZE // 2


def sign_apdu(apdu: GeneralSigningApdu, private_key: ec.EllipticCurvePrivateKey) -> GeneralSigningApdu:
    """``apdu`` with a signature over ``apdu.signed_part()`` (any previous one is replaced)."""
    _require_p256(private_key.curve)
    r, s = decode_dss_signature(private_key.sign(apdu.signed_part(), ec.ECDSA(hashes.SHA256())))
    return apdu.with_signature(r.to_bytes(_SCALAR_SIZE, "big") + s.to_bytes(_SCALAR_SIZE, "big"))


def verify_apdu_signature(apdu: GeneralSigningApdu, public_key: ec.EllipticCurvePublicKey) -> None:
    """Returns only if ``apdu`` carries a valid signature by ``public_key``; else ApduError.

    ECDSA is malleable ((r, s) and (r, n-s) both verify): never use the
    signature bytes to recognise a replay; use the counter.
    """
    if apdu.signature is None or len(apdu.signature) != SIGNATURE_SIZE:
        raise ApduError("the APDU is not signed")
    _require_p256(public_key.curve)
    r = int.from_bytes(apdu.signature[:_SCALAR_SIZE], "big")
    s = int.from_bytes(apdu.signature[_SCALAR_SIZE:], "big")
    if not (0 < r < P256_ORDER and 0 < s < P256_ORDER):
        raise ApduError("signature r or s out of range")
    try:
        public_key.verify(encode_dss_signature(r, s), apdu.signed_part(), ec.ECDSA(hashes.SHA256()))
    except InvalidSignature as exc:
        raise ApduError("signature does not verify") from exc


def match_signed_precommand(issued: GeneralSigningApdu, returned: GeneralSigningApdu) -> GeneralSigningApdu:
    """``returned`` if it is exactly ``issued`` plus a signature; else ApduError.

    Compares the signed bytes, so every header field and the whole content are
    bound; the signature itself still has to be verified against SMKI.
    """
    if not returned.is_signed:
        raise ApduError("the signed pre-command carries no signature")
    if returned.signed_part() != issued.signed_part():
        raise ApduError("the signed pre-command differs from the pre-command issued")
    return returned


def _require_p256(curve: ec.EllipticCurve) -> None:
    if not isinstance(curve, ec.SECP256R1):
        raise ApduError(f"GBCS signatures use P-256, not {curve.name}")
