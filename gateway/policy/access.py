"""The policy's stateful face: current registry state, request decisions, directives.

:class:`AccessControl` owns the current :class:`RegistryState` (rebuilt at
start-up by replaying the stored directives), asks the pure
:func:`authorise` for the static checks, lets the store decide replay and
anomaly detection atomically, and records every decision in the audit log.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass

from gateway.clock import Clock
from gateway.codes import ResponseCode
from gateway.eui64 import Eui64
from gateway.gbcs.readdress import VectorAnswers
from gateway.policy import directives as d
from gateway.policy import solr
from gateway.policy import critical
from gateway.policy.commands import device_command
from gateway.policy.authorise import SIGNED_PRE_COMMAND_FORMS, TRANSFORM, Admissible, PolicyConfig, Refusal, authorise
from gateway.policy.state import RegistryState, User
from gateway.smki.certificate import SmkiCertificate
from gateway.smki.repository import SmkiRepository
from gateway.stages import StageTimers, now_ns
from gateway.store.base import (
    Admission,
    AdmissionRequest,
    AuditEntry,
    DeviceCommand,
    DirectiveRecord,
    IssuedPreCommand,
    QuarantinedRequest,
    QuarantineStatus,
    Store,
)
from gateway.verify.documents import VerifiedDirective, VerifiedRequest

_ADMISSION_CODES = {
    Admission.ACCEPTED: ResponseCode.I99,
    Admission.REPLAY: ResponseCode.E40,
    Admission.QUARANTINED: ResponseCode.E43,
}

_STALE_RETRIES = 5
"""How often a decision is taken again on a refreshed registry before giving up (several workers)."""


class RegistryContention(RuntimeError):
    """The registry kept changing under a decision (other workers storing directives without pause)."""


PRECOMMAND_LIFETIME = dt.timedelta(hours=24)
"""How long an issued Pre-Command waits for its signed return (CV5)."""
SIMULATOR_LIMIT = "simulator-limit"
"""The audit outcome (and problem check) of a valid request the simulator cannot serve."""


@dataclass(frozen=True, slots=True)
class RequestDecision:
    code: ResponseCode
    reason: str
    admissible: Admissible | None = None
    quarantine_event_ref: int | None = None
    pre_command: bytes | None = None
    """CV4: the issued GBCS Pre-Command (the answer is I0 with it)."""
    signed_pre_command: bytes | None = None
    """CV5: the signed APDU to forward to the meter."""


@dataclass(frozen=True, slots=True)
class DirectiveDecision:
    accepted: bool
    reason: str
    directive_id: str
    name: str
    released: QuarantinedRequest | None = None
    """A quarantined request the user released: the service now forwards it."""


class AccessControl:
    """Decides Service Requests and directives against the current state; records each decision."""

    def __init__(
        self,
        *,
        state: RegistryState,
        store: Store,
        config: PolicyConfig,
        clock: Clock,
        repository: SmkiRepository,
        vectors: VectorAnswers | None = None,
        stages: StageTimers | None = None,
    ) -> None:
        """``vectors``: the RTDS vectors CV4 Pre-Commands of SRVs other than 1.6 are made from;
        ``stages``: where the CPU of deciding is counted ("policy")."""
        self._vectors = vectors
        self._stages = stages if stages is not None else StageTimers()
        self._state = state
        self._store = store
        self._config = config
        self._clock = clock
        self._repository = repository
        self._solr_limits = solr.Limits(config.contingency_max_days)
        self._version = 0
        """The sequence of the last stored directive folded into ``_state``."""

    @classmethod
    async def restore(
        cls,
        *,
        initial: RegistryState,
        store: Store,
        config: PolicyConfig,
        clock: Clock,
        repository: SmkiRepository,
        vectors: VectorAnswers | None = None,
        stages: StageTimers | None = None,
    ) -> AccessControl:
        """Replays every accepted directive onto ``initial``: the state the store's log implies."""
        access = cls(
            state=initial, store=store, config=config, clock=clock, repository=repository, vectors=vectors,
            stages=stages,
        )
        await access.refresh()
        return access

    async def refresh(self) -> int:
        """Folds in the directives stored since the last look (by this or another worker); returns how many."""
        count = 0
        async for record in self._store.directives(self._version):
            if record.accepted:
                self._replay(record)
            self._version = record.sequence
            count += 1
        return count

    @property
    def state(self) -> RegistryState:
        return self._state

    # --- Service Requests ----------------------------------------------------------

    async def decide_request(self, request: VerifiedRequest, raw: bytes) -> RequestDecision:
        """Static checks, then the store's replay/anomaly admission, or for CV5 the issued Pre-Command.

        An admission the store finds was decided on an out-of-date registry (another worker
        stored a directive meanwhile) is decided again on the refreshed one.
        """
        for _ in range(_STALE_RETRIES):
            decision = await self._decide_request(request, raw)
            if decision is not None:
                return decision
            await self.refresh()
        raise RegistryContention(f"the registry changed under {_STALE_RETRIES} decisions of {request.request_id}")

    async def _decide_request(self, request: VerifiedRequest, raw: bytes) -> RequestDecision | None:
        started = now_ns()
        now = self._clock.now()
        verdict = authorise(self._state, request, self._config, now)
        if isinstance(verdict, Refusal):
            self._stages.since("policy", started)
            return await self._refuse(request, now, verdict.code, verdict.reason, {"step": verdict.step})
        try:
            if request.command_variant in SIGNED_PRE_COMMAND_FORMS:
                self._stages.since("policy", started)
                return await self._accept_signed_precommand(request, verdict, now)
            pre_command = None
            if request.command_variant == TRANSFORM and verdict.device is not None:
                pre_command = critical.issue_precommand(request, verdict.device, self._vectors, now).encode()
        except critical.CriticalFlowError as error:
            self._stages.since("policy", started)
            return await self._refuse(request, now, error.code, error.reason, {"step": "critical-flow"})
        except critical.SimulatorLimit as limit:
            self._stages.since("policy", started)
            await self._store.append_audit(
                _request_audit(request, now, SIMULATOR_LIMIT, str(limit), {"step": "critical-flow"})
            )
            raise
        admission = AdmissionRequest(
            originator=request.originator,
            target=request.target,
            counter=request.request_id.counter,
            request_id=str(request.request_id),
            user_id=verdict.user.user_id,
            service_reference_variant=verdict.variant.variant,
            at=now,
            adt_window_seconds=verdict.adt_window_seconds,
            adt_threshold=verdict.adt_threshold,
            raw_request=raw,
            audit=_request_audit(request, now, ResponseCode.I99, "", _admissible_detail(verdict)),
            command=None if pre_command is not None else device_command(request, now),
            registry_version=self._version,
            precommand=None if pre_command is None or verdict.device is None else IssuedPreCommand(
                device_id=verdict.device.device_id,
                apdu=pre_command,
                expires_at=now + PRECOMMAND_LIFETIME,
                audit=_request_audit(request, now, ResponseCode.I0, "Pre-Command issued", {"apdu": pre_command.hex()}),
            ),
        )
        self._stages.since("policy", started)
        return await self._admit(request, admission, verdict)

    async def _admit(self, request: VerifiedRequest, admission: AdmissionRequest, verdict: Admissible) -> RequestDecision | None:
        """The store's decision; a CV4's Pre-Command is remembered in the admission's transaction."""
        result = await self._store.admit(admission)
        if result.admission is Admission.STALE_REGISTRY:
            return None
        code = _ADMISSION_CODES[result.admission]
        reason = _admission_reason(result.admission, request, result.last_counter, verdict)
        if result.admission is not Admission.ACCEPTED or admission.precommand is None:
            return RequestDecision(code, reason, verdict, result.quarantine_event_ref)
        pre_command = admission.precommand.apdu
        return RequestDecision(ResponseCode.I0, "Pre-Command issued: sign it and return it with CV5", verdict, pre_command=pre_command)

    async def _accept_signed_precommand(
        self, request: VerifiedRequest, verdict: Admissible, now: dt.datetime
    ) -> RequestDecision:
        returned = critical.signed_precommand_payload(request)
        pending = await self._store.take_precommand(str(request.request_id), verdict.user.user_id, now)
        if pending is None:
            raise critical.CriticalFlowError(
                ResponseCode.E42, "no Pre-Command was issued for this RequestID (or it was used or has expired)"
            )
        signed = critical.check_signed_precommand(pending.apdu, returned, verdict.role)
        reason = "Signed Pre-Command accepted and queued for the device"
        detail = {**_admissible_detail(verdict), "message_code": f"{signed.message_code:#06x}"}
        command = device_command(request, now, signed_pre_command=returned)
        await self._store.queue_command(command, _request_audit(request, now, ResponseCode.I99, reason, detail))
        return RequestDecision(ResponseCode.I99, reason, verdict, signed_pre_command=returned)

    async def _refuse(
        self, request: VerifiedRequest, now: dt.datetime, code: ResponseCode, reason: str, detail: dict[str, object]
    ) -> RequestDecision:
        await self._store.append_audit(_request_audit(request, now, code, reason, detail))
        return RequestDecision(code, reason)

    async def record(self, request: VerifiedRequest, code: ResponseCode, reason: str, step: str) -> None:
        """Audits a decision taken outside the policy (e.g. E13: request type vs URL)."""
        await self._store.append_audit(_request_audit(request, self._clock.now(), code, reason, {"step": step}))

    # --- directives ------------------------------------------------------------------

    async def decide_directive(
        self, verified: VerifiedDirective, directive: d.Directive, *, release: DeviceCommand | None = None
    ) -> DirectiveDecision:
        """Applies a verified directive once; a repeated DirectiveID gets the stored answer (idempotent).

        ``release``: for a release of a quarantined request, the command it carries to its
        device (None when its bytes no longer verify), queued with the release.
        The decision is taken on the registry as stored now, whichever worker stored it.
        """
        directive_id = str(verified.directive_id)
        name = d.command_name(directive)
        stored = await self._store.find_directive(directive_id)
        if stored is not None:
            return DirectiveDecision(stored.accepted, stored.reason, directive_id, stored.name)
        await self.refresh()
        now = self._clock.now()
        issuer = self._state.user(verified.signer.eui64) if verified.signer.eui64 else None
        released = None
        if issuer is None:
            outcome = solr.Outcome(False, f"{verified.signer.eui64} is not a registered actor", self._state)
        elif isinstance(directive, d.QUARANTINE_DIRECTIVES):
            outcome, released = await self._settle_quarantine(directive, issuer, now, release)
        else:
            outcome = solr.decide(self._state, directive, issuer, now, self._solr_limits)
        record = DirectiveRecord(
            sequence=0,
            directive_id=directive_id,
            actor=str(verified.signer.eui64),
            name=name,
            arguments=d.arguments(directive),
            decided_at=now,
            accepted=outcome.accepted,
            reason=outcome.reason,
        )
        audit = AuditEntry(
            at=now,
            kind="directive",
            actor=str(verified.signer.eui64),
            subject=directive_id,
            outcome="accepted" if outcome.accepted else "refused",
            reason=outcome.reason,
            detail={"directive": name, "arguments": d.arguments(directive)},
        )
        stored = await self._store.append_directive(record, audit)
        ours = stored == dataclasses.replace(record, sequence=stored.sequence)
        # The state moves on only by replaying the log, ours included: every worker then folds
        # the same records in the same order, whoever decided them.
        await self.refresh()
        return DirectiveDecision(stored.accepted, stored.reason, directive_id, stored.name, released if ours else None)

    async def _settle_quarantine(
        self,
        directive: d.ReleaseQuarantine | d.DeleteQuarantine,
        issuer: User,
        now: dt.datetime,
        command: DeviceCommand | None,
    ) -> tuple[solr.Outcome, QuarantinedRequest | None]:
        refusal = solr.check_issuer(self._state, directive, issuer)
        if refusal is not None:
            return solr.Outcome(False, refusal, self._state), None
        release = isinstance(directive, d.ReleaseQuarantine)
        status = QuarantineStatus.RELEASED if release else QuarantineStatus.DELETED
        audit = AuditEntry(
            at=now,
            kind="quarantine-" + status.value,
            actor=str(issuer.user_id),
            subject=str(directive.event_ref),
            outcome=status.value,
            reason=f"quarantined request {directive.event_ref} {status.value} by its user",
        )
        settled = await self._store.settle_quarantine(
            directive.event_ref, issuer.user_id, status, audit, command if release else None
        )
        if settled is None:
            reason = f"no held quarantined request {directive.event_ref} of {issuer.user_id}"
            return solr.Outcome(False, reason, self._state), None
        reason = f"quarantined request {settled.request_id} {status.value}"
        return solr.Outcome(True, reason, self._state), settled if release else None

    async def held_request(self, event_ref: int, user_id: Eui64) -> QuarantinedRequest | None:
        """That user's quarantined request ``event_ref`` while it is still HELD."""
        for held in await self._store.quarantined(user_id):
            if held.event_ref == event_ref and held.status is QuarantineStatus.HELD:
                return held
        return None

    def revocation_delayed(self, certificate: SmkiCertificate, now: dt.datetime) -> bool:
        """MP134A: a PMA delay keeps the failed supplier's certificates usable while it is in force."""
        user = self._state.user(certificate.eui64) if certificate.eui64 else None
        event = self._state.events.get(user.party) if user else None
        delay = event.revocation_delay if event else None
        return delay is not None and delay.in_force(now)

    # --- internals ---------------------------------------------------------------------

    def _replay(self, record: DirectiveRecord) -> None:
        directive = d.from_arguments(record.name, {k: str(v) for k, v in record.arguments.items()})
        if isinstance(directive, d.QUARANTINE_DIRECTIVES):
            return  # their effect lives in the store's quarantine table
        issuer = self._state.user(Eui64.parse(record.actor))
        if issuer is None:
            return
        outcome = solr.decide(self._state, directive, issuer, record.decided_at, self._solr_limits)
        if outcome.accepted:
            self._commit(outcome, record.decided_at)

    def _commit(self, outcome: solr.Outcome, at: dt.datetime) -> None:
        self._state = outcome.state
        for user_id in outcome.revoke_users:
            self._repository.revoke_subject(user_id, at)


