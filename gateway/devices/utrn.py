"""The UTRN: the 20-digit top-up code of SR 2.2 Top Up Device, as GBCS section 14 defines it.

A supplier (or its agent holding its keys, MP134A) vends a UTRN; the meter accepts
it once. What the 20 digits carry (GBCS §14, as SmartDCCInnovation/gbcs-parser's
``src/utrn.ts`` implements it and the RTDS 4.5.0 CS01a/CS01b vectors confirm):

* **PTUT** (Prepayment Top-up Token), 64 bits. High 32 bits: 7 zero bits ‖ the
  *truncated UTRN counter* (bits 32–41 of the 64-bit originator counter) ‖ value
  class (2 bits: ``00`` pence, ``01`` pounds) ‖ value (13 bits, 0–8191). Low 32
  bits: the last four bytes of a GCM tag (AES-128, no plaintext) over
  ``11 00 00 00 00 00 ‖ originator ‖ target ‖ 01 ‖ counter (8) ‖ PTUT high (4)``,
  under the key both ends derive with ECDH from the supplier's *prepayment*
  key-agreement key and the meter's key-agreement key (GBCS §4 KDF, "command"
  direction); IV = originator ‖ ``00000000``.
* **PPTD** = 7394156990786306048 + PTUT (a 19-digit decimal), and the UTRN is the
  PPTD followed by its check digit (GBCS §14.8: Verhoeff with GBCS's own inverse table).

The UTRN counter is the originator counter's top 32 bits (its low 32 bits are zero:
the CS01a template's RequestID counter is 12884901888 = 3·2³² for a UTRN whose
truncated counter is 3). The meter reconstructs it from the 10 bits in the token
and the highest counter it has accepted (GBCS Table 27), then keeps it in its UTRN
counter cache: a UTRN whose counter is cached already is a replay, one older than
the whole cache is refused too. The cache's size is this simulator's convention.

Every malformed or unauthentic UTRN raises :class:`UtrnRejected` with the reason.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum

from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from gateway.eui64 import Eui64

UTRN_DIGITS = 20
PPTD_OFFSET = 7394156990786306048
"""GBCS: the constant added to the PTUT so that every PPTD has 19 digits."""
MAX_VALUE = 8191
UTRN_COUNTER_CACHE_SIZE = 16
"""Convention: how many accepted UTRN counters a meter remembers (GBCS leaves the size to the device)."""

_TRUNCATED_COUNTER_BITS = 10
_TRUNCATED_MASK = (1 << _TRUNCATED_COUNTER_BITS) - 1
_HALF_WINDOW = 1 << (_TRUNCATED_COUNTER_BITS - 1)
_VALUE_BITS = 13
_UTRN_COUNTER_LIMIT = 1 << 32
_KDF_ALGORITHM_ID = bytes.fromhex("60857406080300")
_COMMAND_DIRECTION = bytes.fromhex("0901")
_AAD_PREFIX = bytes.fromhex("110000000000")
_AAD_COMMAND = b"\x01"
_GCM_TAG_SIZE = 16

# GBCS §14.8 tables: permutation, multiplication (dihedral group D5), inverse (GBCS's, not Verhoeff's usual).
_PERMUTATION = (
    (0, 1, 2, 3, 4, 5, 6, 7, 8, 9),
    (1, 5, 7, 6, 2, 8, 3, 0, 9, 4),
    (5, 8, 0, 3, 7, 9, 6, 1, 4, 2),
    (8, 9, 1, 6, 0, 4, 3, 5, 2, 7),
    (9, 4, 5, 3, 1, 2, 6, 8, 7, 0),
    (4, 2, 8, 6, 5, 7, 3, 9, 0, 1),
    (2, 7, 9, 3, 8, 0, 6, 4, 1, 5),
    (7, 0, 4, 6, 9, 1, 3, 2, 5, 8),
)
_MULTIPLICATION = (
    (0, 1, 2, 3, 4, 5, 6, 7, 8, 9),
    (1, 2, 3, 4, 0, 6, 7, 8, 9, 5),
    (2, 3, 4, 0, 1, 7, 8, 9, 5, 6),
    (3, 4, 0, 1, 2, 8, 9, 5, 6, 7),
    (4, 0, 1, 2, 3, 9, 5, 6, 7, 8),
    (5, 9, 8, 7, 6, 0, 4, 3, 2, 1),
    (6, 5, 9, 8, 7, 1, 0, 4, 3, 2),
    (7, 6, 5, 9, 8, 2, 1, 0, 4, 3),
    (8, 7, 6, 5, 9, 3, 2, 1, 0, 4),
    (9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
)
_INVERSE = (1, 2, 6, 7, 5, 8, 3, 0, 9, 4)


class ValueClass(IntEnum):
    PENCE = 0
    POUNDS = 1


class UtrnRejected(ValueError):
    """The meter refuses this UTRN; ``reason`` says why; ``duplicate``: it was accepted before."""

    def __init__(self, reason: str, *, duplicate: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.duplicate = duplicate


@dataclass(frozen=True, slots=True)
class Ptut:
    """The fields of a PTUT (the MAC is checked, not kept)."""

    truncated_counter: int
    value_class: ValueClass
    value: int
    mac: int

    @property
    def pence(self) -> int:
        return self.value * (100 if self.value_class is ValueClass.POUNDS else 1)


# --- the digits -------------------------------------------------------------------------


def check_digit(digits: str) -> str:
    """GBCS §14.8's check digit of a non-empty string of decimal digits."""
    if not digits or not digits.isascii() or not digits.isdigit():
        raise ValueError("a check digit is computed over decimal digits only")
    interim, position = 0, 4
    for char in digits:
        interim = _MULTIPLICATION[interim][_PERMUTATION[position][int(char)]]
        position = (position + 1) % 8
    return str(_INVERSE[interim])


