"""GBCS General-Signing APDUs, checked against the real RTDS 1.6 vectors.

The vectors and DUIS templates stay in ../shared (read through ``shared_path``,
which skips when they are absent); nothing here copies their bytes. Each
vector file is one parametrised case, its id the file name.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import given
from hypothesis import strategies as st
from lxml import etree

from gateway.eui64 import Eui64
from gateway.gbcs import (
    CREDIT_MODE_CODES,
    DUIS_CANCELLATION_DATE_TIME,
    ApduError,
    CraFlag,
    DeviceType,
    GeneralCipheringApdu,
    GeneralSigningApdu,
    MessageCode,
    PrepaymentSettings,
    build_update_payment_mode_precommand,
    match_signed_precommand,
    sign_apdu,
    update_payment_mode_message_code,
    verify_apdu_signature,
)
from gateway.gbcs.signing import P256_ORDER
from tests.shared_data import shared_dir, shared_path

VECTORS = ("gbcs", "rtds-1.6")
TEMPLATES = ("duis", "templates")
SR = "{http://www.dccinterface.co.uk/ServiceUserGateway}"
SUPPLIER = Eui64.parse("90-B3-D5-1F-30-01-00-00")
ESME = Eui64.parse("00-DB-12-34-56-78-90-A0")
GSME = Eui64.parse("00-DB-12-34-56-78-90-A1")

CODE_BY_PREFIX = {
    "ECS02": MessageCode.ECS02_SET_ESME_CREDIT,
    "ECS03": MessageCode.ECS03_SET_ESME_PREPAYMENT,
    "GCS02": MessageCode.GCS02_SET_GSME_CREDIT,
    "GCS03": MessageCode.GCS03_SET_GSME_PREPAYMENT,
}
_VECTOR_NAME = re.compile(r"(?P<stem>.*)_(?:PRECOMMAND|COMMAND|RESPONSE|ALERT_[A-Z_]+)_GBCS\.HEX")


# --- access to the shared data ------------------------------------------------


def _vector_names(pattern: str) -> list[str]:
    """File names for parametrize ids; one placeholder (which skips) when the data is absent."""
    folder = shared_dir().joinpath(*VECTORS)
    names = sorted(path.name for path in folder.glob(pattern)) if folder.is_dir() else []
    return names or ["vectors-absent"]


PRECOMMANDS = _vector_names("*_PRECOMMAND_GBCS.HEX")
COMMANDS = _vector_names("*_COMMAND_GBCS.HEX")
RESPONSES = _vector_names("*_RESPONSE_GBCS.HEX")
ALERTS = _vector_names("*_ALERT_*_GBCS.HEX")


def _hex(*parts: str) -> bytes:
    return bytes.fromhex("".join(parts))


def read_vector(name: str) -> bytes:
    return bytes.fromhex(shared_path(*VECTORS, name).read_text().strip())


def code_of(name: str) -> MessageCode:
    return CODE_BY_PREFIX[name[:5]]


def device_type_of(name: str) -> DeviceType:
    return "ESME" if name.startswith("E") else "GSME"


@dataclass(frozen=True)
class DuisRequest:
    """What a DUIS SR 1.6 template says that the GBCS bytes must agree with."""

    originator: Eui64
    target: Eui64
    counter: int
    execution_date_time: datetime | None
    prepayment: PrepaymentSettings | None


def duis_request_for(vector_name: str) -> DuisRequest:
    """The DUIS template the vector was generated from (same name up to the kind)."""
    templates = shared_path(*TEMPLATES)  # skips first when the shared data is absent
    match = _VECTOR_NAME.fullmatch(vector_name.replace("_8F66_", "_"))
    assert match is not None, vector_name
    path = templates / f"{match['stem']}_REQUEST_DUIS.XML"
    if not path.exists():
        pytest.skip(f"no DUIS template pairs with {vector_name} (the RTDS ERROR variants have none)")
    return _read_duis_request(path)


def _read_duis_request(path: Path) -> DuisRequest:
    parser = etree.XMLParser(resolve_entities=False, no_network=True)
    root = etree.parse(str(path), parser).getroot()
    originator, target, counter = _text(root, "RequestID").split(":")
    execution = root.findtext(f".//{SR}ExecutionDateTime")
    prepayment = root.find(f".//{SR}Prepayment")
    return DuisRequest(
        originator=Eui64.parse(originator),
        target=Eui64.parse(target),
        counter=int(counter),
        execution_date_time=datetime.fromisoformat(execution) if execution else None,
        prepayment=None if prepayment is None else _prepayment(prepayment),
    )


def _prepayment(element: etree._Element) -> PrepaymentSettings:
    return PrepaymentSettings(
        suspend_debt_disabled=_text(element, "SuspendDebtDisabled") == "true",
        suspend_debt_emergency=_text(element, "SuspendDebtEmergency") == "true",
        disablement_threshold=int(_text(element, "DisablementThreshold")),
    )


def _text(element: etree._Element, local_name: str) -> str:
    text = element.findtext(f".//{SR}{local_name}")
    assert text is not None, local_name
    return text


def zaz1_public_key(name: str) -> ec.EllipticCurvePublicKey:
    """A ZAZ1 DCC Boxed certificate's key (``pem/<name>.pem``)."""
    certificate = x509.load_pem_x509_certificate(shared_path("zaz1", "pem", f"{name}.pem").read_bytes())
    key = certificate.public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey)
    return key