def _request_audit(
    request: VerifiedRequest, now: dt.datetime, code: ResponseCode | str, reason: str, detail: dict[str, object]
) -> AuditEntry:
    """``code``: the DUIS code answered, or :data:`SIMULATOR_LIMIT`."""
    return AuditEntry(
        at=now,
        kind="request",
        actor=str(request.originator),
        subject=str(request.request_id),
        outcome=code.value if isinstance(code, ResponseCode) else code,
        reason=reason,
        detail={
            "srv": request.service_reference_variant,
            "cv": request.command_variant,
            "target": str(request.target),
            **detail,
        },
    )


def _admissible_detail(verdict: Admissible) -> dict[str, object]:
    return {
        "role": verdict.role,
        "acting_for": verdict.acting_for,
        "adt_window_seconds": verdict.adt_window_seconds,
        "adt_threshold": verdict.adt_threshold,
    }


def _admission_reason(admission: Admission, request: VerifiedRequest, last: int | None, verdict: Admissible) -> str:
    if admission is Admission.REPLAY:
        return f"RequestID counter {request.request_id.counter} is not greater than {last}, the last accepted"
    if admission is Admission.QUARANTINED:
        return (
            f"quarantined: more than {verdict.adt_threshold} SRV {verdict.variant.variant} requests "
            f"within {verdict.adt_window_seconds} s (anomaly detection threshold)"
        )
    return "accepted and queued for the device"