def read_utrn(text: str) -> Ptut:
    """The PTUT a UTRN carries, once its form and check digit are right (the MAC is not checked here)."""
    if len(text) != UTRN_DIGITS or not text.isascii() or not text.isdigit():
        raise UtrnRejected(f"a UTRN is {UTRN_DIGITS} decimal digits")
    if check_digit(text[:-1]) != text[-1]:
        raise UtrnRejected("the UTRN's check digit is wrong (mistyped or altered)")
    ptut = int(text[:-1]) - PPTD_OFFSET
    if not 0 <= ptut < 1 << 57:  # the PTUT's top 7 bits are zero
        raise UtrnRejected("the UTRN does not carry a PTUT (out of range)")
    high = ptut >> 32
    value_class = (high >> _VALUE_BITS) & 0b11
    if value_class not in (ValueClass.PENCE, ValueClass.POUNDS):
        raise UtrnRejected(f"value class {value_class:02b} is neither pence nor pounds")
    return Ptut(
        truncated_counter=(high >> (_VALUE_BITS + 2)) & _TRUNCATED_MASK,
        value_class=ValueClass(value_class),
        value=high & ((1 << _VALUE_BITS) - 1),
        mac=ptut & 0xFFFFFFFF,
    )


def _ptut_high(truncated_counter: int, value_class: ValueClass, value: int) -> int:
    return (truncated_counter & _TRUNCATED_MASK) << (_VALUE_BITS + 2) | value_class << _VALUE_BITS | value


# --- the MAC ----------------------------------------------------------------------------


def _mac(
    private_key: ec.EllipticCurvePrivateKey,
    peer_public_key: ec.EllipticCurvePublicKey,
    originator: Eui64,
    target: Eui64,
    counter: int,
    high: int,
) -> int:
    """The PTUT's low 32 bits; either end computes it (its private key, the other's public key)."""
    secret = private_key.exchange(ec.ECDH(), peer_public_key)
    other_info = _KDF_ALGORITHM_ID + originator.to_bytes() + _COMMAND_DIRECTION + counter.to_bytes(8, "big")
    other_info += target.to_bytes()
    key = hashlib.sha256(b"\x00\x00\x00\x01" + secret + other_info).digest()[:16]
    aad = _AAD_PREFIX + originator.to_bytes() + target.to_bytes() + _AAD_COMMAND
    aad += counter.to_bytes(8, "big") + high.to_bytes(4, "big")
    tag = AESGCM(key).encrypt(originator.to_bytes() + b"\x00" * 4, b"", aad)
    return int.from_bytes(tag[-4:], "big")


