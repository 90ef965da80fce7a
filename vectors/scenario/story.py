"""Policy, replay and acceptance vectors: the SoLR story as one ordered run against a live gateway.

The catalogue (:mod:`vectors.catalogue`) tests authentication: every
vector there is judged alone. What MP134B asks of the SoLR Contingency role
(``SC``) depends on *state*: whether a supplier has failed, whether the
Authority enabled the role, whether an ARO submitted an ADT file, whether the
MPIDs have moved. So these vectors are a scenario: signed directives posted to
``/api/v1/admin`` build that state on the live gateway, step by step, and the
Service Requests in between expect the exact DUIS code the policy gives at
that point (``gateway/policy/authorise.py``, ``critical.py``, the store's
replay and anomaly rules). Each sidecar names the directives it relies on.

Categories:

``directive``  the state changes (expected accepted) and directives MP134B or
               MP134A part 2 forbid (expected refused);
``policy``     a negative vector per MP134B requirement R1-R6 (R7, alert routing,
               has no request to send: see docs/TRACEABILITY.md for its tests);
``replay``     E40 for a resent request, a lower counter, a malleated signature,
               other content under a used counter; E42 for a Signed Pre-Command
               sent twice;
``accepted``   requests the policy must accept (I99, and I0 for CV4), so a false
               reject shows up as a mismatch.

Requirements on the run (documented in ``suite.json`` too):

* a **fresh store** from ``dcc-gateway init`` + ``dcc-gateway serve``: directives
  are idempotent by DirectiveID, but accepted requests consume RequestID
  counters, so a second run against the same store meets E40 where it expects
  I99 (regenerate into a new world, or delete ``store.db``, to run again);
* the gateway's clock close to the generator's (the system clock): the
  enablement ends 85 days after generation and must still be in the future.

The story is told in four acts (:func:`build_policy_vectors`), each a list of
steps laid out by :class:`~vectors.scenario.steps.ScenarioSteps`.
"""

from __future__ import annotations

import base64
import datetime as dt

from lxml import etree

from gateway.namespaces import DS
from gateway.policy import directives as d
from vectors.catalogue.tooling import P256_ORDER, encode_base64, raw_signature, to_bytes
from vectors.scenario.replay_plan import CounterSource
from vectors.scenario.steps import (
    ACCEPTED,
    ADT_WINDOW_SECONDS,
    BEYOND_LIMIT_DAYS,
    ENABLEMENT_DAYS,
    POLICY,
    REPLAY,
    SERVICE_D,
    SERVICE_T,
    ScenarioSteps,
    StatefulVector,
    prepayment,
    switch_form,
)
from vectors.scenario.world import (
    AUTHORITY,
    DCC_OPERATOR,
    FAILED_GS,
    FAILED_IS,
    PMA,
    SOLR_IS,
    SRP_ARO,
    SRP_SC,
    SRP_SRO,
    ScenarioWorld,
    ds_key,
)

MP134B = "MP134B business requirement"
MP134A2 = "MP134A part 2 (seed 001)"
SPEC5 = "SPEC §5"
SPEC6 = "SPEC §6 (directives)"


def build_policy_vectors(world: ScenarioWorld, counters: CounterSource, now: dt.datetime) -> list[StatefulVector]:
    """The scenario, in run order. ``now`` (the generator's clock) fixes the enablement's end."""
    s = ScenarioSteps(world, counters, now)
    _before_the_failure(s)
    _the_failure(s)
    _contingency_enabled(s)
    _takeover(s)
    return s.finish()


def _r(number: int, text: str) -> str:
    return f"{MP134B} R{number} ({text}); {SPEC5}"


