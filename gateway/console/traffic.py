"""The console's traffic: recent exchanges and deliveries, anomaly detection and quarantine, the audit head.

Sources, all read-only: the service's ring of recent exchanges
(:mod:`gateway.recent`, this worker's, not persisted), the store's outbox, its
quarantine and ADT counts, and its audit log. Nothing here signs or changes
anything: a held request is released or deleted by a signed directive, so the
view shows the ``dcc-gateway admin`` command that sends one.
"""

from __future__ import annotations

import datetime as dt
import shlex
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from lxml import etree

from gateway.config import AdtConfig
from gateway.console.text import actor_name, iso
from gateway.eui64 import Eui64
from gateway.manifest import Manifest
from gateway.namespaces import SR
from gateway.parse import HardenedParser
from gateway.policy.state import RegistryState
from gateway.recent import Exchange, RecentExchanges
from gateway.store.audit import AuditRecordUnreadable
from gateway.store.base import PendingDelivery, QuarantinedRequest, Store

RECENT_DELIVERIES: Final = 30
AUDIT_TAIL: Final = 25
QUARANTINE_SHOWN: Final = 50
_SR = f"{{{SR}}}"


# --- requests and deliveries -------------------------------------------------------------------


async def traffic_view(
    recent: RecentExchanges, store: Store, manifest: Manifest, parser: HardenedParser, now: dt.datetime
) -> dict[str, object]:
    """``GET /console/api/traffic``: the last exchanges (this worker's) and deliveries (the outbox's)."""
    deliveries = await store.recent_deliveries(RECENT_DELIVERIES)
    return {
        "as_of": iso(now),
        "exchanges": [_exchange(exchange, manifest) for exchange in recent.newest_first()],
        "deliveries": [_delivery(delivery, manifest, parser) for delivery in deliveries],
    }


def _exchange(exchange: Exchange, manifest: Manifest) -> dict[str, object]:
    base = f"/console/api/exchanges/{exchange.sequence}"
    return {
        "sequence": exchange.sequence,
        "at": iso(exchange.at),
        "kind": exchange.kind,
        "path": exchange.path,
        "outcome": exchange.outcome,
        "reason": exchange.reason,
        "subject": exchange.subject,
        "originator": exchange.originator,
        "sender": None if exchange.originator is None else actor_name(manifest, exchange.originator),
        "target": exchange.target,
        "srv": exchange.service_reference_variant,
        "cv": exchange.command_variant,
        "directive": exchange.directive,
        "request_xml": f"{base}/request.xml" if exchange.request_xml is not None else None,
        "response_xml": f"{base}/response.xml" if exchange.response_xml is not None else None,
    }


@dataclass(frozen=True, slots=True)
class _Signed:
    """What a delivered document says about itself (the gateway signed it: it is read, not verified)."""

    message: str
    code: str
    request_id: str | None


def _read_delivered(body: bytes, parser: HardenedParser) -> _Signed:
    try:
        root = parser.parse(body).getroot()
    except (etree.XMLSyntaxError, ValueError):
        return _Signed("?", "?", None)
    body_element = root.find(f"{_SR}Body")
    message = etree.QName(body_element[0]).localname if body_element is not None and len(body_element) else "?"
    code = root.findtext(f"{_SR}Header/{_SR}ResponseCode") or "?"
    if message == "DeviceAlertMessage":
        code = "alert " + (root.findtext(f"{_SR}Body/{_SR}DeviceAlertMessage/{_SR}AlertCode") or "?")
    elif message == "DCCAlertMessage":
        code = root.findtext(f"{_SR}Body/{_SR}DCCAlertMessage/{_SR}DCCAlertCode") or "?"
    return _Signed(message, code, root.findtext(f"{_SR}Header/{_SR}RequestID"))


def _delivery(delivery: PendingDelivery, manifest: Manifest, parser: HardenedParser) -> dict[str, object]:
    signed = _read_delivered(delivery.body, parser)
    return {
        "delivery_id": delivery.delivery_id,
        "created_at": iso(delivery.created_at),
        "kind": delivery.kind.value,
        "message": signed.message,
        "code": signed.code,
        "request_id": signed.request_id,
        "subject": delivery.subject,
        "recipient": actor_name(manifest, str(delivery.user_id)),
        "status": delivery.status.value,
        "attempts": delivery.attempts,
        "last_error": delivery.last_error,
        "xml": f"/console/api/deliveries/{delivery.delivery_id}.xml",
    }


# --- anomaly detection and quarantine --------------------------------------------------------