# --- the supplier's side ----------------------------------------------------------------


def vend_utrn(
    *,
    supplier_prepayment_key: ec.EllipticCurvePrivateKey,
    meter_key_agreement: ec.EllipticCurvePublicKey,
    originator: Eui64,
    target: Eui64,
    utrn_counter: int,
    value: int,
    value_class: ValueClass = ValueClass.PENCE,
) -> str:
    """A UTRN for ``value`` (pence or pounds) to ``target``, counter ``utrn_counter`` (32 bits).

    The DUIS request carrying it uses the originator counter ``utrn_counter << 32``
    as its RequestID counter (:func:`originator_counter`), as the CS01a template does.
    """
    if not 0 <= value <= MAX_VALUE:
        raise ValueError(f"a UTRN carries 0 to {MAX_VALUE} pence or pounds, not {value}")
    if not 0 < utrn_counter < _UTRN_COUNTER_LIMIT:
        raise ValueError("a UTRN counter is a positive 32-bit number")
    high = _ptut_high(utrn_counter, value_class, value)
    mac = _mac(supplier_prepayment_key, meter_key_agreement, originator, target, originator_counter(utrn_counter), high)
    pptd = str(PPTD_OFFSET + (high << 32 | mac))
    return pptd + check_digit(pptd)


def originator_counter(utrn_counter: int) -> int:
    """The 64-bit originator counter of a UTRN counter: the UTRN counter in the top 32 bits."""
    return utrn_counter << 32


# --- the meter's side -------------------------------------------------------------------


def deduce_utrn_counter(truncated: int, highest_accepted: int) -> int:
    """GBCS Table 27: the full UTRN counter nearest the highest one accepted with these 10 low bits."""
    low = highest_accepted & _TRUNCATED_MASK
    base = highest_accepted - low
    if truncated < low - _HALF_WINDOW:
        truncated += 1 << _TRUNCATED_COUNTER_BITS
    elif truncated > low + _HALF_WINDOW:
        truncated -= 1 << _TRUNCATED_COUNTER_BITS
    return base + truncated


@dataclass(frozen=True, slots=True)
class AcceptedTopUp:
    pence: int
    utrn_counter: int
    counters: tuple[int, ...]
    """The meter's UTRN counter cache with this one added (newest last, at most the cache size)."""


def accept_utrn(
    text: str,
    *,
    meter_key_agreement: ec.EllipticCurvePrivateKey,
    supplier_prepayment_certificate_key: ec.EllipticCurvePublicKey,
    supplier: Eui64,
    meter: Eui64,
    counters: Sequence[int],
) -> AcceptedTopUp:
    """What the meter does with a UTRN: checks form, MAC (against its supplier) and counter cache."""
    ptut = read_utrn(text)
    counter = deduce_utrn_counter(ptut.truncated_counter, max(counters, default=0))
    if not 0 < counter < _UTRN_COUNTER_LIMIT:
        raise UtrnRejected(f"UTRN counter {counter} is out of range")
    high = _ptut_high(ptut.truncated_counter, ptut.value_class, ptut.value)
    expected = _mac(meter_key_agreement, supplier_prepayment_certificate_key, supplier, meter, originator_counter(counter), high)
    if not hmac.compare_digest(expected.to_bytes(4, "big"), ptut.mac.to_bytes(4, "big")):
        raise UtrnRejected(f"the UTRN's MAC does not verify: not vended for this meter by {supplier}'s prepayment key")
    if counter in counters:
        raise UtrnRejected(f"UTRN counter {counter} was accepted before (replay)", duplicate=True)
    if len(counters) >= UTRN_COUNTER_CACHE_SIZE and counter < min(counters):
        raise UtrnRejected(f"UTRN counter {counter} is older than every counter the meter remembers")
    cache = tuple(sorted((*counters, counter)))[-UTRN_COUNTER_CACHE_SIZE:]
    return AcceptedTopUp(ptut.pence, counter, cache)