def _before_the_failure(s: ScenarioSteps) -> None:
    w = s.world
    gs_form = switch_form(w.gs_second)
    counter = s.counters.next()
    first = s.request(
        "accepted-supplier-gs-smets1-credit", ACCEPTED, FAILED_GS, w.gsme1.device_id, "I99", counter=counter,
        description=f"{w.failed}'s GS user switches its own SMETS1 GSME to Credit (CV1) before any failure: "
        "an ordinary supplier request the policy must accept.",
        reference=f"{SPEC5} (I99); DUIS SR 1.6 (eligible roles IS, GS)",
    )
    s.send("replay-identical-request", REPLAY, first, "E40",
           description="The same signed bytes as accepted-supplier-gs-smets1-credit, sent again.",
           reference=f"{SPEC5} (E40); THREAT_MODEL.md (replay)", relies_on=("accepted-supplier-gs-smets1-credit",))
    s.send("replay-malleated-signature", REPLAY, _malleated(first), "E40",
           description="accepted-supplier-gs-smets1-credit again with its ECDSA signature malleated to (r, n-s): "
           "still a valid signature over the same SignedInfo, new bytes; replay protection keys on the counter.",
           reference="README 'Signature profile' (ECDSA malleability); DOMAIN.md pitfalls; SPEC §5 (E40)",
           relies_on=("accepted-supplier-gs-smets1-credit",))
    s.request("replay-same-counter-other-content", REPLAY, FAILED_GS, w.gsme1.device_id, "E40",
              body=prepayment(), counter=counter,
              description="A freshly signed, different request (Prepayment) under the RequestID counter "
              "accepted-supplier-gs-smets1-credit used: the counter, not the content, decides.",
              reference=f"{SPEC5} (E40)", relies_on=("accepted-supplier-gs-smets1-credit",))
    s.request("replay-lower-counter", REPLAY, FAILED_GS, w.gsme1.device_id, "E40", counter=counter - 1,
              description="A freshly signed request with a counter one below the one accepted-supplier-gs-smets1-"
              "credit used (for the same originator and target).",
              reference=f"{SPEC5} (E40: not greater than the last accepted)",
              relies_on=("accepted-supplier-gs-smets1-credit",))
    s.request("accepted-counter-is-per-target", ACCEPTED, FAILED_GS, w.gs_second.device_id, gs_form[2],
              cv=gs_form[0], endpoint=gs_form[1], counter=counter,
              description=f"The counter accepted-supplier-gs-smets1-credit used, to another GSME "
              f"(SMETS{w.gs_second.smets}, CV{gs_form[0]}): counters are per (originator, target), so it is accepted.",
              reference=f"{SPEC5} (E40 is per originator and target); DOMAIN.md 'DUIS messages' (RequestID)",
              relies_on=("accepted-supplier-gs-smets1-credit",))
    s.request("policy-r6-sc-before-any-supplier-failure", POLICY, SRP_SC, w.esme1.device_id, "E3",
              description="The SRP's SC user switches a SMETS1 ESME of the supplier to Credit while that supplier "
              "is still trading: no failure, no Authority instruction.",
              reference=_r(6, "only on a supplier failure and on the Authority's instruction"))
    s.direct("directive-r6-enable-before-failure-refused", AUTHORITY,
             d.EnableContingency(w.failed, w.user(SRP_SC), s.now + dt.timedelta(days=ENABLEMENT_DAYS)),
             accepted=False, description=f"The Authority enables the SC role for {w.failed} before its licence "
             "is revoked: there is no supplier failure to act on.",
             reference=f"{MP134B} R6; {SPEC6}")


