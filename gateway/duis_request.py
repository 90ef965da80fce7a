"""Unsigned DUIS Service Requests, as a user (or a test, a vector, the demo) writes them before signing."""

from __future__ import annotations

from lxml import etree

from gateway.eui64 import Eui64
from gateway.namespaces import DS, SR

_SR = f"{{{SR}}}"


def request_tree(
    *,
    originator: Eui64,
    target: Eui64,
    counter: int,
    command_variant: int,
    service_reference_variant: str,
    body: etree._Element,
    service_reference: str | None = None,
    first_in_sequence: bool | None = None,
    preceding_request_id: str | None = None,
    sr_prefix: str | None = "sr",
    root_ds_prefix: str | None = "ds",
) -> etree._Element:
    """An ``sr:Request`` with its Header and ``body`` in sr:Body.

    ``service_reference`` defaults to the variant's first two parts ("4.1.1" -> "4.1").
    ``sr_prefix=None`` makes sr the default namespace; ``root_ds_prefix`` binds the
    XMLDSig namespace on the root as DUIS templates do (None leaves it to the signature).
    """
    nsmap: dict[str | None, str] = {sr_prefix: SR}
    if root_ds_prefix is not None:
        nsmap[root_ds_prefix] = DS
    root = etree.Element(_SR + "Request", nsmap=nsmap, schemaVersion="5.4")
    header = etree.SubElement(root, _SR + "Header")
    etree.SubElement(header, _SR + "RequestID").text = f"{originator}:{target}:{counter}"
    if first_in_sequence is not None:
        etree.SubElement(header, _SR + "FirstInSequence").text = "true" if first_in_sequence else "false"
    if preceding_request_id is not None:
        etree.SubElement(header, _SR + "PrecedingServiceRequestID").text = preceding_request_id
    etree.SubElement(header, _SR + "CommandVariant").text = str(command_variant)
    reference = service_reference or ".".join(service_reference_variant.split(".")[:2])
    etree.SubElement(header, _SR + "ServiceReference").text = reference
    etree.SubElement(header, _SR + "ServiceReferenceVariant").text = service_reference_variant
    etree.SubElement(root, _SR + "Body").append(body)
    return root


def payment_mode_element(mode: str) -> etree._Element:
    """An SR 1.6 ``sr:UpdatePaymentMode`` body: ``Credit``, or ``Prepayment`` with neutral settings."""
    update = etree.Element(_SR + "UpdatePaymentMode")
    if mode == "Credit":
        etree.SubElement(update, _SR + "Credit")
        return update
    if mode != "Prepayment":
        raise ValueError(f"unknown payment mode {mode!r}")
    prepayment = etree.SubElement(update, _SR + "Prepayment")
    etree.SubElement(prepayment, _SR + "SuspendDebtDisabled").text = "false"
    etree.SubElement(prepayment, _SR + "SuspendDebtEmergency").text = "false"
    etree.SubElement(prepayment, _SR + "DisablementThreshold").text = "0"
    return update
