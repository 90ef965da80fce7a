"""The scenario's steps as data, and the builder that lays them out in run order.

A step (:class:`StatefulVector`) is bytes to POST, where, and what the gateway
must answer at that point of the story. :class:`ScenarioSteps` signs each
directive and Service Request with its actor's world keys, takes every counter
from one :class:`~vectors.scenario.replay_plan.CounterSource`, and keeps what
later steps rely on (the directives accepted so far, the SC admissions that
fix the ADT threshold).
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field

from lxml import etree

from gateway.duis_request import payment_mode_element, request_tree
from gateway.eui64 import Eui64
from gateway.gbcs import GeneralSigningApdu, PrepaymentSettings, build_update_payment_mode_precommand
from gateway.manifest import Device
from gateway.namespaces import SR
from gateway.policy import directives as d
from vectors.catalogue.tooling import raw_signature, sign, to_bytes
from vectors.scenario.replay_plan import CounterSource
from vectors.scenario.world import SRP_ARO, SRP_SC, ScenarioWorld, ds_key, xml_sign_key

DIRECTIVE = "directive"
POLICY = "policy"
REPLAY = "replay"
ACCEPTED = "accepted"
POLICY_CATEGORIES = (DIRECTIVE, POLICY, REPLAY, ACCEPTED)

SERVICE_S = "/api/v1/serviceS"
SERVICE_T = "/api/v1/serviceT"
SERVICE_D = "/api/v1/serviceD"
ADMIN = "/api/v1/admin"

ENABLEMENT_DAYS = 85
"""The enablement's ``until``, after generation: inside MP134A part 2's 90 days from the appointment
(which happens at run time, so later), and the time the suite stays runnable."""
BEYOND_LIMIT_DAYS = 200
"""An ``until`` that must be refused: more than 90 days after any appointment made within 110 days."""
ADT_WINDOW_SECONDS = 7 * 86400
"""Long enough that every SC request of one run falls in one anomaly-detection window."""
COUNTER_START = 1_000_000
"""Above the catalogue's counters (1000, 1001; 2^64-1 only for its own signer and meter)."""

_SR = f"{{{SR}}}"
_NEUTRAL_PREPAYMENT = PrepaymentSettings(suspend_debt_disabled=False, suspend_debt_emergency=False, disablement_threshold=0)
"""What :func:`gateway.duis_request.payment_mode_element` writes for Prepayment."""


@dataclass(frozen=True, slots=True)
class StatefulVector:
    """One step of the scenario: bytes to POST, where, and what the gateway must answer at that point."""

    id: str
    category: str
    description: str
    reference: str
    endpoint: str
    expect: Mapping[str, object]
    data: bytes
    relies_on: tuple[str, ...]
    """Ids of the earlier vectors whose effect this one needs (accepted directives, issued Pre-Commands...)."""


def credit() -> etree._Element:
    return payment_mode_element("Credit")


def prepayment() -> etree._Element:
    return payment_mode_element("Prepayment")


def switch_form(device: Device) -> tuple[int, str, str]:
    """(command variant, endpoint, the code an accepted SR 1.6 gets) for this meter.

    SR 1.6 is critical: a SMETS1 meter takes the SR itself (CV1 -> I99), a
    SMETS2 meter first gives a Pre-Command (CV4 on serviceT -> I0).
    """
    return (1, SERVICE_S, "I99") if device.smets == 1 else (4, SERVICE_T, "I0")


