"""Deterministic key material for a *test* PKI. Never use this for real keys.

Everything is derived from a seed with HMAC so that the same seed gives
byte-identical worlds (keys, serials and, with deterministic ECDSA,
signatures). That is what makes generated test vectors reproducible, and it is
exactly why none of this may protect anything real.
"""

from __future__ import annotations

import hashlib
import hmac

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
P384_ORDER = int(
    "FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFC7634D81F4372DDF581A0DB248B0A77AECEC196ACCC52973",
    16,
)
SERIAL_BYTES = 16
"""Serial length: as ZAZ1 (16 bytes), well inside RFC 5280's 20-octet limit."""

KEY_ID_BYTES = 8
"""SMKI key identifiers (SKI/AKI) are 8 bytes."""


def _curve_parameters(curve: ec.EllipticCurve) -> tuple[int, str]:
    """The group order and the HMAC hash (at least as wide as the order)."""
    if isinstance(curve, ec.SECP256R1):
        return P256_ORDER, "sha256"
    if isinstance(curve, ec.SECP384R1):
        return P384_ORDER, "sha384"
    raise ValueError(f"unsupported curve for derived keys: {curve.name}")


def derive_private_key(seed: bytes, label: str, curve: ec.EllipticCurve | None = None) -> ec.EllipticCurvePrivateKey:
    """The key for ``label`` under ``seed``: scalar = HMAC(seed, label) reduced into [1, n-1].

    P-256 (HMAC-SHA256) unless another curve is asked for; P-384 exists only so
    tests can make a certificate on the wrong curve.
    """
    curve = curve if curve is not None else ec.SECP256R1()
    order, hash_name = _curve_parameters(curve)
    digest = hmac.new(seed, label.encode("utf-8"), hash_name).digest()
    scalar = int.from_bytes(digest, "big") % (order - 1) + 1
    return ec.derive_private_key(scalar, curve)


def derive_serial(seed: bytes, label: str) -> int:
    """A positive 16-byte certificate serial from HMAC-SHA256(seed, "serial:" + label)."""
    digest = hmac.new(seed, f"serial:{label}".encode(), "sha256").digest()
    serial = int.from_bytes(digest[:SERIAL_BYTES], "big") >> 1  # top bit clear: DER stays 16 bytes, positive
    return serial or 1


def public_key_bits(public_key: ec.EllipticCurvePublicKey) -> bytes:
    """The subjectPublicKey BIT STRING contents (uncompressed X9.62 point)."""
    return public_key.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)


def key_identifier(public_key: ec.EllipticCurvePublicKey, length: int = KEY_ID_BYTES) -> bytes:
    """The leftmost ``length`` bytes of SHA-256 over the public key bits (RFC 7093 method 1, truncated).

    SMKI uses 8-byte identifiers; other lengths exist only to build broken
    certificates.
    """
    if not 1 <= length <= hashlib.sha256().digest_size:
        raise ValueError(f"key identifier length must be 1..32 bytes, not {length}")
    return hashlib.sha256(public_key_bits(public_key)).digest()[:length]