def _the_failure(s: ScenarioSteps) -> None:
    w = s.world
    sc = w.user(SRP_SC)
    s.direct("directive-revoke-licence", AUTHORITY, d.RevokeLicence(w.failed), accepted=True,
             description=f"The Authority revokes {w.failed}'s licence.", reference=f"{SPEC6}; DOMAIN.md 'The SoLR problem'")
    s.direct("directive-r6-enable-before-solr-appointed-refused", AUTHORITY,
             d.EnableContingency(w.failed, sc, s.now + dt.timedelta(days=ENABLEMENT_DAYS)), accepted=False,
             description="The Authority enables the SC role before appointing a SoLR: the 90 days run from the "
             "appointment, so there is nothing to bound the enablement by.",
             reference=f"{MP134B} R6; {MP134A2} (SRP arrangements end within 90 days of the SoLR date); {SPEC6}")
    s.direct("directive-appoint-solr", AUTHORITY, d.AppointSolr(w.failed, w.solr), accepted=True,
             description=f"The Authority appoints {w.solr} SoLR for {w.failed}.", reference=SPEC6)
    s.request("policy-r6-sc-before-authority-enablement", POLICY, SRP_SC, w.esme1.device_id, "E3",
              description="SC switches a SMETS1 ESME of the failed supplier to Credit after the failure and the "
              "SoLR appointment, but before the Authority enabled the role.",
              reference=_r(6, "upon specific instruction from the Authority"))
    s.direct("directive-r6-enable-by-pma-refused", PMA,
             d.EnableContingency(w.failed, sc, s.now + dt.timedelta(days=ENABLEMENT_DAYS)), accepted=False,
             description="The SMKI PMA, not the Authority, tries to enable the SC role.",
             reference=f"{MP134B} R6 (on the Authority's instruction); {SPEC6} (authority: enable-contingency)")
    s.direct("directive-enable-beyond-90-days-refused", AUTHORITY,
             d.EnableContingency(w.failed, sc, s.now + dt.timedelta(days=BEYOND_LIMIT_DAYS)), accepted=False,
             description=f"An enablement ending {BEYOND_LIMIT_DAYS} days after generation: more than 90 days after "
             "the SoLR appointment (valid while the suite is run within 110 days of generation).",
             reference=f"{MP134A2}; {SPEC6} (at most 90 days after the SoLR appointment)")
    s.direct("directive-r1-enable-non-sc-user-refused", AUTHORITY,
             d.EnableContingency(w.failed, w.user(FAILED_IS), s.now + dt.timedelta(days=ENABLEMENT_DAYS)),
             accepted=False, description="The Authority enables the failed supplier's own IS user: only a user "
             "registered in the SoLR Contingency role can be enabled.",
             reference=f"{MP134B} R1 (a new User Role); {SPEC6}")
    s.direct("directive-enable-contingency", AUTHORITY,
             d.EnableContingency(w.failed, sc, s.now + dt.timedelta(days=ENABLEMENT_DAYS)), accepted=True,
             description=f"The Authority enables the SRP's SC user for {w.failed} until {ENABLEMENT_DAYS} days after "
             "generation (the suite must run before then).", reference=f"{MP134B} R6; {SPEC6}")
    s.request("policy-r4-sc-without-adt-file", POLICY, SRP_SC, w.esme1.device_id, "E4",
              description="SC, enabled, switches a SMETS1 ESME of the failed supplier to Credit before any ARO "
              "submitted an ADT file for that supplier.",
              reference=_r(4, "ADT files allow the role to reach a specific supplier's devices"))
    s.direct("directive-r4-submit-adt-by-sro-refused", SRP_SRO,
             d.SubmitAdt(w.failed, ADT_WINDOW_SECONDS, {"1.6": 1}), accepted=False,
             description="The SRP's SRO, not an ARO, submits the ADT file.",
             reference=f"{MP134B} R4 (AROs submit ADT files); {SPEC6} (submit-adt by an ARO)")
    s.direct("directive-r4-create-aro-by-aro-refused", SRP_ARO, d.CreateAro(w.new_aro, "second ARO"), accepted=False,
             description="An ARO tries to create another ARO: only the SRO may.",
             reference=f"{MP134B} R4 (create AROs and SROs); {SPEC6} (create-aro by the SRO)")
    s.direct("directive-r4-create-aro-by-sro", SRP_SRO, d.CreateAro(w.new_aro, "second ARO"), accepted=True,
             description=f"The SRP's SRO makes {w.new_aro} an ARO.",
             reference=f"{MP134B} R4 (parties in the role create AROs and SROs); {SPEC6}")
    s.submit_adt("directive-r4-submit-adt", f"The SRP's ARO submits the ADT file for {w.failed}.",
                 f"{MP134B} R4; {SPEC6}; DOMAIN.md 'Anomaly detection'")


def _contingency_enabled(s: ScenarioSteps) -> None:
    """The role enabled and an ADT file in force: SC outside its remit, then within it, then beyond its ADT file."""
    _sc_outside_its_remit(s)
    _sc_switches_meters_to_credit(s)
    _sc_returns_other_signed_precommands(s)
    s.quarantine_next("policy-r4-sc-over-adt-threshold", s.world.esme1.device_id,
                      description="SC's next SR 1.6 Credit to a SMETS1 ESME after as many admitted SC requests as the "
                      "ARO's ADT threshold allows: quarantined (a DCC alert AD1 follows).",
                      reference=_r(4, "ADT files") + " (E43); DOMAIN.md 'Anomaly detection'")