async def quarantine_view(
    registry: RegistryState,
    store: Store,
    manifest: Manifest,
    adt: AdtConfig,
    world: Path,
    now: dt.datetime,
    gateway_url: str | None = None,
) -> dict[str, object]:
    """``GET /console/api/quarantine``: each user's ADT windows now, and the quarantined requests.

    ``gateway_url``: where the page reached the gateway; the admin commands name it when it is not
    the manifest's ``gateway.url`` (which ``dcc-gateway admin`` posts to by default)."""
    url = None if gateway_url is None or gateway_url.rstrip("/") == manifest.gateway.url.rstrip("/") else gateway_url
    windows = [await _window(store, manifest, user_id, srv, seconds, threshold, source, now)
               for user_id, srv, seconds, threshold, source in _adt_limits(registry, adt)]
    held = sorted(await _quarantined(registry, store), key=lambda q: q.event_ref, reverse=True)[:QUARANTINE_SHOWN]
    return {
        "as_of": iso(now),
        "windows": windows,
        "quarantined": [_quarantined_row(q, manifest, world, url) for q in held],
        "note": "release and delete are signed directives from the request's own user: run the command shown",
    }


def _adt_limits(registry: RegistryState, adt: AdtConfig) -> Iterable[tuple[Eui64, str, int, int, str]]:
    """(user, SRV, window, threshold, where it comes from) as the policy's anomaly_thresholds reads them."""
    for user in registry.users.values():
        if user.role is None:
            continue
        files = [(failed, file) for (failed, srp), file in registry.adt_files.items() if srp == user.party]
        if user.role == "SC" and files:
            for failed, file in files:
                for srv in sorted({*file.thresholds, *adt.default_thresholds}):
                    threshold = file.thresholds.get(srv, adt.default_thresholds.get(srv))
                    if threshold is not None:
                        source = f"ADT file of {file.srp_party} for {failed}"
                        yield user.user_id, srv, file.window_seconds, threshold, source
            continue
        for srv, threshold in sorted(adt.default_thresholds.items()):
            yield user.user_id, srv, adt.default_window_seconds, threshold, "gateway.toml [adt] defaults"


async def _window(
    store: Store, manifest: Manifest, user_id: Eui64, srv: str, seconds: int, threshold: int, source: str, now: dt.datetime
) -> dict[str, object]:
    counted = await store.adt_admissions(user_id, srv, now - dt.timedelta(seconds=seconds))
    return {
        "user_id": str(user_id),
        "user": actor_name(manifest, str(user_id)),
        "srv": srv,
        "window_seconds": seconds,
        "threshold": threshold,
        "admissions_in_window": counted,
        "next_is_quarantined": counted >= threshold,
        "source": source,
    }


async def _quarantined(registry: RegistryState, store: Store) -> list[QuarantinedRequest]:
    held: list[QuarantinedRequest] = []
    for user in registry.users.values():
        if user.role is not None:
            held += await store.quarantined(user.user_id)
    return held


async def find_quarantined(registry: RegistryState, store: Store, event_ref: int) -> QuarantinedRequest | None:
    return next((q for q in await _quarantined(registry, store) if q.event_ref == event_ref), None)


def _quarantined_row(held: QuarantinedRequest, manifest: Manifest, world: Path, url: str | None) -> dict[str, object]:
    actor = actor_name(manifest, str(held.user_id))
    commands = {}
    if held.status.value == "held":
        prefix = f"dcc-gateway admin {shlex.quote(str(world))} --as {shlex.quote(actor)}"
        if url is not None:
            prefix += f" --url {shlex.quote(url)}"
        commands = {
            "release": f"{prefix} release-quarantine {held.event_ref}",
            "delete": f"{prefix} delete-quarantine {held.event_ref}",
        }
    return {
        "event_ref": held.event_ref,
        "request_id": held.request_id,
        "user_id": str(held.user_id),
        "user": actor,
        "srv": held.service_reference_variant,
        "quarantined_at": iso(held.quarantined_at),
        "status": held.status.value,
        "commands": commands,
        "xml": f"/console/api/quarantine/{held.event_ref}.xml",
    }


# --- the audit log --------------------------------------------------------------------------------


async def audit_view(store: Store, now: dt.datetime) -> dict[str, object]:
    """``GET /console/api/audit``: the chain's head and the last records (``dcc-gateway audit verify``
    checks the whole chain; this only shows its end)."""
    try:
        records = await store.audit_tail(AUDIT_TAIL)
    except AuditRecordUnreadable as exc:
        return {"as_of": iso(now), "head": None, "records": [], "unreadable": str(exc)}
    head = records[0] if records else None
    return {
        "as_of": iso(now),
        "head": None if head is None else {"sequence": head.sequence, "hash": head.hash, "anchor": f"{head.sequence}:{head.hash}"},
        "records": [
            {
                "sequence": record.sequence,
                "at": iso(record.entry.at),
                "kind": record.entry.kind,
                "actor": record.entry.actor,
                "subject": record.entry.subject,
                "outcome": record.entry.outcome,
                "reason": record.entry.reason,
                "hash": record.hash,
            }
            for record in records
        ],
        "unreadable": None,
    }

