"""The simulated fleet: every meter of the manifest, in memory, executing and running down.

Scale (a million meters). Meters are created lazily: a meter that has done
nothing since installation is re-derived from its manifest entry and the
fleet's epoch on each access, and only meters that changed are held in
``_states`` and stored. :meth:`MeterFleet.advance` does not visit every
meter: a heap holds, per meter, the instant of its next event (low credit,
threshold, emergency credit exhausted, a future-dated change), so an advance
costs O(k log n) for the k meters with something due. Credit meters with
nothing pending never enter the heap. The heap is built once (on
:meth:`load`, or the first :meth:`advance`), from the prepayment meters and
the restored states. Entries are never removed in place: when a meter
changes, an entry for its new next event is pushed, and a popped entry whose
time is no longer the meter's next event is stale and skipped.

:meth:`as_json` and :meth:`execute` see the meter run down to the clock's
now, so a meter is never shown or commanded in the past, whenever advance
last ran (an execution's result carries the alerts of that catch-up; a view
raises none, advance does when their time comes). :meth:`state` is the cheap
lookup: the state as last computed.

Concurrency and durability: commands to one meter are serialised by a lock
for that meter (created when a command arrives, dropped when none waits) and
return only after the new state is stored. Memory is updated before the
store is written, and the store is always given the newest in-memory states,
so the last write holds the newest state whichever coroutine wrote first.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import heapq
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass

from lxml import etree

from gateway.clock import Clock
from gateway.devices.alerts import MeterAlert
from gateway.devices.anchors import FleetAnchors, TrustAnchor
from gateway.devices.credentials import CredentialsError, MeterCredentials, MeterKeys, public_key_hex
from gateway.devices.behaviours import Instruction, ResponseVectors, behaviour_for
from gateway.devices.execute import MeterRefusal
from gateway.devices.meter import (
    DEFAULTS,
    MeterDefaults,
    MeterState,
    new_meter,
    next_event_at,
    run_down,
    state_to_json,
)
from gateway.devices.persistence import MeterPersistence
from gateway.devices.prepayment import meter_balance_pence
from gateway.eui64 import Eui64
from gateway.manifest import Device, Manifest
from gateway.policy.critical import UPDATE_PAYMENT_MODE_SRV

_UNIX_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_ONE_MICROSECOND = dt.timedelta(microseconds=1)
_HIDDEN_IN_VIEW = ("consumption_carry",)


@dataclass(frozen=True, slots=True)
class ExecutionResult:
    """What a command did: the meter afterwards (None if unknown), its alerts, and the device's answer."""

    state: MeterState | None
    alerts: tuple[MeterAlert, ...]
    ok: bool
    detail: str
    changed: bool = False
    """True when ``state`` is a new state to store (False for a refusal: nothing changed)."""
    gbcs_response: bytes | None = None
    """The GBCS response the device answers with (the async result's ``sr:GBCSPayload``)."""


CommitExecution = Callable[[ExecutionResult], Awaitable[None]]
"""Stores what an execution did (durably, with whatever else belongs to it) before the meter moves on.

Called with the meter's lock held; when it raises, the meter forgets the execution."""

CommitRunDown = Callable[[Sequence[MeterState], Sequence[MeterAlert]], Awaitable[None]]
"""Stores the states of meters that ran down and the alerts they raised."""


@dataclass(slots=True)
class _LockEntry:
    lock: asyncio.Lock
    users: int = 0