def _sc_outside_its_remit(s: ScenarioSteps) -> None:
    """One refusal per MP134B rule the enabled role could still break: SRVs, officers, content, meters."""
    w = s.world
    solr_form = switch_form(w.solr_device)
    for srv, why in (("4.1.1", "a read (Read Instantaneous Import Registers)"),
                     ("1.1.2", "another critical SR (Update Import Tariff, Secondary Element)")):
        s.request(f"policy-r3-sc-srv-{srv.replace('.', '-')}", POLICY, SRP_SC, w.esme1.device_id, "E2", srv=srv,
                  description=f"SC, enabled with an ADT file, sends SRV {srv}, {why}, to a SMETS1 ESME of the failed "
                  "supplier: outside its allow-list.",
                  reference=_r(3, "only SR 1.6 Update Payment Mode; the list is configuration"))
    s.request("policy-r3-sc-non-device-srv-8-2", POLICY, SRP_SC, w.dcc, "E2", srv="8.2", cv=8, endpoint=SERVICE_D,
              description="SC, enabled with an ADT file, sends the non-device SRV 8.2 (CV8, to the DCC): outside "
              "its allow-list.", reference=_r(3, "only SR 1.6 Update Payment Mode"))
    s.request("policy-r1-officer-has-no-duis-role", POLICY, SRP_ARO, w.esme1.device_id, "E1",
              description="The SRP's ARO, an officer with an xmlSign key but no DUIS User Role, sends SR 1.6: "
              "only the SC user acts in the role.",
              reference=f"{MP134B} R1 (a User Role as defined in DUIS) and R4 (officers submit ADT files); {SPEC5} (E1)")
    s.request("policy-r5-sc-smets1-prepayment", POLICY, SRP_SC, w.esme1.device_id, "E41", body=prepayment(),
              description="SC, enabled with an ADT file, sets a SMETS1 ESME of the failed supplier to Prepayment.",
              reference=_r(5, "Service Request content for SMETS1: payment mode to Credit only"))
    s.request("policy-r5-sc-smets2-cv4-prepayment", POLICY, SRP_SC, w.esme2.device_id, "E41", body=prepayment(),
              cv=4, endpoint=SERVICE_T,
              description="SC asks for a Prepayment Pre-Command (CV4) for a SMETS2 ESME of the failed supplier.",
              reference=_r(5, "payment mode to Credit only"))
    s.request("policy-r5-sc-smets2-by-cv1", POLICY, SRP_SC, w.esme2.device_id, "E12",
              description="SC sends SR 1.6 Credit to a SMETS2 ESME as CV1: for SMETS2 the content is checked in the "
              "Signed Pre-Command, so the command must go CV4 then CV5.",
              reference=f"{MP134B} R5 (Signed Pre-Command for SMETS2+); {SPEC5} (E12)")
    s.request("policy-r4-sc-device-of-the-solr", POLICY, SRP_SC, w.solr_device.device_id, "E4",
              cv=solr_form[0], endpoint=solr_form[1],
              description=f"SC switches a meter of the SoLR {w.solr} (SMETS{w.solr_device.smets}) to Credit: not "
              "registered to the failed supplier it was enabled for.",
              reference=_r(4, "devices registered to a specific supplier"))


