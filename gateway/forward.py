"""Forward: queued commands to the simulated meters, exactly once; results and alerts to the users.

The path of an accepted command::

    admission (I99)  -> the command is queued in the same transaction as the decision
    executor         -> claims queued commands (oldest first) -> runs each on its meter
                     -> one transaction: command EXECUTED + the meter's new state
                        + the signed result (and alerts) in the outbox + audit
    outbox           -> POSTs them to the users' response_url (gateway.deliver.outbox)

Exactly once: a meter's new state reaches the store only in the transaction
that marks its command executed, under the claim the executor holds. If the
gateway dies before that commit, neither happened, and the command is run
again after the restart on the meter as stored; if it dies after, the command
is done and is not claimed again. Each meter has exactly one executor (with
several workers, each runs the meters of its shard: EUI-64 modulo the number of
workers), so at start an executor ends the claims a dead predecessor of its
shard left behind.

* A device request runs on its device through the SRV's behaviour
  (:mod:`gateway.devices.behaviours`): from the signed request body (CV1-3),
  or from the Signed Pre-Command (CV5) that a SMETS2 meter verifies; the
  device's GBCS response is the result's ``sr:GBCSPayload``. Non-device
  requests (CV8) are acknowledged. Convention: no simulated device for the
  target -> E20 (unreachable); the device refusing (e.g. a signature its
  trust anchor does not verify) -> E21, with the device's reason in the audit log.
* Meter alerts (low credit, supply disabled, payment mode changed) go to the
  supplier holding the meter's MPID, or, for a failed supplier whose SRP the
  Authority has directed (an active SoLR Contingency enablement), to the SRP's
  SC user (MP134B requirement 7). They are stored with the meter state that
  raised them, in one transaction.
* A quarantined request (E43) sends the user a DCC alert AD1. The transaction
  that quarantines it marks the alert due; queuing the signed alert clears the
  mark in one transaction. Any worker queues due alerts when told of a
  quarantine, at start and once every executor poll interval, so a crash
  between the E43 answer and the alert delays the alert but does not lose it.
  One alert loop per worker does it in batches (each due alert read once, a
  batch signed in one hand-off and queued in one transaction), so a flood of
  quarantines costs one read, one hand-off and one commit per batch of alerts,
  not per alert, and the backlog drains faster than a flood can fill it.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import itertools
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from concurrent.futures import Executor
from typing import Final, TypeVar

from lxml import etree

from gateway.clock import Clock
from gateway.codes import ResponseCode
from gateway.deliver.outbox import DeliveryWorker
from gateway.devices import ExecutionResult, MeterAlert, MeterFleet, MeterState, meter_rows
from gateway.eui64 import Eui64
from gateway.manifest import Device, Manifest
from gateway.parse import HardenedParser
from gateway.policy.access import AccessControl
from gateway.respond import documents
from gateway.respond.nondevice import non_device_payload
from gateway.respond.signer import ResponseSigner
from gateway.stages import StageTimers, now_ns
from gateway.store.base import (
    ALL_DEVICES,
    AuditEntry,
    ClaimedCommand,
    CommandCompletion,
    CommandForm,
    Delivery,
    DeviceCommand,
    DeliveryKind,
    QuarantineAlert,
    QuarantinedRequest,
    Shard,
    Store,
)
from gateway.store.rules import with_event_ref
from gateway.verify.documents import MessageId

LOG = logging.getLogger("dcc_gateway.forward")
T = TypeVar("T")

ALERT_BATCH: Final = 128
"""Due AD1 alerts read, signed and queued together (one read, one hand-off, one transaction)."""

COMMAND_LEASE: Final = dt.timedelta(hours=1)
"""How long a claim hides a command. The executor is the only one, and it ends stale claims when
it starts, so this only has to outlast one execution, on an accelerated clock too."""


class CommandSuperseded(RuntimeError):
    """The store refused an execution's completion: the command was done already, or claimed again."""