@dataclass
class ScenarioSteps:
    """Lays the steps out in run order; every counter comes from the one ``counters`` source."""

    world: ScenarioWorld
    counters: CounterSource
    now: dt.datetime
    vectors: list[StatefulVector] = field(default_factory=list)
    state: list[str] = field(default_factory=list)
    """Ids of the directives accepted so far: what every later step relies on."""
    sc_admitted: int = 0
    """SC requests the store admitted so far (I99 by CV1, I0 by CV4): they count against the ADT threshold."""
    adt_step: int | None = None
    """Where the ADT file sits in :attr:`vectors`; its bytes are written by :meth:`finish`."""
    adt_counter: int | None = None
    adt_threshold: int | None = None

    # --- directives -----------------------------------------------------------------

    def direct(self, vector_id: str, actor: str, directive: d.Directive, *, accepted: bool, description: str,
               reference: str) -> None:
        data = self._directive_bytes(actor, directive, self.counters.next())
        verdict = "accepted" if accepted else "refused"
        self._add(vector_id, DIRECTIVE, f"{description} Expected {verdict}.", reference, ADMIN,
                  {"http_status": 200, "accepted": accepted}, data)
        if accepted:
            self.state.append(vector_id)

    def submit_adt(self, vector_id: str, description: str, reference: str) -> None:
        """The ARO's ADT file; its threshold is filled in by :meth:`finish` once the SC steps are laid out."""
        self.adt_counter = self.counters.next()  # its place in the run order fixes its DirectiveID now
        self.adt_step = len(self.vectors)
        self._add(vector_id, DIRECTIVE, description, reference, ADMIN, {"http_status": 200, "accepted": True}, b"")
        self.state.append(vector_id)

    def _directive_bytes(self, actor: str, directive: d.Directive, counter: int) -> bytes:
        issuer = self.world.actors[actor]
        directive_id = f"{issuer.user_id}:{self.world.dcc}:{counter}"
        return to_bytes(sign(d.directive_tree(directive, directive_id), xml_sign_key(issuer)))

    # --- Service Requests -----------------------------------------------------------

    def request(
        self,
        vector_id: str,
        category: str,
        actor: str,
        target: Eui64,
        code: str,
        *,
        description: str,
        reference: str,
        body: etree._Element | None = None,
        cv: int = 1,
        srv: str = "1.6",
        counter: int | None = None,
        endpoint: str = SERVICE_S,
        relies_on: tuple[str, ...] = (),
    ) -> bytes:
        sender = self.world.actors[actor]
        root = request_tree(
            originator=sender.user_id,
            target=target,
            counter=self.counters.next() if counter is None else counter,
            command_variant=cv,
            service_reference_variant=srv,
            body=credit() if body is None else body,
        )
        data = to_bytes(sign(root, xml_sign_key(sender)))
        self.send(vector_id, category, data, code, description=description, reference=reference,
                  endpoint=endpoint, relies_on=relies_on, actor=actor, cv=cv)
        return data

    def send(self, vector_id: str, category: str, data: bytes, code: str, *, description: str, reference: str,
             endpoint: str = SERVICE_S, relies_on: tuple[str, ...] = (), actor: str = "", cv: int = 1) -> None:
        """Adds ``data`` (built here or earlier) as a step expecting ``code``."""
        if actor == SRP_SC and (code == "I0" or (code == "I99" and cv in (1, 2, 3))):
            self.sc_admitted += 1
        self._add(vector_id, category, description, reference, endpoint,
                  {"http_status": 200, "response_code": code}, data, relies_on)

    def switch_to_credit_smets2(self, vector_id: str, device: Device, ds_actor: str, *, category: str,
                                description: str, reference: str) -> tuple[int, bytes]:
        """SC's CV4 (I0) and CV5 signed with ``ds_actor``'s DS key, as the SRP holds it as agent (I99)."""
        counter = self.counters.next()
        self.request(f"{vector_id}-cv4", category, SRP_SC, device.device_id, "I0", cv=4, counter=counter,
                     endpoint=SERVICE_T, description=f"{description} Step 1: CV4 asks for the Pre-Command.",
                     reference=reference, relies_on=tuple(self.state))
        apdu = self.precommand(device, counter)
        signed = apdu.with_signature(raw_signature(ds_key(self.world.actors[ds_actor]), apdu.signed_part()))
        data = self.signed_precommand(device, counter, signed.encode())
        self.send(f"{vector_id}-cv5", category, data, "I99", actor=SRP_SC, cv=5,
                  description=f"{description} Step 2: CV5 returns it signed with {self.world.failed}'s DS key, "
                  "which the SRP holds as its agent (MP134B R2: the SC role has no DS key of its own).",
                  reference=reference, relies_on=(*self.state, f"{vector_id}-cv4"))
        return counter, data

    def ask_for_precommand(self, vector_id: str, device: Device, *, description: str, reference: str) -> int:
        """SC's CV4 for a Credit Pre-Command (I0) under a fresh counter: the counter a later CV5 returns under."""
        counter = self.counters.next()
        self.request(vector_id, ACCEPTED, SRP_SC, device.device_id, "I0", cv=4, counter=counter, endpoint=SERVICE_T,
                     description=description, reference=reference)
        return counter

    def precommand(self, device: Device, counter: int, *, to_credit: bool = True) -> GeneralSigningApdu:
        """The Pre-Command the gateway issues for SC's SR 1.6 on CV4 (``gateway/policy/critical.py``)."""
        return build_update_payment_mode_precommand(
            counter=counter,
            originator=self.world.user(SRP_SC),
            recipient=device.device_id,
            device_type="ESME" if device.type == "ESME" else "GSME",
            to_credit=to_credit,
            prepayment=None if to_credit else _NEUTRAL_PREPAYMENT,
        )

    def signed_precommand(self, device: Device, counter: int, payload: bytes) -> bytes:
        """A CV5 request from SC carrying ``payload`` as its sr:SignedPreCommand."""
        body = etree.Element(_SR + "SignedPreCommand")
        etree.SubElement(body, _SR + "GBCSPayload").text = base64.b64encode(payload).decode("ascii")
        sender = self.world.actors[SRP_SC]
        root = request_tree(originator=sender.user_id, target=device.device_id, counter=counter, command_variant=5,
                            service_reference_variant="1.6", body=body)
        return to_bytes(sign(root, xml_sign_key(sender)))

    def quarantine_next(self, vector_id: str, target: Eui64, *, description: str, reference: str) -> None:
        """The first SC request beyond the ADT threshold: the threshold is every SC admission so far."""
        self.adt_threshold = self.sc_admitted
        self.request(vector_id, POLICY, SRP_SC, target, "E43", description=description, reference=reference,
                     relies_on=tuple(self.state))

    # --- assembly -------------------------------------------------------------------

    def _add(self, vector_id: str, category: str, description: str, reference: str, endpoint: str,
             expect: Mapping[str, object], data: bytes, relies_on: tuple[str, ...] | None = None) -> None:
        if any(v.id == vector_id for v in self.vectors):
            raise ValueError(f"duplicate vector id {vector_id!r}")
        needs = tuple(self.state) if relies_on is None else relies_on
        self.vectors.append(StatefulVector(vector_id, category, description, reference, endpoint, expect, data, needs))

    def finish(self) -> list[StatefulVector]:
        if self.adt_step is None or self.adt_counter is None or self.adt_threshold is None:
            raise ValueError("the scenario needs an ADT file and a step beyond its threshold")
        placeholder = self.vectors[self.adt_step]
        directive = d.SubmitAdt(self.world.failed, ADT_WINDOW_SECONDS, {"1.6": self.adt_threshold})
        data = self._directive_bytes(SRP_ARO, directive, self.adt_counter)
        description = (
            f"{placeholder.description} Thresholds {{'1.6': {self.adt_threshold}}} per {ADT_WINDOW_SECONDS} s: "
            f"exactly the SC requests this suite expects admitted, so the next one is quarantined. Expected accepted."
        )
        self.vectors[self.adt_step] = dataclasses.replace(placeholder, data=data, description=description)
        return list(self.vectors)