def _sc_switches_meters_to_credit(s: ScenarioSteps) -> None:
    """What the role is for, on both fuels and generations, and the same requests replayed."""
    w = s.world
    s.request("accepted-sc-smets1-esme-credit", ACCEPTED, SRP_SC, w.esme1.device_id, "I99",
              description="SC, enabled with an ADT file, switches a SMETS1 ESME of the failed supplier to Credit (CV1).",
              reference=f"{MP134B} R3, R5; {SPEC5} (I99)")
    accepted_sc = s.vectors[-1]
    s.request("accepted-sc-smets1-gsme-credit", ACCEPTED, SRP_SC, w.gsme1.device_id, "I99",
              description="SC switches a SMETS1 GSME of the failed supplier to Credit (CV1): the role covers both fuels.",
              reference=f"{MP134B} R3, R5; {SPEC5} (I99)")
    _, esme_cv5 = s.switch_to_credit_smets2(
        "accepted-sc-smets2-esme", w.esme2, FAILED_IS, category=ACCEPTED,
        description="SC switches a SMETS2 ESME of the failed supplier to Credit.", reference=f"{MP134B} R2, R5; {SPEC5}")
    s.switch_to_credit_smets2(
        "accepted-sc-smets2-gsme", w.gsme2, FAILED_GS, category=ACCEPTED,
        description="SC switches a SMETS2 GSME of the failed supplier to Credit.", reference=f"{MP134B} R2, R5; {SPEC5}")
    s.send("replay-sc-identical-request", REPLAY, accepted_sc.data, "E40",
           description="accepted-sc-smets1-esme-credit's signed bytes sent again.",
           reference=f"{SPEC5} (E40)", relies_on=(accepted_sc.id,))
    s.send("replay-sc-signed-precommand-again", REPLAY, esme_cv5, "E42", actor=SRP_SC, cv=5,
           description="accepted-sc-smets2-esme-cv5 sent again: an issued Pre-Command is taken by the first CV5 "
           "that returns it, so the second finds none.",
           reference=f"{SPEC5} (E42: not the Pre-Command issued for that RequestID)",
           relies_on=("accepted-sc-smets2-esme-cv5",))


def _sc_returns_other_signed_precommands(s: ScenarioSteps) -> None:
    """CV5s that return something other than the Pre-Command issued: each needs its own CV4 (a CV5 takes it,
    right or wrong)."""
    w = s.world
    agent_key = ds_key(w.actors[FAILED_IS])
    counter = s.ask_for_precommand(
        "accepted-sc-cv4-for-prepayment-signed-precommand", w.esme2,
        description="SC asks for a Credit Pre-Command (CV4) for a SMETS2 ESME; "
        "policy-r5-sc-signed-precommand-sets-prepayment returns something else under this RequestID.",
        reference=f"{MP134B} R5; {SPEC5} (I0)")
    prepay = s.precommand(w.esme2, counter, to_credit=False)
    prepay = prepay.with_signature(raw_signature(agent_key, prepay.signed_part()))
    s.send("policy-r5-sc-signed-precommand-sets-prepayment", POLICY, s.signed_precommand(w.esme2, counter, prepay.encode()),
           "E42", actor=SRP_SC, cv=5,
           description="SC returns, under the RequestID of a Credit Pre-Command, a signed ECS03 (0x001B, set ESME "
           "to Prepayment) APDU. It is not the Pre-Command issued, which refuses it first; the role's message-code "
           "rule (0x001A/0x006C only) is the second line, since CV4 never issues SC a Prepayment Pre-Command (E41).",
           reference=_r(5, "Signed Pre-Command for SMETS2+: only ECS02 0x001A / GCS02 0x006C"),
           relies_on=(*s.state, "accepted-sc-cv4-for-prepayment-signed-precommand"))
    counter = s.ask_for_precommand(
        "accepted-sc-cv4-for-unsigned-return", w.esme2,
        description="SC asks for a Credit Pre-Command (CV4) for a SMETS2 ESME; "
        "policy-r2-sc-returns-precommand-unsigned returns it without a signature.",
        reference=f"{MP134B} R5; {SPEC5} (I0)")
    s.send("policy-r2-sc-returns-precommand-unsigned", POLICY,
           s.signed_precommand(w.esme2, counter, s.precommand(w.esme2, counter).encode()), "E42", actor=SRP_SC, cv=5,
           description="SC returns the issued Credit Pre-Command unsigned: the role has no Digital Signing key of "
           "its own, and a critical command goes to the meter only signed (by the key the SRP holds as agent).",
           reference=_r(2, "xmlSign certificates, no Digital Signing keys for critical commands"),
           relies_on=(*s.state, "accepted-sc-cv4-for-unsigned-return"))
    counter = s.counters.next()
    credit_apdu = s.precommand(w.esme2, counter)
    credit_apdu = credit_apdu.with_signature(raw_signature(agent_key, credit_apdu.signed_part()))
    s.send("policy-r5-sc-signed-precommand-never-issued", POLICY,
           s.signed_precommand(w.esme2, counter, credit_apdu.encode()), "E42", actor=SRP_SC, cv=5,
           description="SC sends a signed Credit APDU as CV5 under a RequestID for which no CV4 issued a "
           "Pre-Command: the content check needs the gateway's own Pre-Command.",
           reference=_r(5, "the Signed Pre-Command is checked"))