# --- real Pre-Commands ----------------------------------------------------------


@pytest.mark.interop
@pytest.mark.parametrize("name", PRECOMMANDS)
def test_precommand_parses_and_round_trips(name: str) -> None:
    raw = read_vector(name)
    apdu = GeneralSigningApdu.parse(raw)
    assert apdu.encode() == raw
    assert apdu.cra_flag is CraFlag.COMMAND
    assert apdu.message_code == code_of(name)
    assert apdu.other_information == code_of(name).to_bytes(2, "big")
    assert apdu.date_time is None
    assert apdu.signature is None, "DCC Boxed / RTDS Pre-Commands carry no signature field"
    assert apdu.signed_part() == raw[1:]


@pytest.mark.interop
@pytest.mark.parametrize("name", PRECOMMANDS)
def test_precommand_ids_are_the_duis_request_id(name: str) -> None:
    request = duis_request_for(name)
    apdu = GeneralSigningApdu.parse(read_vector(name))
    assert (apdu.originator, apdu.recipient, apdu.counter) == (request.originator, request.target, request.counter)


@pytest.mark.interop
@pytest.mark.parametrize("name", PRECOMMANDS)
def test_build_reproduces_the_real_precommand(name: str) -> None:
    """DUIS template in, our Pre-Command out, byte-equal to what DCC Boxed produced."""
    request = duis_request_for(name)
    built = build_update_payment_mode_precommand(
        counter=request.counter,
        originator=request.originator,
        recipient=request.target,
        device_type=device_type_of(name),
        to_credit=request.prepayment is None,
        execution_date_time=request.execution_date_time,
        prepayment=request.prepayment,
        twin_element="_TWIN_" in name,
    )
    assert built.encode().hex().upper() == read_vector(name).hex().upper()


# --- real Commands (MAC header ‖ signed Pre-Command ‖ MAC) ----------------------


@pytest.mark.interop
@pytest.mark.parametrize("name", COMMANDS)
def test_command_is_the_precommand_plus_a_signature(name: str) -> None:
    raw = read_vector(name)
    wrapper = GeneralCipheringApdu.parse(raw)
    assert wrapper.encode() == raw
    signed = wrapper.payload
    assert signed.signature is not None and signed.is_signed
    precommand = read_vector(name.replace("_COMMAND_", "_PRECOMMAND_"))
    assert signed.encode() == precommand + b"\x40" + signed.signature
    assert match_signed_precommand(GeneralSigningApdu.parse(precommand), signed) is signed


