"""UTRNs as GBCS §14 defines them: the real CS01a/CS01b templates and RTDS vectors, and the meter's checks.

The templates and vectors stay in ../shared (read through ``shared_path``); the
supplier's prepayment key-agreement key is the ZAZ1 keystore's ``Z1-supplierPP-ka``,
read in place. Meter keys are made here (DCC Boxed's device keys are not public data).
"""

from __future__ import annotations

import base64
import json
import re

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import given
from hypothesis import strategies as st
from lxml import etree

from gateway.devices.utrn import (
    UTRN_COUNTER_CACHE_SIZE,
    UtrnRejected,
    ValueClass,
    accept_utrn,
    check_digit,
    deduce_utrn_counter,
    originator_counter,
    read_utrn,
    vend_utrn,
)
from gateway.eui64 import Eui64
from tests.shared_data import shared_path

SR = "{http://www.dccinterface.co.uk/ServiceUserGateway}"
SUPPLIER = Eui64.parse("90-B3-D5-1F-30-01-00-00")
METER = Eui64.parse("00-DB-12-34-56-78-90-A0")
METER_KEY = ec.derive_private_key(0x5EED_0001, ec.SECP256R1())
OTHER_KEY = ec.derive_private_key(0x5EED_0002, ec.SECP256R1())


def _template(name: str) -> tuple[str, int]:
    """(UTRN, RequestID counter) of a real DUIS Top Up Device template."""
    root = etree.parse(str(shared_path("duis", "templates", name))).getroot()
    request_id = root.findtext(f"{SR}Header/{SR}RequestID") or ""
    return root.findtext(f".//{SR}TopUpDevice/{SR}UTRN") or "", int(request_id.rsplit(":", 1)[1])


def _vector_counter(folder: str, name: str) -> int:
    """The GBCS transaction counter of an RTDS command vector (after ``DF 09 01``)."""
    data = bytes.fromhex(shared_path("gbcs", "rtds-4.5.0", folder, name).read_text().strip())
    at = data.index(bytes.fromhex("DF0901")) + 3
    return int.from_bytes(data[at : at + 8], "big")


def _zaz1_prepayment_key() -> ec.EllipticCurvePrivateKey:
    keystore = json.loads(shared_path("zaz1", "keystore.json").read_text())
    for entry in keystore["90b3d51f30010000"]["keyAgreement"].values():
        if entry["name"] == "Z1-supplierPP-ka":
            text = entry["privateKey"]
            if text.startswith("-----"):
                key = serialization.load_pem_private_key(text.encode(), None)
            else:
                key = serialization.load_der_private_key(base64.b64decode(text), None)
            assert isinstance(key, ec.EllipticCurvePrivateKey)
            return key
    pytest.fail("the ZAZ1 keystore has no Z1-supplierPP-ka")


@pytest.mark.parametrize(
    ("template", "folder", "command", "pence"),
    [
        ("CS01a_2.2_SUCCESS_REQUEST_DUIS.XML", "2.2_CS01a", "CS01a_2.2_SUCCESS_COMMAND_GBCS.HEX", 1000),
        ("CS01b_2.2_SUCCESS_REQUEST_DUIS.XML", "2.2_CS01b", "CS01b_2.2_SUCCESS_COMMAND_GBCS.HEX", 1250),
    ],
)
def test_the_real_templates_utrn_reads_as_the_vector_carries_it(template: str, folder: str, command: str, pence: int) -> None:
    utrn, request_counter = _template(template)
    ptut = read_utrn(utrn)
    # The truncated counter is the DUIS counter's bits 32-41, and the GBCS command carries that counter.
    assert originator_counter(ptut.truncated_counter) == request_counter == _vector_counter(folder, command)
    assert ptut.pence == pence
    vector = shared_path("gbcs", "rtds-4.5.0", folder, command).read_text().strip()
    assert utrn.encode().hex().upper() in vector  # the command content is the UTRN's 20 ASCII digits