class Forwarder:
    """Runs queued commands on the meters, runs the meters down, and routes what they say."""

    def __init__(
        self,
        *,
        fleet: MeterFleet,
        store: Store,
        outbox: DeliveryWorker,
        signer: ResponseSigner,
        access: AccessControl,
        manifest: Manifest,
        clock: Clock,
        dsp_user_id: Eui64,
        batch: int = 64,
        poll_interval: float = 0.2,
        crypto: Executor | None = None,
        shard: Shard = ALL_DEVICES,
        stages: StageTimers | None = None,
    ) -> None:
        """``batch``: commands claimed at once; ``poll_interval``: real seconds between looks at the
        queue when nothing woke the executor (commands queued by other workers); ``crypto``: where
        batches of AD1 alerts are signed (the service's crypto threads), so the event loop keeps its
        turns while a batch is signed; ``shard``:
        the devices whose commands this executor runs (each worker runs its own share); ``stages``:
        where the signing of results is counted ("sign")."""
        self._fleet = fleet
        self._store = store
        self._outbox = outbox
        self._signer = signer
        self._access = access
        self._manifest = manifest
        self._clock = clock
        self._dsp = dsp_user_id
        self._batch = batch
        self._poll_interval = poll_interval
        self._crypto = crypto
        self._shard = shard
        self._stages = stages if stages is not None else StageTimers()
        self._parser = HardenedParser()
        self._wake = asyncio.Event()
        self._alerts_due = asyncio.Event()
        self._alerts_lock = asyncio.Lock()
        self._executing = 0
        self._alert_counter = itertools.count(int(clock.now().timestamp() * 1000))

    # --- what the service calls -------------------------------------------------------------

    def notify(self) -> None:
        """A command was queued: a waiting executor looks now."""
        self._wake.set()

    def quarantined(self) -> None:
        """A quarantine marked an AD1 alert due: the alert loop queues it (with every other due one)
        soon; the E43 answer does not wait, and no task is started per quarantine."""
        self._alerts_due.set()

    async def queue_quarantine_alerts(self) -> int:
        """Signs and queues every AD1 alert marked due (this worker's or a dead one's), a batch at a
        time: each due alert read once, the batch signed in one hand-off to the crypto threads and
        queued in one transaction; returns how many this call queued. One call at a time per worker;
        two workers may sign the same alert, and only one of them queues it."""
        async with self._alerts_lock:
            queued = 0
            while True:
                due = await self._store.quarantine_alerts_due(ALERT_BATCH)
                if not due:
                    return queued
                alerts = await self._in_crypto(lambda: [self._quarantine_alert(held) for held in due])
                recorded = await self._store.record_quarantine_alerts(alerts)
                queued += recorded
                if recorded and any(alert.delivery is not None for alert in alerts):
                    self._outbox.notify()
                if len(due) < ALERT_BATCH or not recorded:
                    return queued  # all read; or another worker is queuing the same ones (it will go on)

    async def run_alerts(self, stop: asyncio.Event) -> None:
        """The alert loop: queues the due AD1 alerts when a quarantine is reported and, for alerts a
        worker that died after answering E43 left due, once every poll interval (event loop time)."""
        await self._each_wake(stop, self._alerts_due, lambda: self.queue_quarantine_alerts(), "queuing due AD1 alerts")

    # --- the executor -------------------------------------------------------------------------

    async def start_executing(self) -> int:
        """Ends claims a dead executor left on this shard (this is its only executor) and queues the AD1
        alerts a previous run left due; returns how many claims it ended."""
        released = await self._store.release_claims(self._shard)
        if released:
            LOG.info("%d command(s) claimed by a previous run are queued again", released)
        alerts = await self.queue_quarantine_alerts()
        if alerts:
            LOG.info("%d AD1 alert(s) a previous run left due are queued", alerts)
        return released

    async def execute_due(self) -> int:
        """Claims and runs queued commands until none is left; returns how many were run."""
        total = 0
        while True:
            claimed = await self._store.claim_commands(self._clock.now(), self._batch, COMMAND_LEASE, self._shard)
            if not claimed:
                return total
            self._executing += len(claimed)
            try:
                # One task per command; a meter's lock (FIFO) keeps its commands in claim order.
                await asyncio.gather(*(self._execute_logged(command) for command in claimed))
            finally:
                self._executing -= len(claimed)
            total += len(claimed)

    async def run_commands(self, stop: asyncio.Event) -> None:
        """The executor's loop: runs what is queued, then waits to be woken (or polls)."""
        await self._each_wake(stop, self._wake, self.execute_due, "executing queued commands")

    async def _each_wake(
        self, stop: asyncio.Event, wake: asyncio.Event, work: Callable[[], Awaitable[int]], what: str
    ) -> None:
        """Runs ``work`` until ``stop``: at once, then whenever ``wake`` is set or a poll interval has
        passed (event loop time); a failure is logged and the loop goes on."""
        while not stop.is_set():
            wake.clear()
            try:
                await work()
            except Exception:
                LOG.exception("%s failed", what)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(_first(wake, stop), timeout=self._poll_interval)

    async def _execute_logged(self, claimed: ClaimedCommand) -> None:
        try:
            await self._execute(claimed)
        except CommandSuperseded as superseded:
            LOG.warning("%s", superseded)
        except Exception:
            LOG.exception("command %s failed; it stays queued", claimed.command.request_id)

    async def _execute(self, claimed: ClaimedCommand) -> None:
        command = claimed.command
        if command.form is CommandForm.ACKNOWLEDGE:
            payload = self._non_device_payload(command)
            named = "" if payload is None else f" with sr:{etree.QName(payload).localname}"
            detail = f"non-device SRV {command.service_reference_variant} answered by the DCC{named}"
            await self._complete(claimed, ResponseCode.I0, detail, payload=payload)
            return
        if not self._fleet.has_device(command.device_id):
            await self._complete(claimed, ResponseCode.E20, f"no simulated device {command.device_id}")
            return

        async def commit(result: ExecutionResult) -> None:
            code = ResponseCode.I0 if result.ok else ResponseCode.E21
            states = [result.state] if result.changed and result.state is not None else []
            await self._complete(claimed, code, result.detail, states, result.alerts, result.gbcs_response)

        srv, requester = command.service_reference_variant, command.originator
        if command.form is CommandForm.SR_BODY:
            body = self._parser.parse(command.payload).getroot()
            await self._fleet.execute(
                command.device_id, sr_body=body, request_id=command.request_id, srv=srv, requester=requester,
                commit=commit,
            )  # fmt: skip
        else:
            await self._fleet.execute(
                command.device_id, precommand=command.payload, request_id=command.request_id, srv=srv,
                requester=requester, commit=commit,
            )  # fmt: skip

    async def _complete(
        self,
        claimed: ClaimedCommand,
        code: ResponseCode,
        detail: str,
        states: Sequence[MeterState] = (),
        alerts: Iterable[MeterAlert] = (),
        gbcs_response: bytes | None = None,
        payload: etree._Element | None = None,
    ) -> None:
        command = claimed.command
        now = self._clock.now()
        audit = AuditEntry(
            now, "device-result", str(command.device_id), command.request_id, code.value, detail,
            {"command_id": claimed.command_id, "form": command.form.value, "claims": claimed.claims},
        )
        # Signed on the event loop, as the service signs its answers: the signing holds the GIL, so
        # handing it to a crypto thread cost more than it freed.
        started = now_ns()
        body = self._signer.command_result(command, code, now, gbcs_response, payload)
        self._stages.since("sign", started)
        deliveries, audits = self._addressed(command.originator, body, DeliveryKind.RESPONSE, command.request_id, audit)
        alert_deliveries, alert_audits = self._alerts(alerts)
        completion = CommandCompletion(
            at=now,
            outcome=code.value,
            meters=meter_rows(states),
            deliveries=(*deliveries, *alert_deliveries),
            audits=(*audits, *alert_audits),
        )
        if not await self._store.complete_command(claimed, completion):
            raise CommandSuperseded(f"command {command.request_id} was completed or claimed again meanwhile")
        self._outbox.notify()

    def _non_device_payload(self, command: DeviceCommand) -> etree._Element | None:
        """What the DCC answers a non-device request with (:mod:`gateway.respond.nondevice`)."""
        body = self._parser.parse(command.payload).getroot() if command.payload else None
        counter = MessageId.parse(command.request_id).counter
        return non_device_payload(
            command.service_reference_variant, body, counter, self._manifest_device, self._devices_by_mpxn
        )

    def _manifest_device(self, device_id: Eui64) -> Device | None:
        try:
            return self._manifest.device(device_id)
        except KeyError:
            return None

    def _devices_by_mpxn(self, mpxn: str) -> list[Device]:
        return [device for device in self._manifest.devices if device.mpxn == mpxn]

    # --- the meters running down -----------------------------------------------------------

    async def tick(self, now: dt.datetime | None = None) -> int:
        """Runs meters down to now and stores their states with their alerts; returns how many alerts."""
        alerts = await self._fleet.advance(now, commit=self._store_run_down)
        return len(alerts)

    async def _store_run_down(self, states: Sequence[MeterState], alerts: Sequence[MeterAlert]) -> None:
        deliveries, audits = self._alerts(alerts)
        await self._store.save_meters(meter_rows(states), deliveries, audits)
        if deliveries:
            self._outbox.notify()

    async def run_meters(self, stop: asyncio.Event, interval: float = 1.0) -> None:
        while not stop.is_set():
            try:
                await self.tick()
            except Exception:
                LOG.exception("meter run-down failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=interval)

    # --- alerts -------------------------------------------------------------------------------

    def _alerts(self, alerts: Iterable[MeterAlert]) -> tuple[list[Delivery], list[AuditEntry]]:
        """Signed alert documents for each alert's recipients (audit-only for one without a URL)."""
        deliveries: list[Delivery] = []
        audits: list[AuditEntry] = []
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
                routed = self._addressed(recipient, self._signer.sign(root), DeliveryKind.DEVICE_ALERT, response_id, audit)
                deliveries.extend(routed[0])
                audits.extend(routed[1])
        return deliveries, audits

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
        return [user.user_id for user in state.users.values() if user.party == owner and set(user.roles) & set(wanted)]

    def _quarantine_alert(self, held: QuarantinedRequest) -> QuarantineAlert:
        """The signed AD1 alert for a quarantined request, addressed to its user (any thread)."""
        now = self._clock.now()
        response_id = f"{self._dsp}:{held.user_id}:{next(self._alert_counter)}"
        root = documents.dcc_alert_quarantined(
            response_id=response_id, request_id=held.request_id, quarantine_event_ref=held.event_ref, at=now
        )
        audit = with_event_ref(
            AuditEntry(now, "dcc-alert", str(self._dsp), response_id, "AD1", f"request {held.request_id} quarantined"),
            "AD1",
            held.event_ref,
        )
        deliveries, audits = self._addressed(held.user_id, self._signer.sign(root), DeliveryKind.DCC_ALERT, response_id, audit)
        return QuarantineAlert(held.event_ref, deliveries[0] if deliveries else None, audits[0] if audits else None)

    # --- plumbing -------------------------------------------------------------------------------

    def _addressed(
        self, user: Eui64, body: bytes, kind: DeliveryKind, subject: str, audit: AuditEntry
    ) -> tuple[list[Delivery], list[AuditEntry]]:
        """A delivery to the user's response_url carrying ``audit``, or only ``audit`` when it has none."""
        url = self._response_url(user)
        if url is None:
            LOG.info("no response_url for %s: %s %s kept in the audit log only", user, kind.value, subject)
            return [], [audit]
        return [Delivery(user, url, body, kind, subject, self._clock.now(), audit)], []

    def _response_url(self, user: Eui64) -> str | None:
        try:
            return self._manifest.actor_by_user_id(user).response_url
        except KeyError:
            return None

    async def _in_crypto(self, work: Callable[[], T]) -> T:
        """``work()`` in a crypto thread (the event loop keeps its turns while a batch is signed)."""
        if self._crypto is None:
            return work()
        return await asyncio.get_running_loop().run_in_executor(self._crypto, work)

    @property
    def in_flight(self) -> int:
        """Commands being executed, and 1 while due alerts are on their way to the outbox."""
        return self._executing + (1 if self._alerts_due.is_set() or self._alerts_lock.locked() else 0)

    async def drain(self) -> None:
        """Runs every queued command and queues every due alert (clean shutdown, the demo)."""
        await self.execute_due()
        if self._alerts_due.is_set() or self._alerts_lock.locked():
            await self.queue_quarantine_alerts()


async def _first(*events: asyncio.Event) -> None:
    """Returns when any of ``events`` is set."""
    waiters = [asyncio.ensure_future(event.wait()) for event in events]
    try:
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
