"""A generated world driven through the real verifier, for policy tests.

Requests are signed with the actors' keys from ``manifest.json`` and verified
by the same verifier the gateway uses, so policy tests see exactly what the
gateway would hand to the policy.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from lxml import etree

from gateway.clock import FixedClock
from gateway.duis_request import payment_mode_element
from gateway.eui64 import Eui64
from gateway.manifest import Actor, Device, Manifest
from gateway.policy import directives as d
from gateway.policy import solr
from gateway.policy.authorise import PolicyConfig
from gateway.policy.eligibility import Eligibility
from gateway.policy.state import RegistryState, initial_state
from gateway.runtime import World, open_world
from gateway.signing import SigningKey, sign_tree, to_bytes
from gateway.verify.documents import VerifiedDirective, VerifiedRequest
from gateway.verify.verifier import Verifier
from tests import factories

UTC = dt.timezone.utc
START = dt.datetime(2026, 3, 2, 9, 0, tzinfo=UTC)

# A minimal eligibility matrix in the real file's format, for tests that must run
# without ../shared (the real matrix is used when present, see matrix_rows()).
MINIMAL_MATRIX = [
    {"Service Request Name": "Update Payment Mode", "Service Reference": "1.6", "Service Reference Variant": "1.6",
     "Critical": "Yes", "Non-Device Request": "No", "Eligible User Roles": ["IS", "GS"]},
    {"Service Request Name": "Update Import Tariff (Secondary Element)", "Service Reference": "1.1",
     "Service Reference Variant": "1.1.2", "Critical": "Yes", "Non-Device Request": "No", "Eligible User Roles": ["IS"]},
    {"Service Request Name": "Read Instantaneous Import Registers", "Service Reference": "4.1",
     "Service Reference Variant": "4.1.1", "Critical": "No", "Non-Device Request": "No",
     "Eligible User Roles": ["IS", "GS", "ED", "GT"]},
    {"Service Request Name": "Read Instantaneous Import Block Counters", "Service Reference": "4.1",
     "Service Reference Variant": "4.1.4", "Critical": "No", "Non-Device Request": "No", "Eligible User Roles": ["GS"]},
    {"Service Request Name": "Display Message", "Service Reference": "3.1", "Service Reference Variant": "3.1",
     "Critical": "No", "Non-Device Request": "No", "Eligible User Roles": ["IS", "GS"]},
    {"Service Request Name": "Request Handover Of DCC Controlled Device", "Service Reference": "8.2",
     "Service Reference Variant": "8.2", "Critical": "No", "Non-Device Request": "Yes",
     "Eligible User Roles": ["IS", "ES", "GS", "RSA", "ED", "GT", "OU"]},
]


def credit_body() -> etree._Element:
    return payment_mode_element("Credit")


def prepayment_body() -> etree._Element:
    return payment_mode_element("Prepayment")


@dataclass
class Scenario:
    """A world, a clock, the registry state, and helpers to sign, verify and direct."""

    world: World
    clock: FixedClock
    config: PolicyConfig
    state: RegistryState
    verifier: Verifier
    counters: Iterator[int] = field(default_factory=lambda: itertools.count(1000))

    @property
    def manifest(self) -> Manifest:
        return self.world.manifest

    def actor(self, name: str) -> Actor:
        return self.manifest.actor(name)

    def devices(self, *, mpid_of: str, device_type: str | None = None, smets: int | None = None) -> list[Device]:
        mpids = set(self.manifest.party(mpid_of).mpids)
        return [
            device
            for device in self.manifest.devices
            if device.supplier_mpid in mpids
            and (device_type is None or device.type == device_type)
            and (smets is None or device.smets == smets)
        ]

    def device(self, *, mpid_of: str = "failed-supplier", device_type: str = "ESME", smets: int = 1) -> Device:
        return self.devices(mpid_of=mpid_of, device_type=device_type, smets=smets)[0]

    # --- documents ---------------------------------------------------------------

    def signed_request(
        self,
        actor: str,
        target: Eui64,
        *,
        srv: str = "1.6",
        cv: int = 1,
        body: etree._Element | None = None,
        counter: int | None = None,
        key_of: str | None = None,
    ) -> bytes:
        """A request from ``actor``'s User ID, signed with ``key_of``'s xmlSign key (default: the actor's)."""
        originator = self.actor(actor).user_id
        signer = self.actor(key_of or actor)
        tree = factories.request_tree(
            originator=originator,
            target=target,
            counter=next(self.counters) if counter is None else counter,
            command_variant=cv,
            service_reference=".".join(srv.split(".")[:2]),
            service_reference_variant=srv,
            body=body if body is not None else credit_body(),
        )
        return to_bytes(sign_tree(tree, SigningKey.load(signer.xml_sign.key, signer.xml_sign.cert)))

    def request(self, actor: str, target: Eui64, **fields: object) -> VerifiedRequest:
        return self.verifier.verify_request(self.signed_request(actor, target, **fields))  # type: ignore[arg-type]

    def signed_directive(self, actor: str, directive: d.Directive) -> bytes:
        issuer = self.actor(actor)
        directive_id = f"{issuer.user_id}:{self.manifest.gateway.dsp_user_id}:{next(self.counters)}"
        key = SigningKey.load(issuer.xml_sign.key, issuer.xml_sign.cert)
        return to_bytes(sign_tree(d.directive_tree(directive, directive_id), key))

    def verified_directive(self, actor: str, directive: d.Directive) -> VerifiedDirective:
        return self.verifier.verify_directive(self.signed_directive(actor, directive))

    # --- the SoLR story, applied to the pure state --------------------------------

    def direct(self, actor: str, directive: d.Directive) -> solr.Outcome:
        """Applies a directive through the pure state machine (accepted ones update the state)."""
        issuer = self.state.user(self.actor(actor).user_id)
        assert issuer is not None
        outcome = solr.decide(self.state, directive, issuer, self.clock.now(), solr.Limits(self.config.contingency_max_days))
        if outcome.accepted:
            self.state = outcome.state
        return outcome

    def must(self, actor: str, directive: d.Directive) -> solr.Outcome:
        outcome = self.direct(actor, directive)
        assert outcome.accepted, outcome.reason
        return outcome

    def fail_supplier(self) -> None:
        self.must("authority", d.RevokeLicence("failed-supplier"))
        self.must("authority", d.AppointSolr("failed-supplier", "solr-supplier"))

    def enable_contingency(self, days: int = 30) -> None:
        until = self.clock.now() + dt.timedelta(days=days)
        self.must("authority", d.EnableContingency("failed-supplier", self.actor("srp_sc").user_id, until))

    def submit_adt(self, thresholds: dict[str, int] | None = None, window_seconds: int = 3600) -> None:
        self.must("srp_aro", d.SubmitAdt("failed-supplier", window_seconds, thresholds or {"1.6": 50}))

    def contingency_ready(self) -> None:
        self.fail_supplier()
        self.enable_contingency()
        self.submit_adt()

    def confirm_takeover(self) -> None:
        self.must(
            "solr_is",
            d.ConfirmTakeover("failed-supplier", "meter estate incl. prepayment", "staff available", "SRP supports",
                              "no device issues", "four weeks"),
        )


def matrix_rows(shared_matrix: Path | None) -> list[dict[str, object]]:
    import json

    if shared_matrix is not None and shared_matrix.is_file():
        rows: list[dict[str, object]] = json.loads(shared_matrix.read_text())
        return rows
    return MINIMAL_MATRIX


def make_scenario(world_dir: Path, *, use_real_matrix: bool = True) -> Scenario:
    world = open_world(world_dir)
    clock = FixedClock(START)
    matrix = world.config.policy.eligibility_matrix if use_real_matrix else None
    config = world.policy_config(Eligibility.from_rows(matrix_rows(matrix), world.config.policy.sc_allowed_srvs))
    return Scenario(world, clock, config, initial_state(world.manifest), world.verifier(clock))


def point_response_urls(world: Path, port: int) -> None:
    """Rewrites the world's manifest so that every user with a response_url gets its deliveries
    at ``http://127.0.0.1:{port}/receive/{actor name}`` (a test's receiver)."""
    manifest_file = world / "manifest.json"
    raw = json.loads(manifest_file.read_text())
    for name, actor in raw["actors"].items():
        if actor.get("response_url"):
            actor["response_url"] = f"http://127.0.0.1:{port}/receive/{name}"
    manifest_file.write_text(json.dumps(raw))