def test_the_check_digit_is_gbcs_verhoeff() -> None:
    utrn, _ = _template("CS01a_2.2_SUCCESS_REQUEST_DUIS.XML")
    assert check_digit(utrn[:-1]) == utrn[-1]
    for position in range(len(utrn) - 1):  # every single-digit mistype is caught
        wrong = utrn[:position] + str((int(utrn[position]) + 1) % 10) + utrn[position + 1 :]
        with pytest.raises(UtrnRejected, match="check digit"):
            read_utrn(wrong)
    swapped = utrn[1] + utrn[0] + utrn[2:]  # and a transposition
    if swapped != utrn:
        with pytest.raises(UtrnRejected, match="check digit"):
            read_utrn(swapped)


def test_the_counter_is_deduced_as_gbcs_table_27_shows() -> None:
    assert deduce_utrn_counter(812, 2_458_896_167) == 2_458_896_172  # the table's worked example
    assert deduce_utrn_counter(3, 1020) == 1027  # wraps forward past a multiple of 1024
    assert deduce_utrn_counter(1020, 1027) == 1020  # and back
    assert deduce_utrn_counter(7, 0) == 7


def _vend(counter: int, value: int = 500, key: ec.EllipticCurvePrivateKey | None = None, **kw: object) -> str:
    return vend_utrn(
        supplier_prepayment_key=key or _zaz1_prepayment_key(),
        meter_key_agreement=METER_KEY.public_key(),
        originator=SUPPLIER,
        target=kw.get("target", METER),  # type: ignore[arg-type]
        utrn_counter=counter,
        value=value,
        value_class=kw.get("value_class", ValueClass.PENCE),  # type: ignore[arg-type]
    )


def _accept(utrn: str, counters: tuple[int, ...] = (), meter: Eui64 = METER) -> object:
    return accept_utrn(
        utrn,
        meter_key_agreement=METER_KEY,
        supplier_prepayment_certificate_key=_zaz1_prepayment_key().public_key(),
        supplier=SUPPLIER,
        meter=meter,
        counters=counters,
    )


def test_a_vended_utrn_is_accepted_once_and_its_value_credited() -> None:
    utrn = _vend(7, 12, value_class=ValueClass.POUNDS)
    assert re.fullmatch(r"\d{20}", utrn)
    accepted = _accept(utrn, (3, 5))
    assert (accepted.pence, accepted.utrn_counter, accepted.counters) == (1200, 7, (3, 5, 7))  # type: ignore[attr-defined]
    with pytest.raises(UtrnRejected, match="replay") as replayed:
        _accept(utrn, accepted.counters)  # type: ignore[attr-defined]
    assert replayed.value.duplicate


def test_the_meter_refuses_a_utrn_it_cannot_authenticate() -> None:
    with pytest.raises(UtrnRejected, match="MAC"):
        _accept(_vend(9, key=OTHER_KEY))  # vended with another supplier's key
    with pytest.raises(UtrnRejected, match="MAC"):
        _accept(_vend(9), meter=Eui64.parse("00-DB-12-34-56-78-90-A1"))  # vended for another meter
    utrn = _vend(9)
    with pytest.raises(UtrnRejected):
        _accept(utrn[:10] + ("1" if utrn[10] != "1" else "2") + utrn[11:-1] + utrn[-1])


def test_a_utrn_older_than_the_whole_counter_cache_is_refused() -> None:
    cache = tuple(range(100, 100 + UTRN_COUNTER_CACHE_SIZE))
    with pytest.raises(UtrnRejected, match="older"):
        _accept(_vend(50), cache)
    newest = _accept(_vend(200), cache)
    assert len(newest.counters) == UTRN_COUNTER_CACHE_SIZE and newest.counters[-1] == 200  # type: ignore[attr-defined]


@given(st.text(max_size=30))
def test_anything_but_a_utrn_is_refused_with_a_reason(text: str) -> None:
    try:
        read_utrn(text)
    except UtrnRejected as refused:
        assert refused.reason


def test_a_supplier_cannot_vend_what_a_utrn_cannot_carry() -> None:
    with pytest.raises(ValueError, match="8191"):
        _vend(1, 8192)
    with pytest.raises(ValueError, match="32-bit"):
        _vend(1 << 32)
