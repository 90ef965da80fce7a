"""The gateway as a service: one request in, one reply out, along the pipeline.

    bytes -> verify (worker thread) -> request type vs URL (E13) -> access control
          -> store (decision + queued command, one commit) -> signed DUIS answer
    the executor (gateway.forward) then runs the queued command on its meter

Pre-authentication failures become RFC 9457 problems naming the failed
check; everything after authentication becomes a signed ``sr:Response``
with a ``DUIS-Reason`` header.

One request, one thread: a document of up to :data:`VERIFY_ON_LOOP_BYTES` is verified on the
event loop, as its answer is signed there. Handing it to a crypto thread cost more than the
verification (measured: 0.16 ms of hand-off for 0.27 ms of verifying), and the threads'
GIL hand-overs at every C call that releases it (lxml, ECDSA, SQLite) cost as much again:
in CPython the GIL is one core's worth of Python whichever thread runs it, so a thread only
pays where its work runs without the GIL for long. A larger document (firmware images) is
verified in a crypto thread, so that one body cannot hold the loop for milliseconds.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from gateway.checks import VerificationError
from gateway.clock import Clock
from gateway.codes import ResponseCode
from gateway.ingress.fairness import Admission, Busy
from gateway.metrics import GatewayMetrics
from gateway.policy import directives as d
from gateway.policy.access import SIMULATOR_LIMIT, AccessControl, RegistryContention
from gateway.policy.critical import SimulatorLimit
from gateway.policy.commands import device_command
from gateway.recent import Exchange, ExchangeKind, RecentExchanges
from gateway.respond.signer import ResponseSigner
from gateway.stages import now_ns
from gateway.store.base import AuditEntry, DeviceCommand, StoreUnavailable
from gateway.verify.documents import VerifiedDirective, VerifiedRequest
from gateway.verify.verifier import Verifier

LOG = logging.getLogger("dcc_gateway.requests")
T = TypeVar("T")

COMMAND_VARIANTS_BY_PATH = {
    "serviceS": frozenset({1, 3, 5, 7}),
    "serviceT": frozenset({4}),
    "serviceD": frozenset({2, 6, 8}),
}
"""DCC Boxed's URLs and the command variants each takes (SPEC §5)."""

PROBLEM_TYPE = "urn:x-dcc-gateway:problem:"

VERIFY_ON_LOOP_BYTES = 64 * 1024
"""Documents up to this size are verified on the event loop (about 0.3 ms for a DUIS request of
a few kB; 64 kB, a few ms, is the most one body may hold the loop for), larger ones in a thread."""

VERIFIER_QUEUE_FULL = "verifier-queue-full"
"""503 before authentication: the peer's (or everyone's) queue for the verifier is full."""
ORIGINATOR_OVER_SHARE = "originator-over-share"
"""503 after authentication: the originator has as many requests waiting as its share allows."""

RETRY_AFTER_SECONDS = 1
"""What a 503 tells the client to wait: the store or the registry is expected back within seconds."""

NOT_DECIDED = (StoreUnavailable, RegistryContention)
"""Failures after authentication that leave a request without a decision to answer: a 503 to retry.

A retry is safe: had the store in fact committed the decision (a connection lost during COMMIT),
the retried request meets the replay check, as any duplicate does."""


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    content_type: str
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)
    outcome: str = ""
    """For logs and metrics: the DUIS code, the failed check, or "accepted"/"refused"."""


class ThreadLocalVerifiers:
    """One Verifier per worker thread: lxml parsers must not be shared between threads.

    ``prebuilt`` of them are built at once (compiling their schemas), so that the threads
    the executor starts under load take a built one and no schema is compiled after
    start-up; a thread beyond those builds its own."""

    def __init__(self, factory: Callable[[], Verifier], *, prebuilt: int = 0) -> None:
        self._factory = factory
        self._local = threading.local()
        self._spare = [factory() for _ in range(prebuilt)]
        self._taking = threading.Lock()

    def get(self) -> Verifier:
        verifier: Verifier | None = getattr(self._local, "verifier", None)
        if verifier is None:
            with self._taking:
                verifier = self._spare.pop() if self._spare else None
            if verifier is None:
                verifier = self._factory()
            self._local.verifier = verifier
        return verifier


