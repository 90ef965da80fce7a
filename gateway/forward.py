"""Forward: accepted commands to the simulated meters; results and alerts to the users' endpoints.

* An accepted command (I99) runs on its meter in the background: SR 1.6 from
  the Service Request body (SMETS1) or from the Signed Pre-Command (SMETS2);
  other SRVs are acknowledged by the simulated device without a state change.
  The signed result (I0) goes to the originator's ``response_url`` through the
  durable outbox. Convention: no simulated meter for the target -> E20
  (unreachable); the meter refusing the command (e.g. a signature its trust
  anchor does not verify) -> E21, with the meter's reason in the audit log.
* Meter alerts (low credit, supply disabled, payment mode changed) go to the
  supplier holding the meter's MPID, or, for a failed supplier whose SRP the
  Authority has directed (an active SoLR Contingency enablement), to the SRP's
  SC user (MP134B requirement 7).
* A quarantined request (E43) sends the user a DCC alert AD1.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import logging
from collections.abc import Iterable

from gateway.clock import Clock
from gateway.codes import ResponseCode
from gateway.deliver.outbox import DeliveryWorker
from gateway.devices import MeterAlert, MeterFleet
from gateway.eui64 import Eui64
from gateway.manifest import Manifest
from gateway.namespaces import SR
from gateway.policy.access import AccessControl, RequestDecision
from gateway.policy.authorise import SIGNED_PRE_COMMAND_FORMS
from gateway.respond import documents
from gateway.respond.signer import ResponseSigner
from gateway.store.base import AuditEntry, Delivery, DeliveryKind
from gateway.verify.documents import VerifiedRequest

LOG = logging.getLogger("dcc_gateway.forward")
_UPDATE_PAYMENT_MODE = f"{{{SR}}}UpdatePaymentMode"


class Forwarder:
    def __init__(
        self,
        *,
        fleet: MeterFleet,
        outbox: DeliveryWorker,
        signer: ResponseSigner,
        access: AccessControl,
        manifest: Manifest,
        clock: Clock,
        dsp_user_id: Eui64,
    ) -> None:
        self._fleet = fleet
        self._outbox = outbox
        self._signer = signer
        self._access = access
        self._manifest = manifest
        self._clock = clock
        self._dsp = dsp_user_id
        self._tasks: set[asyncio.Task[None]] = set()
        self._alert_counter = itertools.count(int(clock.now().timestamp() * 1000))

    # --- commands ---------------------------------------------------------------------------

    def forward(self, request: VerifiedRequest, decision: RequestDecision, raw: bytes) -> None:
        """Schedules the command on its meter; the HTTP answer does not wait for the device."""
        if decision.code is ResponseCode.E43 and decision.quarantine_event_ref is not None:
            self._spawn(self._quarantine_alert(request, decision.quarantine_event_ref))
        elif decision.code is ResponseCode.I99:
            self._spawn(self._execute(request, decision))

    async def _execute(self, request: VerifiedRequest, decision: RequestDecision) -> None:
        device = request.target
        if self._fleet.state(device) is None:
            await self._result(request, ResponseCode.E20, f"no simulated meter {device}")
            return
        if request.command_variant in SIGNED_PRE_COMMAND_FORMS and decision.signed_pre_command is not None:
            result = await self._fleet.execute(device, precommand=decision.signed_pre_command)
        elif request.body.tag == _UPDATE_PAYMENT_MODE:
            result = await self._fleet.execute(device, sr_body=request.body, request_id=str(request.request_id))
        else:
            await self._result(request, ResponseCode.I0, f"SRV {request.service_reference_variant} acknowledged by the simulated device")
            return
        code = ResponseCode.I0 if result.ok else ResponseCode.E21
        await self._result(request, code, result.detail)
        await self.route_alerts(result.alerts)

    async def _result(self, request: VerifiedRequest, code: ResponseCode, detail: str) -> None:
        now = self._clock.now()
        if code is ResponseCode.I0:
            body = self._signer.device_result(request, now)
        else:
            body = self._signer.answer(request, code, now)
        audit = AuditEntry(now, "device-result", str(request.target), str(request.request_id), code.value, detail)
        await self._deliver(request.originator, body, DeliveryKind.RESPONSE, str(request.request_id), audit)

    # --- alerts -------------------------------------------------------------------------------

    async def route_alerts(self, alerts: Iterable[MeterAlert]) -> None:
        for alert in alerts:
            for recipient in self.alert_recipients(alert.device_id):
                response_id = f"{alert.device_id}:{recipient}:{next(self._alert_counter)}"
                root = documents.device_alert(
                    response_id=response_id,
                    alert_code=alert.alert_code,
                    gbcs_payload=alert.alert_code.to_bytes(2, "big") + alert.detail.encode()[:200],
                    at=alert.at,
                )
                audit = AuditEntry(
                    self._clock.now(), "device-alert", str(alert.device_id), response_id, alert.kind.value, alert.detail,
                    {"recipient": str(recipient), "alert_code": f"{alert.alert_code:04X}"},
                )
                await self._deliver(recipient, self._signer.sign(root), DeliveryKind.DEVICE_ALERT, response_id, audit)

    def alert_recipients(self, device_id: Eui64) -> list[Eui64]:
        """The supplier of the meter now, or the directed SRP's SC users for a failed supplier (R7)."""
        state = self._access.state
        device = state.devices.get(device_id)
        if device is None:
            return []
        owner = state.mpid_owner.get(device.mpid)
        now = self._clock.now()
        directed = [
            enablement.user_id
            for (failed, _), enablement in state.enablements.items()
            if failed == owner and enablement.active(now)
        ]
        if directed:
            return directed
        wanted = ("IS", "ES") if device.device_type == "ESME" else ("GS",)
        return [user.user_id for user in state.users.values() if user.party == owner and user.role in wanted]

    async def _quarantine_alert(self, request: VerifiedRequest, event_ref: int) -> None:
        now = self._clock.now()
        response_id = f"{self._dsp}:{request.originator}:{next(self._alert_counter)}"
        root = documents.dcc_alert_quarantined(
            response_id=response_id, request_id=str(request.request_id), quarantine_event_ref=event_ref, at=now
        )
        audit = AuditEntry(now, "dcc-alert", str(self._dsp), response_id, "AD1", f"request {request.request_id} quarantined")
        await self._deliver(request.originator, self._signer.sign(root), DeliveryKind.DCC_ALERT, response_id, audit)

    # --- plumbing -------------------------------------------------------------------------------

    async def _deliver(self, user: Eui64, body: bytes, kind: DeliveryKind, subject: str, audit: AuditEntry) -> None:
        url = self._response_url(user)
        if url is None:
            LOG.info("no response_url for %s: %s %s kept in the audit log only", user, kind.value, subject)
            return
        await self._outbox.submit(Delivery(user, url, body, kind, subject, self._clock.now(), audit))

    def _response_url(self, user: Eui64) -> str | None:
        try:
            return self._manifest.actor_by_user_id(user).response_url
        except KeyError:
            return None

    def _spawn(self, work: object) -> None:
        task = asyncio.get_running_loop().create_task(self._guard(work))  # type: ignore[arg-type]
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _guard(self, work: object) -> None:
        try:
            await work  # type: ignore[misc]
        except Exception:
            LOG.exception("forwarding failed")

    async def tick(self, now: dt.datetime | None = None) -> int:
        """Runs meters down to now and routes their alerts; returns how many alerts."""
        alerts = await self._fleet.advance(now)
        await self.route_alerts(alerts)
        return len(alerts)

    async def run_meters(self, stop: asyncio.Event, interval: float = 1.0) -> None:
        while not stop.is_set():
            try:
                await self.tick()
            except Exception:
                LOG.exception("meter run-down failed")
            try:
                await asyncio.wait_for(stop.wait(), timeout=interval)
            except TimeoutError:
                pass

    @property
    def in_flight(self) -> int:
        """Accepted commands and alerts still on their way to meters or the outbox."""
        return len(self._tasks)

    async def drain(self) -> None:
        """Waits for commands in flight (clean shutdown: nothing accepted is dropped mid-way)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