class MeterFleet:
    """All simulated meters of one world. Build with :meth:`from_manifest`, then ``await load()``."""

    def __init__(
        self,
        manifest: Manifest,
        anchors: FleetAnchors,
        clock: Clock,
        *,
        store: MeterPersistence | None = None,
        defaults: MeterDefaults = DEFAULTS,
        runs: Callable[[Eui64], bool] | None = None,
        vectors: ResponseVectors | None = None,
    ) -> None:
        """``runs``: the meters this fleet runs down and commands (default: all); the others are
        another worker's, and this fleet only shows them as stored (:meth:`refresh`); ``vectors``:
        the RTDS responses the devices answer with (None: no GBCS response unless a behaviour builds one)."""
        self._vectors = vectors
        self._manifest = manifest
        self._runs = runs
        self._anchors = anchors
        self._clock = clock
        self._store = store
        self._defaults = defaults
        self._epoch = clock.now()
        self._states: dict[Eui64, MeterState] = {}
        self._schedule: list[tuple[int, int]] | None = None
        self._locks: dict[Eui64, _LockEntry] = {}
        self._persist_lock = asyncio.Lock()
        self._credentials = MeterCredentials(manifest)

    @classmethod
    def from_manifest(
        cls,
        manifest: Manifest,
        clock: Clock,
        *,
        store: MeterPersistence | None = None,
        defaults: MeterDefaults = DEFAULTS,
        runs: Callable[[Eui64], bool] | None = None,
        vectors: ResponseVectors | None = None,
    ) -> MeterFleet:
        """Reads each supplier's DS certificate (the meters' trust anchors); raises TrustAnchorError."""
        anchors = FleetAnchors.from_manifest(manifest)
        return cls(manifest, anchors, clock, store=store, defaults=defaults, runs=runs, vectors=vectors)

    def runs(self, device_id: Eui64) -> bool:
        """Whether this fleet runs that meter (another worker's fleet runs the others)."""
        return self._runs is None or self._runs(device_id)

    @property
    def epoch(self) -> dt.datetime:
        """When the meters were installed: untouched meters have run down since then."""
        return self._epoch

    async def load(self) -> int:
        """Restores the epoch and the stored states (if there is a store); returns how many were restored."""
        if self._store is not None:
            self._epoch = await self._store.epoch(self._epoch)
            restored = [state for state in await self._store.load() if self._device(state.device_id) is not None]
            self._states.update((state.device_id, state) for state in restored)
        self._schedule = None
        self._ensure_schedule()
        return len(self._states)

    # --- reading ------------------------------------------------------------------------

    def state(self, device_id: Eui64 | str) -> MeterState | None:
        """The meter's state as last computed (no run-down), or None for an unknown device."""
        key = _device_key(device_id)
        return None if key is None else self._current(key)

    def has_device(self, device_id: Eui64 | str) -> bool:
        """Whether the world has this device (a meter, or a device without simulated state)."""
        key = _device_key(device_id)
        return key is not None and self._device(key) is not None

    def trust_anchor(self, device_id: Eui64 | str) -> TrustAnchor | None:
        state = self.state(device_id)
        return None if state is None else self._anchors.by_fingerprint.get(state.trust_anchor_fingerprint)

    def as_json(self, device_id: Eui64 | str) -> dict[str, object] | None:
        """``GET /sim/devices/{id}``: the meter as of now (run down, nothing stored), or None if unknown."""
        key = _device_key(device_id)
        state = None if key is None else self._current(key)
        device = None if key is None else self._device(key)
        if state is None or device is None:
            return None
        now = self._clock.now()
        view, _alerts = run_down(state, now)  # advance() raises and stores these when their time comes
        shown = {name: value for name, value in state_to_json(view).items() if name not in _HIDDEN_IN_VIEW}
        anchor = self._anchors.by_fingerprint.get(view.trust_anchor_fingerprint)
        upcoming = next_event_at(view)
        return {
            **shown,
            "meter_balance_pence": meter_balance_pence(view),
            "mpxn": device.mpxn,
            "supplier_mpid": device.supplier_mpid,
            "trust_anchor": anchor.to_json() if anchor else {"fingerprint_sha256": view.trust_anchor_fingerprint},
            **self._prepayment_keys(device),
            "next_event_at": None if upcoming is None else upcoming.astimezone(dt.UTC).isoformat(),
            "as_of": now.astimezone(dt.UTC).isoformat(),
        }

    def _prepayment_keys(self, device: Device) -> dict[str, object]:
        """What a harness needs to vend this meter UTRNs (the meter's KA public key, whose prepayment
        key it trusts) and to check its signed answers (its DS public key): public halves only."""
        try:
            supplier = self._credentials.supplier_prepayment_key(device)
            key = public_key_hex(self._credentials.key(device.device_id, "ka"))
            signing = public_key_hex(self._credentials.key(device.device_id, "ds"))
        except CredentialsError:
            return {"key_agreement_public_key": None, "device_signing_public_key": None, "prepayment_anchor": None}
        return {
            "key_agreement_public_key": key,
            "device_signing_public_key": signing,
            "prepayment_anchor": {"eui64": str(supplier.eui64), "actor": supplier.actor},
        }

    def next_event_at(self) -> dt.datetime | None:
        """The earliest instant at which :meth:`advance` may have something to do (a driver sleeps until then)."""
        schedule = self._ensure_schedule()
        return _UNIX_EPOCH + schedule[0][0] * _ONE_MICROSECOND if schedule else None

    # --- changing -----------------------------------------------------------------------

    async def execute(
        self,
        device_id: Eui64 | str,
        *,
        sr_body: etree._Element | None = None,
        precommand: bytes | None = None,
        request_id: str | None = None,
        srv: str = UPDATE_PAYMENT_MODE_SRV,
        requester: Eui64 | None = None,
        commit: CommitExecution | None = None,
    ) -> ExecutionResult:
        """Delivers one accepted command of ``srv`` to its device: ``sr_body`` (the signed DUIS body)
        or a Signed Pre-Command's bytes (CV5), run by :func:`~gateway.devices.behaviours.behaviour_for`.

        ``requester`` (default: the RequestID's originator) is who the device answers. ``commit``
        stores the result (a refusal too) before the meter takes its next command; if it raises,
        the meter is as it was before and the error propagates. Without ``commit`` a new state goes
        to the fleet's own store. Returns after that. A device with no simulated state (not a
        meter) runs its behaviour without a state and changes nothing.
        """
        if (sr_body is None) == (precommand is None):
            raise ValueError("give exactly one of sr_body and precommand")
        key = _device_key(device_id)
        device = None if key is None else self._device(key)
        if key is None or device is None:
            return ExecutionResult(None, (), False, f"no simulated device {device_id}")
        if self._current(key) is None:
            instruction = self._instruction(device, None, srv, sr_body, precommand, request_id, requester)
            result = _run_stateless(instruction)
            if commit is not None:
                await commit(result)
            return result
        async with self._serialised(key):
            state = self._current(key)
            if state is None:  # cannot happen (meters are not removed); keeps the type checker informed
                return ExecutionResult(None, (), False, f"no simulated meter {device_id}")
            instruction = self._instruction(device, state, srv, sr_body, precommand, request_id, requester)
            try:
                outcome = behaviour_for(srv, device.type)(instruction)
            except MeterRefusal as refusal:
                result = ExecutionResult(state, (), False, refusal.reason)
                if commit is not None:
                    await commit(result)
                return result
            if outcome.state is None:
                result = ExecutionResult(state, outcome.alerts, True, outcome.detail, gbcs_response=outcome.gbcs_response)
                if commit is not None:
                    await commit(result)
                return result
            changed = outcome.state
            result = ExecutionResult(
                changed, outcome.alerts, True, outcome.detail, changed=True, gbcs_response=outcome.gbcs_response
            )
            held = self._states.get(key)
            self._remember(changed, reschedule=_due_micros(changed) != _due_micros(state))
            try:
                if commit is None:
                    await self._persist([key])
                else:
                    await commit(result)
            except BaseException:
                self._forget(key, held)
                raise
        return result

    def _instruction(
        self,
        device: Device,
        state: MeterState | None,
        srv: str,
        sr_body: etree._Element | None,
        precommand: bytes | None,
        request_id: str | None,
        requester: Eui64 | None,
    ) -> Instruction:
        """What the device receives; the RTDS response is re-addressed to this device and request."""
        now = self._clock.now()
        asker = requester or (None if request_id is None else _originator(request_id)) or device.device_id
        rtds, codes = None, frozenset[int]()
        if self._vectors is not None:
            codes = self._vectors.message_codes(srv, device.type)
        if self._vectors is not None and request_id is not None:
            rtds = self._vectors.response(
                srv=srv, device_type=device.type, device_id=device.device_id, requester=asker, request_id=request_id,
                now=now, body=sr_body, command=precommand,
            )  # fmt: skip
        anchor = self._anchor(device, state)
        return Instruction(
            srv=srv,
            device_id=device.device_id,
            device_type=device.type,
            requester=asker,
            request_id=request_id,
            now=now,
            state=state,
            sr_body=sr_body,
            signed_pre_command=precommand,
            trust_anchor=anchor,
            rtds_response=rtds,
            message_codes=codes,
            keys=MeterKeys(self._credentials, device) if device.is_meter else None,
        )

    def _anchor(self, device: Device, state: MeterState | None) -> TrustAnchor | None:
        """A meter's trust anchor as its state holds it; another device's, its supplier's DS certificate."""
        if state is not None:
            return self._anchors.by_fingerprint.get(state.trust_anchor_fingerprint)
        return self._anchors.for_supplier(device.supplier_mpid)

    async def advance(self, now: dt.datetime | None = None, *, commit: CommitRunDown | None = None) -> list[MeterAlert]:
        """Runs down every meter with an event due by ``now`` (default: the clock's); returns their alerts.

        A meter in the middle of a command is left to it (the command runs it down first) and
        looked at again next time. ``commit`` stores the new states with their alerts; without
        it the states go to the fleet's own store.
        """
        moment = self._clock.now() if now is None else now
        schedule = self._ensure_schedule()
        limit = _micros(moment)
        alerts: list[MeterAlert] = []
        changed: list[Eui64] = []
        busy: list[tuple[int, int]] = []
        while schedule and schedule[0][0] <= limit:
            due_at, value = heapq.heappop(schedule)
            device_id = Eui64(value)
            state = self._current(device_id)
            if state is None or _due_micros(state) != due_at:
                continue  # a stale entry: the meter changed since it was pushed
            if device_id in self._locks:
                busy.append((due_at, value))
                continue
            new, raised = run_down(state, moment)
            alerts.extend(raised)
            changed.append(new.device_id)
            self._remember(new, reschedule=True)  # its entry was just popped
        for entry in busy:
            heapq.heappush(schedule, entry)
        if commit is None:
            await self._persist(changed)
        elif changed:
            await commit([self._states[device_id] for device_id in dict.fromkeys(changed)], alerts)
        return alerts

    async def refresh(self, device_id: Eui64 | str) -> None:
        """Reads the meter's stored state again (a worker that does not run the meters shows the
        state the one that does has stored)."""
        key = _device_key(device_id)
        if key is None or self._store is None or self._device(key) is None:
            return
        stored = await self._store.load_one(key)
        if stored is not None:
            self._states[key] = stored

    # --- internals ----------------------------------------------------------------------

    def _device(self, device_id: Eui64) -> Device | None:
        try:
            return self._manifest.device(device_id)
        except KeyError:
            return None

    def _current(self, device_id: Eui64) -> MeterState | None:
        state = self._states.get(device_id)
        if state is not None:
            return state
        device = self._device(device_id)
        # Only meters are simulated here; other devices of a premises (comms hub, …) have no meter state.
        return None if device is None or not device.is_meter else self._installed(device)

    def _installed(self, device: Device) -> MeterState:
        """The meter as installed at the epoch (the same every time: a pure function of its entry)."""
        return new_meter(
            device_id=device.device_id,
            device_type=device.type,
            smets=device.smets,
            payment_mode=device.payment_mode,
            credit_pence=device.credit_pence,
            trust_anchor_fingerprint=self._anchors.for_device(device).fingerprint,
            at=self._epoch,
            defaults=self._defaults,
        )

    def _remember(self, state: MeterState, *, reschedule: bool) -> None:
        """Holds ``state`` as the meter's current one; ``reschedule`` when its heap entry no longer fits."""
        self._states[state.device_id] = state
        upcoming = _due_micros(state)
        if reschedule and self._schedule is not None and upcoming is not None:
            heapq.heappush(self._schedule, (upcoming, state.device_id.value))

    def _forget(self, device_id: Eui64, held: MeterState | None) -> None:
        """Undoes an execution its commit refused: the meter is back to ``held`` (None: as installed)."""
        if held is None:
            self._states.pop(device_id, None)
        else:
            self._states[device_id] = held
        restored = self._current(device_id)
        due = None if restored is None else _due_micros(restored)
        if self._schedule is not None and due is not None:
            heapq.heappush(self._schedule, (due, device_id.value))  # the undone state's entry is stale now

    def _ensure_schedule(self) -> list[tuple[int, int]]:
        if self._schedule is None:
            self._schedule = self._initial_schedule()
        return self._schedule

    def _initial_schedule(self) -> list[tuple[int, int]]:
        entries: list[tuple[int, int]] = []
        for device in self._manifest.devices:
            if self._runs is not None and not self._runs(device.device_id):
                continue  # another worker runs it down
            state = self._states.get(device.device_id)
            if state is None and device.payment_mode != "Prepayment":
                continue  # an untouched credit meter (or a device that is no meter) has no events
            due = _due_micros(state if state is not None else self._installed(device))
            if due is not None:
                entries.append((due, device.device_id.value))
        heapq.heapify(entries)
        return entries

    async def _persist(self, device_ids: Iterable[Eui64]) -> None:
        """Stores the newest in-memory states of these meters (read when the write starts)."""
        ids = list(dict.fromkeys(device_ids))
        if self._store is None or not ids:
            return
        async with self._persist_lock:
            await self._store.save([self._states[device_id] for device_id in ids])

    @contextlib.asynccontextmanager
    async def _serialised(self, device_id: Eui64) -> AsyncIterator[None]:
        entry = self._locks.get(device_id)
        if entry is None:
            entry = self._locks[device_id] = _LockEntry(asyncio.Lock())
        entry.users += 1
        try:
            async with entry.lock:
                yield
        finally:
            entry.users -= 1
            if entry.users == 0:
                del self._locks[device_id]


def _run_stateless(instruction: Instruction) -> ExecutionResult:
    """A device without simulated state: its behaviour answers; nothing is stored."""
    try:
        outcome = behaviour_for(instruction.srv, instruction.device_type)(instruction)
    except MeterRefusal as refusal:
        return ExecutionResult(None, (), False, refusal.reason)
    return ExecutionResult(None, outcome.alerts, True, outcome.detail, gbcs_response=outcome.gbcs_response)


def _originator(request_id: str) -> Eui64 | None:
    try:
        return Eui64.parse(request_id.split(":", 1)[0])
    except ValueError:
        return None


def _device_key(device_id: Eui64 | str) -> Eui64 | None:
    if isinstance(device_id, Eui64):
        return device_id
    try:
        return Eui64.parse(device_id)
    except ValueError:
        return None


def _micros(moment: dt.datetime) -> int:
    return (moment - _UNIX_EPOCH) // _ONE_MICROSECOND


def _due_micros(state: MeterState) -> int | None:
    upcoming = next_event_at(state)
    return None if upcoming is None else _micros(upcoming)