class Forward(Protocol):
    """What the service tells the forwarding side (it must not block)."""

    def notify(self) -> None:
        """A command was queued."""

    def quarantined(self) -> None:
        """A request was quarantined: the AD1 alert its quarantine marked due can be sent now."""


Audit = Callable[[AuditEntry], Awaitable[object]]
"""Appends one record to the audit log (the store's ``append_audit``)."""


class GatewayService:
    def __init__(
        self,
        *,
        verifiers: ThreadLocalVerifiers,
        access: AccessControl,
        signer: ResponseSigner,
        clock: Clock,
        metrics: GatewayMetrics,
        executor: ThreadPoolExecutor,
        admission: Admission,
        audit: Audit,
        forward: Forward | None = None,
        recent: RecentExchanges | None = None,
    ) -> None:
        """``admission``: the verifier's and the decisions' shares (per peer, per originator);
        ``audit``: where a request refused for its originator's share is recorded; ``recent``: where
        the answered exchanges are kept for the console (default: a new ring)."""
        self.admission = admission
        self._audit = audit
        self._verifiers = verifiers
        self._access = access
        self._signer = signer
        self._clock = clock
        self.metrics = metrics
        self._executor = executor
        self._forward = forward
        self.recent = recent if recent is not None else RecentExchanges()

    @property
    def access(self) -> AccessControl:
        """The access control the service decides with (its registry is what ``/console`` shows)."""
        return self._access

    @property
    def clock(self) -> Clock:
        return self._clock

    async def _in_thread(self, stage: str, function: Callable[[], T]) -> T:
        """``function()`` in a crypto thread, its CPU counted to ``stage``, the submission to "handoff"."""
        stages = self.metrics.stages

        def timed() -> T:
            started = now_ns()
            try:
                return function()
            finally:
                stages.since(stage, started)

        submitted = now_ns()
        future = asyncio.get_running_loop().run_in_executor(self._executor, timed)
        stages.since("handoff", submitted)
        return await future

    async def _verified(self, data: bytes, verify: Callable[[Verifier], T]) -> T:
        """``verify(verifier)`` of the document ``data``: on the event loop for one of up to
        :data:`VERIFY_ON_LOOP_BYTES`, else in a crypto thread. Requests and directives call it
        inside their verifier turn; a held request's re-check before its release has none."""
        if len(data) > VERIFY_ON_LOOP_BYTES:
            return await self._in_thread("verify", lambda: verify(self._verifiers.get()))
        # A turn is held across one pass of the loop: requests read in that pass then find the
        # turns taken and queue at the gate, whose rotation across peers picks who is verified
        # next. Verifying at once would serve them in the order their bytes arrived instead.
        await asyncio.sleep(0)
        started = now_ns()
        try:
            return verify(self._verifiers.get())
        finally:
            self.metrics.stages.since("verify", started)

    # --- DUIS Service Requests -------------------------------------------------------------

    async def service_request(self, path: str, data: bytes, *, peer: str = "") -> Reply:
        """``peer``: the client's address, whose share of the verifier the request waits in."""
        started = time.perf_counter()
        reply, request = await self._service_request(path, data, peer)
        self._observe(path, reply, started)
        remembered = now_ns()
        self._remember("request", path, reply, data, request)
        self.metrics.stages.since("console", remembered)
        return reply

    async def _service_request(self, path: str, data: bytes, peer: str) -> tuple[Reply, VerifiedRequest | None]:
        try:
            async with self.admission.verifier.turn(peer):
                request = await self._verified(data, lambda verifier: verifier.verify_request(data))
        except VerificationError as error:
            return problem(error.http_status, error.check_id, error.detail), None
        except Busy as busy:
            return self._busy(VERIFIER_QUEUE_FULL, f"the verifier's queue is full: {busy.reason}"), None
        try:
            async with self.admission.originators.turn(request.originator):
                return await self._decide_request(path, request, data), request
        except NOT_DECIDED as error:
            return _not_decided(error, str(request.request_id)), request
        except SimulatorLimit as limit:  # audited by the policy; DUIS has no code for it
            return problem(501, SIMULATOR_LIMIT, f"{request.request_id}: {limit}"), request
        except Busy as busy:
            return await self._over_share(request, busy), request

    async def _decide_request(self, path: str, request: VerifiedRequest, data: bytes) -> Reply:
        allowed = COMMAND_VARIANTS_BY_PATH[path]
        if request.command_variant not in allowed:
            reason = f"command variant {request.command_variant} is not sent to /api/v1/{path} (takes {sorted(allowed)})"
            await self._access.record(request, ResponseCode.E13, reason, "request-type")
            return await self._answer(request, ResponseCode.E13, reason)
        decision = await self._access.decide_request(request, data)
        if self._forward is not None:
            if decision.code is ResponseCode.I99:
                self._forward.notify()
            elif decision.code is ResponseCode.E43:
                self._forward.quarantined()
        return await self._answer(request, decision.code, decision.reason, pre_command=decision.pre_command)

    async def _answer(
        self, request: VerifiedRequest, code: ResponseCode, reason: str, *, pre_command: bytes | None = None
    ) -> Reply:
        # Signed here, on the event loop: ECDSA signing and lxml's tree building hold the GIL, so a
        # crypto thread would not sign in parallel, and handing it over cost more than the signing.
        started = now_ns()
        body = self._signer.answer(request, code, self._clock.now(), pre_command=pre_command)
        self.metrics.stages.since("sign", started)
        headers = {"DUIS-Reason": _header_text(reason)}
        return Reply(200, "application/xml", body, headers, code.value)

    # --- directives ------------------------------------------------------------------------

    async def admin(self, data: bytes, *, peer: str = "") -> Reply:
        started = time.perf_counter()
        reply, verified = await self._admin(data, peer)
        self._observe("admin", reply, started)
        remembered = now_ns()
        self._remember("directive", "admin", reply, data, verified)
        self.metrics.stages.since("console", remembered)
        return reply

    async def _admin(self, data: bytes, peer: str) -> tuple[Reply, VerifiedDirective | None]:
        try:
            async with self.admission.verifier.turn(peer):
                verified = await self._verified(data, lambda verifier: verifier.verify_directive(data))
        except VerificationError as error:
            return problem(error.http_status, error.check_id, error.detail), None
        except Busy as busy:
            return self._busy(VERIFIER_QUEUE_FULL, f"the verifier's queue is full: {busy.reason}"), None
        try:
            directive = d.parse_directive(verified)
        except d.DirectiveError as error:
            return _json_reply({"accepted": False, "reason": str(error)}, "refused"), verified
        try:
            return await self._decide_directive(verified, directive), verified
        except NOT_DECIDED as error:
            return _not_decided(error, str(verified.directive_id)), verified

    async def _decide_directive(self, verified: VerifiedDirective, directive: d.Directive) -> Reply:
        release = await self._release_command(verified, directive)
        decision = await self._access.decide_directive(verified, directive, release=release)
        if decision.released is not None and self._forward is not None:
            self._forward.notify()
        outcome = "accepted" if decision.accepted else "refused"
        return _json_reply({"accepted": decision.accepted, "reason": decision.reason}, outcome)

    async def _release_command(self, verified: VerifiedDirective, directive: d.Directive) -> DeviceCommand | None:
        """For a release: the held request's command, if its bytes still verify (at the current clock:
        a certificate revoked meanwhile stops it; the refusal is logged and the release still settles)."""
        if not isinstance(directive, d.ReleaseQuarantine) or verified.signer.eui64 is None:
            return None
        held = await self._access.held_request(directive.event_ref, verified.signer.eui64)
        if held is None:
            return None
        raw = held.raw_request
        try:
            request = await self._verified(raw, lambda verifier: verifier.verify_request(raw))
        except VerificationError as error:
            LOG.warning("released request %s no longer verifies (%s): not forwarded", held.request_id, error)
            return None
        return device_command(request, self._clock.now())

    # --- shares (gateway.ingress.fairness) ------------------------------------------------------

    def _busy(self, check: str, detail: str) -> Reply:
        retry = {"Retry-After": str(self.admission.retry_after_seconds)}
        return problem(503, check, f"{detail}; send it again later", retry)

    async def _over_share(self, request: VerifiedRequest, busy: Busy) -> Reply:
        """503 for an authenticated request whose originator has as many waiting as allowed: audited
        (it is a refusal after authentication), though not decided (a retry later is decided anew)."""
        reason = f"{request.originator} has {busy.reason}: over its share of the gateway"
        entry = AuditEntry(
            at=self._clock.now(), kind="request", actor=str(request.originator), subject=str(request.request_id),
            outcome=ORIGINATOR_OVER_SHARE, reason=reason,
            detail={"srv": request.service_reference_variant, "cv": request.command_variant,
                    "target": str(request.target), "step": "fairness"},
        )
        try:
            await self._audit(entry)
        except NOT_DECIDED as error:  # still a 503: the client tries again either way
            LOG.warning("%s refused for its share, not audited: %s", request.request_id, error)
        return self._busy(ORIGINATOR_OVER_SHARE, f"{request.request_id} not decided now: {reason}")

    # --- observability -------------------------------------------------------------------------

    def _remember(
        self,
        kind: ExchangeKind,
        path: str,
        reply: Reply,
        data: bytes,
        verified: VerifiedRequest | VerifiedDirective | None,
    ) -> None:
        """Keeps the exchange for the console; the bytes only of a document that authenticated.
        The exchange is built once, with what the verified document adds."""
        about: dict[str, Any] = {}
        if isinstance(verified, VerifiedRequest):
            about = {
                "subject": str(verified.request_id),
                "originator": str(verified.originator),
                "target": str(verified.target),
                "service_reference_variant": verified.service_reference_variant,
                "command_variant": verified.command_variant,
                "request_xml": data,
            }
        elif isinstance(verified, VerifiedDirective):
            commands = [element.get("name") for element in verified.content if element.tag == d.COMMAND]
            about = {
                "subject": str(verified.directive_id),
                "originator": str(verified.signer.eui64),
                "directive": commands[0] if len(commands) == 1 else None,
                "request_xml": data,
            }
        exchange = Exchange(
            sequence=self.recent.next_sequence(),
            at=self._clock.now(),
            kind=kind,
            path=path,
            outcome=reply.outcome,
            reason=_reason_of(reply),
            response_xml=reply.body if reply.content_type == "application/xml" else None,
            **about,
        )
        self.recent.add(exchange)

    def _observe(self, path: str, reply: Reply, started: float) -> None:
        counted = now_ns()
        elapsed = time.perf_counter() - started
        self.metrics.requests.labels(path, reply.outcome).inc()
        self.metrics.latency.labels(path).observe(elapsed)
        logged = self.metrics.stages.since("metrics", counted)
        LOG.info(
            json.dumps(
                {"path": path, "status": reply.status, "outcome": reply.outcome, "ms": round(elapsed * 1000, 2)},
                separators=(",", ":"),
            )
        )
        self.metrics.stages.since("log", logged)