@pytest.mark.interop
@pytest.mark.parametrize("name", COMMANDS)
def test_real_command_verifies_with_the_zaz1_supplier_key(name: str) -> None:
    """DCC Boxed signed the RTDS commands with Z1-supplier-ds: proof signed_part() is right."""
    signed = GeneralCipheringApdu.parse(read_vector(name)).payload
    verify_apdu_signature(signed, zaz1_public_key("Z1-supplier-ds"))
    with pytest.raises(ApduError, match="does not verify"):
        verify_apdu_signature(signed, zaz1_public_key("Z1b-supplier-ds"))
    tampered = replace(signed, content=signed.content[:-1] + bytes([signed.content[-1] ^ 1]))
    with pytest.raises(ApduError, match="does not verify"):
        verify_apdu_signature(tampered, zaz1_public_key("Z1-supplier-ds"))


# --- real Responses and Alerts (signed by the device) --------------------------


@pytest.mark.interop
@pytest.mark.parametrize("name", RESPONSES)
def test_response_parses_and_round_trips(name: str) -> None:
    raw = read_vector(name)
    apdu = GeneralSigningApdu.parse(raw)
    assert apdu.encode() == raw
    assert apdu.cra_flag is CraFlag.RESPONSE
    assert apdu.message_code == code_of(name)
    assert apdu.date_time is not None and len(apdu.date_time) == 12
    assert apdu.is_signed


@pytest.mark.interop
@pytest.mark.parametrize("name", RESPONSES)
def test_response_ids_mirror_the_duis_request_id(name: str) -> None:
    request = duis_request_for(name)
    apdu = GeneralSigningApdu.parse(read_vector(name))
    assert (apdu.originator, apdu.recipient, apdu.counter) == (request.target, request.originator, request.counter)


@pytest.mark.interop
@pytest.mark.parametrize("name", ALERTS)
def test_future_dated_alert_names_the_command_it_executed(name: str) -> None:
    raw = read_vector(name)
    apdu = GeneralSigningApdu.parse(raw)
    assert apdu.encode() == raw
    assert apdu.cra_flag is CraFlag.ALERT
    expected = MessageCode.FUTURE_DATED_ALERT_DLMS if name.startswith("E") else MessageCode.FUTURE_DATED_ALERT_GBZ
    assert apdu.message_code == expected
    assert apdu.is_signed
    request = duis_request_for(name)
    assert (apdu.originator, apdu.recipient) == (request.target, request.originator)
    executed = code_of(name).to_bytes(2, "big") + request.counter.to_bytes(8, "big")
    assert executed in apdu.content


# --- message codes ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("device_type", "to_credit", "expected"),
    [
        ("ESME", True, 0x001A),
        ("ESME", False, 0x001B),
        ("GSME", True, 0x006C),
        ("GSME", False, 0x006D),
    ],
)
def test_update_payment_mode_message_code(device_type: DeviceType, to_credit: bool, expected: int) -> None:
    code = update_payment_mode_message_code(device_type, to_credit)
    assert code == expected
    assert (code in CREDIT_MODE_CODES) is to_credit


def test_update_payment_mode_message_code_rejects_other_devices() -> None:
    with pytest.raises(ValueError, match="ESME or a GSME"):
        update_payment_mode_message_code("HCALCS", True)  # type: ignore[arg-type]


# --- building, without the shared data -------------------------------------------


def _esme_credit(**overrides: object) -> GeneralSigningApdu:
    """An immediate ESME to-Credit Pre-Command, counter 1002, with ``overrides`` applied."""
    arguments: dict[str, object] = {
        "counter": 1002,
        "originator": SUPPLIER,
        "recipient": ESME,
        "device_type": "ESME",
        "to_credit": True,
    }
    arguments.update(overrides)
    return build_update_payment_mode_precommand(**arguments)  # type: ignore[arg-type]


def test_built_precommand_header() -> None:
    apdu = _esme_credit()
    assert (apdu.cra_flag, apdu.counter, apdu.originator, apdu.recipient) == (CraFlag.COMMAND, 1002, SUPPLIER, ESME)
    assert (apdu.message_code, apdu.date_time, apdu.signature) == (MessageCode.ECS02_SET_ESME_CREDIT, None, None)
    assert apdu.encode()[:33] == _hex("DF", "09 01 00000000000003EA", "08 90B3D51F30010000", "08 00DB1234567890A0",
                                      "00", "02 001A")