def _takeover(s: ScenarioSteps) -> None:
    w = s.world
    s.direct("directive-transfer-before-confirmation-refused", DCC_OPERATOR, d.TransferMpids(w.failed, w.solr),
             accepted=False, description="The DCC transfers the failed supplier's MPIDs before the SoLR confirmed "
             "the takeover.", reference=f"{MP134A2} (transfer only after the SoLR's five confirmations); {SPEC6}")
    confirmation = d.ConfirmTakeover(w.failed, "estate incl. prepayment meters enrolled", "staff available",
                                     "SRP keeps the SC user until transfer", "no device issues known", "four weeks")
    s.direct("directive-confirm-takeover-by-authority-refused", AUTHORITY, confirmation, accepted=False,
             description="The Authority, not the SoLR, confirms the takeover.", reference=f"{MP134A2}; {SPEC6}")
    s.direct("directive-confirm-takeover", SOLR_IS, confirmation, accepted=True,
             description=f"{w.solr} confirms the five MP134A part 2 items.", reference=f"{MP134A2}; {SPEC6}")
    s.direct("directive-transfer-mpids", DCC_OPERATOR, d.TransferMpids(w.failed, w.solr), accepted=True,
             description=f"The DCC transfers {w.failed}'s MPIDs to {w.solr}.", reference=f"{MP134A2}; {SPEC6}")
    s.request("policy-r4-sc-after-mpid-transfer", POLICY, SRP_SC, w.esme1.device_id, "E4",
              description="SC, still enabled, switches a SMETS1 ESME to Credit after its MPID moved to the SoLR.",
              reference=_r(4, "devices registered to a specific supplier") + f"; {MP134A2}")
    s.request("policy-failed-supplier-after-mpid-transfer", POLICY, FAILED_GS, w.gsme1.device_id, "E4",
              description="The failed supplier's GS user (certificates not revoked) sends SR 1.6 after the transfer.",
              reference=f"{MP134A2} (requests on the failed supplier's behalf are rejected whatever the "
              f"certificate status); {SPEC5} (E4)")
    s.request("accepted-solr-after-mpid-transfer", ACCEPTED, SOLR_IS, w.esme1.device_id, "I99",
              description=f"The SoLR's IS user switches the transferred SMETS1 ESME to Credit: its MPID is "
              f"{w.solr}'s now.", reference=f"{MP134A2}; {SPEC5} (I99)")
    s.direct("directive-withdraw-contingency", AUTHORITY, d.WithdrawContingency(w.failed, w.user(SRP_SC)),
             accepted=True, description="The Authority withdraws the SC enablement.", reference=f"{MP134B} R6; {SPEC6}")
    s.request("policy-r6-sc-after-withdrawal", POLICY, SRP_SC, w.esme1.device_id, "E3",
              description="SC switches a SMETS1 ESME to Credit after the Authority withdrew its enablement.",
              reference=_r(6, "only upon the Authority's instruction"))


def _malleated(data: bytes) -> bytes:
    """The same document with SignatureValue (r, s) replaced by (r, n - s): another valid ECDSA signature."""
    root = etree.fromstring(data, etree.XMLParser(resolve_entities=False, no_network=True))
    value = root.find(f"{{{DS}}}Signature/{{{DS}}}SignatureValue")
    if value is None or not value.text:
        raise ValueError("no ds:SignatureValue to malleate")
    raw = base64.b64decode(value.text)
    r, s = raw[:32], int.from_bytes(raw[32:], "big")
    value.text = encode_base64(r + (P256_ORDER - s).to_bytes(32, "big"))
    return to_bytes(root)