def problem(status: int, check: str, detail: str, headers: dict[str, str] | None = None) -> Reply:
    """RFC 9457 problem details, with the failed check named for machines."""
    body = {"type": PROBLEM_TYPE + check, "title": _TITLES.get(status, "Rejected"), "status": status, "check": check, "detail": detail}
    return Reply(status, "application/problem+json", json.dumps(body).encode(), headers or {}, check)


def _not_decided(error: Exception, subject: str) -> Reply:
    """503 for an authenticated request or directive the gateway could not decide."""
    LOG.warning("%s not decided: %s", subject, error)
    check = "store-unavailable" if isinstance(error, StoreUnavailable) else "registry-contention"
    detail = f"{subject} could not be decided now ({error}); send it again"
    return problem(503, check, detail, {"Retry-After": str(RETRY_AFTER_SECONDS)})


_TITLES = {
    400: "Malformed request",
    401: "Signature or certificate not accepted",
    408: "Request body too slow",
    413: "Request too large",
    415: "Unsupported media type or encoding",
    501: "Not something this simulator does",
    503: "Not decided; try again",
}


def _reason_of(reply: Reply) -> str:
    """What the answer told its sender about the decision: DUIS-Reason, or the JSON reason/detail."""
    if "DUIS-Reason" in reply.headers:
        return reply.headers["DUIS-Reason"]
    try:
        value = json.loads(reply.body)
    except ValueError:
        return ""
    text = value.get("reason", value.get("detail", "")) if isinstance(value, dict) else ""
    return str(text)


def _json_reply(value: dict[str, object], outcome: str) -> Reply:
    return Reply(200, "application/json", json.dumps(value).encode(), {}, outcome)


def _header_text(reason: str) -> str:
    """HTTP header values are latin-1 without line breaks; keep reasons readable and safe."""
    flat = " ".join(reason.split())
    return flat.encode("latin-1", "replace").decode("latin-1")[:300]