def test_esme_content_is_an_access_request_whose_invoke_id_is_the_counter() -> None:
    content = _esme_credit(counter=0x0123_4567_89AB).content
    assert content[:6] == bytes.fromhex("D9 20 6789AB 00")


@pytest.mark.parametrize(
    ("execution", "dlms_date_time"),
    [
        pytest.param(None, "0000 00 00 00 00 00 00 00 8000 FF", id="immediate"),
        pytest.param(datetime(2030, 1, 15, 9, tzinfo=UTC), "07EE 01 0F FF 09 00 00 00 8000 FF", id="future"),
        pytest.param(datetime(2030, 1, 15, 10, 30, tzinfo=timezone(timedelta(hours=1))),
                     "07EE 01 0F FF 09 1E 00 00 8000 FF", id="future-offset-to-utc"),
        pytest.param(DUIS_CANCELLATION_DATE_TIME, "FFFF FF FF FF FF FF FF FF 8000 FF", id="cancellation"),
    ],
)
def test_esme_execution_date_time(execution: datetime | None, dlms_date_time: str) -> None:
    content = _esme_credit(execution_date_time=execution).content
    assert content.endswith(bytes.fromhex("090C" + dlms_date_time))


def _zigbee_seconds(moment: datetime) -> bytes:
    return int((moment - datetime(2000, 1, 1, tzinfo=UTC)).total_seconds()).to_bytes(4, "little")


