"""What the DCC answers to a non-device request (CV8): the ``ResponseMessage`` payload the 5.4 XSD defines.

The simulated DCC answers from what the world holds (the manifest's devices), and keeps nothing:

============  ==================================  =================================================
SRV           request                              answer (child of ``sr:ResponseMessage``)
============  ==================================  =================================================
8.2           Read Inventory (by DeviceID or MPxN) ``DSPInventory``: the device(s), commissioned
5.1           Create Schedule                      ``DSPScheduleID``: the RequestID's counter
11.1, 11.4    Update (PPMID) Firmware              ``DSP(PPMID)UpdateFirmwareWarning`` naming the
                                                   device IDs the world lacks (none: no payload)
others        (8.3, 8.4, 8.13, 8.14.x, 12.2, 5.2,  no payload: the XSD defines none, or (5.2 Read
              5.3, 12.1, ...)                      Schedule) the simulator keeps no schedules, or
                                                   (12.1 Request WAN Matrix) DCC Boxed's schema and
                                                   the official 5.4 XSD disagree on ``DSPWANMatrix``
                                                   (a ``DSPWANMatrixResponse`` wrapper in 5.4, none
                                                   in DCC Boxed's), so no shape passes both
============  ==================================  =================================================
"""

from __future__ import annotations

from collections.abc import Callable

from lxml import etree

from gateway.eui64 import Eui64
from gateway.manifest import Device
from gateway.namespaces import SR, qname

_SR = f"{{{SR}}}"
MAX_SCHEDULE_ID = 1_000_000_000_000
"""The XSD's scheduleID maximum."""
MAX_INVENTORY = 17
"""The XSD's DSPInventory maximum."""
SIMULATED_MANUFACTURER = "dcc-gateway simulator"

FindDevice = Callable[[Eui64], Device | None]
FindByMpxn = Callable[[str], list[Device]]


def non_device_payload(
    srv: str, body: etree._Element | None, counter: int, device: FindDevice, by_mpxn: FindByMpxn
) -> etree._Element | None:
    """The payload answering ``body`` (the signed request's body element), or None when there is none."""
    if body is None:
        return None
    if srv == "8.2":
        return _inventory(body, device, by_mpxn)
    if srv == "5.1":
        return _element("DSPScheduleID", str(counter % (MAX_SCHEDULE_ID + 1)))
    if srv in ("11.1", "11.4"):
        return _firmware_warning(srv, body, device)
    return None


def _inventory(body: etree._Element, device: FindDevice, by_mpxn: FindByMpxn) -> etree._Element | None:
    found: list[Device] = []
    device_id = body.findtext(f"{_SR}DeviceID")
    mpxn = body.findtext(f"{_SR}MPxN")
    if device_id:
        one = device(Eui64.parse(device_id.strip().upper()))
        found = [] if one is None else [one]
    elif mpxn:
        found = by_mpxn(mpxn.strip())
    if not found:
        return None
    inventory = etree.Element(qname(SR, "DSPInventory"))
    for entry in found[:MAX_INVENTORY]:
        element = etree.SubElement(inventory, qname(SR, "Device"))
        _sub(element, "DeviceID", _eui(entry.device_id))
        _sub(element, "DeviceType", entry.type)
        _sub(element, "DeviceStatus", "Commissioned")
        _sub(element, "DeviceManufacturer", SIMULATED_MANUFACTURER)
        _sub(element, "DeviceModel", f"SMETS{entry.smets} {entry.type}")
        _sub(element, "SMETSCHTSVersion", f"SMETS{entry.smets}")
        if entry.mpxn:
            _sub(element, "ImportMPxN", entry.mpxn)
    return inventory


def _firmware_warning(srv: str, body: etree._Element, device: FindDevice) -> etree._Element | None:
    listed = (body.findtext(f"{_SR}DeviceIDList") or "").strip()
    unknown = []
    for text in filter(None, (part.strip() for part in listed.split(","))):
        try:
            if device(Eui64.parse(text.upper())) is None:
                unknown.append(text.upper())
        except ValueError:
            unknown.append(text)
    if not unknown:
        return None
    name = "DSPUpdateFirmwareWarning" if srv == "11.1" else "DSPUpdatePPMIDFirmwareWarning"
    warning = etree.Element(qname(SR, name))
    _sub(warning, "InvalidDeviceIDList", ",".join(unknown))
    return warning


def _eui(device_id: Eui64) -> str:
    return device_id.to_bytes().hex("-").upper()


def _element(local: str, text: str) -> etree._Element:
    element = etree.Element(qname(SR, local))
    element.text = text
    return element


def _sub(parent: etree._Element, local: str, text: str) -> None:
    etree.SubElement(parent, qname(SR, local)).text = text