@pytest.mark.parametrize(
    ("execution", "utc_time"),
    [
        pytest.param(None, bytes(4), id="immediate"),
        pytest.param(datetime(2030, 1, 15, 9, tzinfo=UTC), _zigbee_seconds(datetime(2030, 1, 15, 9, tzinfo=UTC)),
                     id="future"),
        pytest.param(DUIS_CANCELLATION_DATE_TIME, b"\xff" * 4, id="cancellation"),
    ],
)
def test_gsme_content_is_a_change_payment_mode_command(execution: datetime | None, utc_time: bytes) -> None:
    apdu = build_update_payment_mode_precommand(
        counter=1000, originator=SUPPLIER, recipient=GSME, device_type="GSME", to_credit=True,
        execution_date_time=execution,
    )
    content = apdu.content
    assert content[:11] == bytes.fromhex("0109 01 01 0705 0015 01 00 06")
    assert content[19:23] == utc_time
    assert content[23:] == bytes.fromhex("940C FFFFFFFF")


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        pytest.param({"prepayment": PrepaymentSettings(False, False, 0)}, "no prepayment", id="credit-with-settings"),
        pytest.param({"to_credit": False}, "needs its prepayment", id="prepayment-without-settings"),
        pytest.param({"execution_date_time": datetime(2030, 1, 15)}, "timezone-aware", id="naive-date-time"),
        pytest.param({"device_type": "GSME", "recipient": GSME, "twin_element": True}, "twin", id="twin-gsme"),
        pytest.param(
            {"device_type": "GSME", "recipient": GSME, "execution_date_time": datetime(1999, 1, 1, tzinfo=UTC)},
            "ZigBee UTCTime",
            id="gsme-before-2000",
        ),
        pytest.param({"counter": 1 << 64}, "counter", id="counter-too-big"),
    ],
)
def test_build_rejects_bad_arguments(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        _esme_credit(**overrides)


def test_prepayment_threshold_must_fit_32_bits() -> None:
    with pytest.raises(ValueError, match="32-bit"):
        PrepaymentSettings(True, True, 1 << 31)


# --- signing and verifying ---------------------------------------------------------


@pytest.fixture(scope="module")
def supplier_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def test_sign_then_verify(supplier_key: ec.EllipticCurvePrivateKey) -> None:
    precommand = _esme_credit()
    signed = sign_apdu(precommand, supplier_key)
    assert signed.signature is not None
    verify_apdu_signature(signed, supplier_key.public_key())
    assert signed.without_signature() == precommand
    assert signed.encode() == precommand.encode() + b"\x40" + signed.signature
    assert GeneralSigningApdu.parse(signed.encode()) == signed
    assert match_signed_precommand(precommand, signed) is signed


Rewrite = Callable[[GeneralSigningApdu], GeneralSigningApdu]


def _flip_last_bit(data: bytes) -> bytes:
    return data[:-1] + bytes([data[-1] ^ 1])


@pytest.mark.parametrize(
    "tamper",
    [
        pytest.param(lambda a: replace(a, content=_flip_last_bit(a.content)), id="content"),
        pytest.param(lambda a: replace(a, counter=a.counter + 1), id="counter"),
        pytest.param(lambda a: replace(a, recipient=GSME), id="recipient"),
        pytest.param(lambda a: replace(a, date_time=bytes(12)), id="date-time-added"),
        pytest.param(lambda a: replace(a, signature=_flip_last_bit(a.signature)), id="signature"),
        pytest.param(lambda a: replace(a, signature=a.signature[32:] + a.signature[:32]), id="r-s-swapped"),
    ],
)
def test_tampering_breaks_the_signature(tamper: Rewrite, supplier_key: ec.EllipticCurvePrivateKey) -> None:
    signed = sign_apdu(_esme_credit(), supplier_key)
    with pytest.raises(ApduError, match="does not verify"):
        verify_apdu_signature(tamper(signed), supplier_key.public_key())


def test_another_key_does_not_verify(supplier_key: ec.EllipticCurvePrivateKey) -> None:
    signed = sign_apdu(_esme_credit(), supplier_key)
    with pytest.raises(ApduError, match="does not verify"):
        verify_apdu_signature(signed, ec.generate_private_key(ec.SECP256R1()).public_key())


@pytest.mark.parametrize(("signature", "message"), [(None, "not signed"), (b"", "not signed"),
                                                     (bytes(64), "out of range"),
                                                     (P256_ORDER.to_bytes(32, "big") * 2, "out of range")])
def test_unsigned_or_degenerate_signatures_fail(
    signature: bytes | None, message: str, supplier_key: ec.EllipticCurvePrivateKey
) -> None:
    apdu = replace(_esme_credit(), signature=signature)
    with pytest.raises(ApduError, match=message):
        verify_apdu_signature(apdu, supplier_key.public_key())


def test_ecdsa_malleability_is_documented_not_prevented(supplier_key: ec.EllipticCurvePrivateKey) -> None:
    """(r, n-s) verifies too: replay protection must key on the counter, never the signature."""
    signed = sign_apdu(_esme_credit(), supplier_key)
    assert signed.signature is not None
    s = int.from_bytes(signed.signature[32:], "big")
    twin = signed.with_signature(signed.signature[:32] + (P256_ORDER - s).to_bytes(32, "big"))
    verify_apdu_signature(twin, supplier_key.public_key())
    assert twin.encode() != signed.encode() and twin.signed_part() == signed.signed_part()


def test_only_p256_keys() -> None:
    p384 = ec.generate_private_key(ec.SECP384R1())
    with pytest.raises(ApduError, match="P-256"):
        sign_apdu(_esme_credit(), p384)
    signed = sign_apdu(_esme_credit(), ec.generate_private_key(ec.SECP256R1()))
    with pytest.raises(ApduError, match="P-256"):
        verify_apdu_signature(signed, p384.public_key())


@pytest.mark.parametrize(
    ("returned", "message"),
    [
        pytest.param(lambda s: s.without_signature(), "no signature", id="unsigned"),
        pytest.param(lambda s: replace(s, signature=b""), "no signature", id="null-signature"),
        pytest.param(lambda s: replace(s, counter=s.counter + 1), "differs", id="other-counter"),
        pytest.param(lambda s: replace(s, content=_flip_last_bit(s.content)), "differs", id="other-content"),
        pytest.param(lambda s: replace(s, recipient=GSME), "differs", id="other-device"),
    ],
)
def test_match_signed_precommand_rejects(
    returned: Rewrite, message: str, supplier_key: ec.EllipticCurvePrivateKey
) -> None:
    issued = _esme_credit()
    with pytest.raises(ApduError, match=message):
        match_signed_precommand(issued, returned(sign_apdu(issued, supplier_key)))


def test_with_signature_needs_64_bytes() -> None:
    with pytest.raises(ApduError, match="64 bytes"):
        _esme_credit().with_signature(bytes(63))


# --- malformed input ---------------------------------------------------------------

# A small synthetic Pre-Command, spelt out field by field (not from the shared data).
TAG, TXN, ORIG, RECIP, NO_DATE, OTHER, CONTENT = (
    "DF", "09 01 00000000000003E8", "08 90B3D51F30010000", "08 00DB1234567890A1", "00", "02 006C", "03 010203",
)
SIG = "40" + "11" * 64


VALID = _hex(TAG, TXN, ORIG, RECIP, NO_DATE, OTHER, CONTENT)


@pytest.mark.parametrize(
    ("data", "signature"),
    [
        pytest.param(VALID, None, id="no-signature-field"),
        pytest.param(VALID + b"\x00", b"", id="null-signature"),
        pytest.param(VALID + _hex(SIG), b"\x11" * 64, id="signed"),
    ],
)
def test_the_three_signature_forms(data: bytes, signature: bytes | None) -> None:
    apdu = GeneralSigningApdu.parse(data)
    assert apdu.signature == signature
    assert apdu.encode() == data
    assert apdu.signed_part() == VALID[1:]


MALFORMED = [
    pytest.param(b"", "truncated", id="empty"),
    pytest.param(_hex("DD", TXN, ORIG, RECIP, NO_DATE, OTHER, CONTENT), "tag", id="wrong-tag"),
    pytest.param(_hex(TAG, "08 01 000000000003E8", ORIG, RECIP, NO_DATE, OTHER, CONTENT), "transaction-id",
                 id="transaction-id-8-bytes"),
    pytest.param(_hex(TAG, "09 00 00000000000003E8", ORIG, RECIP, NO_DATE, OTHER, CONTENT), "CRA flag", id="cra-0"),
    pytest.param(_hex(TAG, "09 04 00000000000003E8", ORIG, RECIP, NO_DATE, OTHER, CONTENT), "CRA flag", id="cra-4"),
    pytest.param(_hex(TAG, TXN, "07 90B3D51F300100", RECIP, NO_DATE, OTHER, CONTENT), "originator",
                 id="originator-7-bytes"),
    pytest.param(_hex(TAG, TXN, ORIG, "09 00DB1234567890A100", NO_DATE, OTHER, CONTENT), "recipient",
                 id="recipient-9-bytes"),
    pytest.param(_hex(TAG, TXN, ORIG, RECIP, "0B" + "00" * 11, OTHER, CONTENT), "date-time", id="date-time-11"),
    pytest.param(_hex(TAG, TXN, ORIG, RECIP, NO_DATE, "01 00", CONTENT), "other-information", id="other-info-1"),
    pytest.param(_hex(TAG, TXN, ORIG, RECIP, NO_DATE, "03 006C00", CONTENT), "other-information",
                 id="other-info-3"),
    pytest.param(_hex(TAG, TXN, ORIG, RECIP, NO_DATE, OTHER, "00"), "content is empty", id="empty-content"),
    pytest.param(_hex(TAG, TXN, ORIG, RECIP, NO_DATE, OTHER, "05 010203"), "truncated content",
                 id="content-length-past-end"),
    pytest.param(_hex(TAG, TXN, ORIG, RECIP, NO_DATE, OTHER, "81 03 010203"), "minimally", id="non-minimal-length"),
    pytest.param(_hex(TAG, TXN, ORIG, RECIP, NO_DATE, OTHER, "82 0003 010203"), "minimally",
                 id="non-minimal-long-length"),
    pytest.param(_hex(TAG, TXN, ORIG, RECIP, NO_DATE, OTHER, "80 010203 0000"), "indefinite", id="indefinite-length"),
    pytest.param(_hex(TAG, TXN, ORIG, RECIP, NO_DATE, OTHER, "84 00000003 010203"), "length octets",
                 id="four-length-octets"),
    pytest.param(VALID + _hex("41" + "11" * 65), "signature must be", id="signature-marker-41"),
    pytest.param(VALID + _hex("20" + "11" * 32), "signature must be", id="signature-32-bytes"),
    pytest.param(VALID + _hex("40" + "11" * 63), "truncated signature", id="signature-truncated"),
    pytest.param(VALID + _hex(SIG, "00"), "trailing", id="trailing-after-signature"),
    pytest.param(VALID + _hex("00 00"), "trailing", id="trailing-after-null-signature"),
    pytest.param(VALID + _hex("81 40" + "11" * 64), "minimally", id="signature-non-minimal-length"),
]


@pytest.mark.parametrize(("data", "reason"), MALFORMED)
def test_malformed_apdus_are_rejected(data: bytes, reason: str) -> None:
    with pytest.raises(ApduError, match=reason):
        GeneralSigningApdu.parse(data)


@pytest.mark.parametrize("cut", range(len(VALID)))
def test_every_truncation_is_rejected(cut: int) -> None:
    with pytest.raises(ApduError):
        GeneralSigningApdu.parse(VALID[:cut])


def test_general_ciphering_rejects_a_non_empty_header_field() -> None:
    body = bytes([0x11]) + bytes(4) + VALID + bytes(12)
    good = b"\xdd" + bytes(6) + bytes([len(body)]) + body
    assert GeneralCipheringApdu.parse(good).encode() == good
    with pytest.raises(ApduError, match="header field"):
        GeneralCipheringApdu.parse(b"\xdd\x01" + good[2:])
    with pytest.raises(ApduError, match="trailing"):
        GeneralCipheringApdu.parse(good + b"\x00")
    with pytest.raises(ApduError, match="MAC"):
        GeneralCipheringApdu.parse(b"\xdd" + bytes(6) + b"\x08" + bytes(8))


# --- properties ----------------------------------------------------------------------

eui64s = st.integers(0, (1 << 64) - 1).map(Eui64)


@st.composite
def apdus(draw: st.DrawFn) -> GeneralSigningApdu:
    """Any valid APDU, with contents long enough to need long-form lengths."""
    message_code = draw(st.integers(0, 0xFFFF))
    tail = draw(st.sampled_from([0, 8, 16, 24, 40, 200]))
    return GeneralSigningApdu(
        cra_flag=draw(st.sampled_from(CraFlag)),
        counter=draw(st.integers(0, (1 << 64) - 1)),
        originator=draw(eui64s),
        recipient=draw(eui64s),
        date_time=draw(st.none() | st.binary(min_size=12, max_size=12)),
        message_code=message_code,
        other_information=message_code.to_bytes(2, "big") + draw(st.binary(min_size=tail, max_size=tail)),
        content=draw(st.binary(min_size=1, max_size=400)),
        signature=draw(st.none() | st.just(b"") | st.binary(min_size=64, max_size=64)),
    )


@given(apdus())
def test_parse_inverts_encode(apdu: GeneralSigningApdu) -> None:
    data = apdu.encode()
    assert GeneralSigningApdu.parse(data) == apdu
    assert data[1:].startswith(apdu.signed_part())


@given(st.binary(max_size=300) | st.binary(max_size=300).map(lambda b: b"\xdf\x09" + b))
def test_parse_raises_only_apdu_error(data: bytes) -> None:
    try:
        apdu = GeneralSigningApdu.parse(data)
    except ApduError:
        return
    assert apdu.encode() == data


@given(apdus(), st.integers(0, 10_000), st.integers(0, 255), st.sampled_from(["replace", "insert", "delete"]))
def test_mutated_apdus_parse_exactly_or_raise_apdu_error(
    apdu: GeneralSigningApdu, position: int, value: int, how: str
) -> None:
    data = bytearray(apdu.encode())
    index = position % len(data)
    if how == "replace":
        data[index] = value
    elif how == "insert":
        data.insert(index, value)
    else:
        del data[index]
    try:
        parsed = GeneralSigningApdu.parse(bytes(data))
    except ApduError:
        return
    assert parsed.encode() == bytes(data)


@given(st.binary(max_size=200).map(lambda b: b"\xdd" + bytes(6) + b) | st.binary(max_size=200))
def test_general_ciphering_raises_only_apdu_error(data: bytes) -> None:
    try:
        wrapper = GeneralCipheringApdu.parse(data)
    except ApduError:
        return
    assert wrapper.encode() == data
