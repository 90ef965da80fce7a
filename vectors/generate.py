"""``dcc-gateway vectors generate``: the catalogue and the SoLR scenario as files, for one world.

:func:`generate_suite` builds every vector of :data:`vectors.catalogue.VECTORS`
with keys the world's gateway trusts:

* the world's test SMKI CA is rebuilt from ``manifest.json``'s seed (``pki`` is
  a pure function of it) and checked against ``DIR/pki/org-ca.pem``;
* the signer is the world actor's own xmlSign (87) certificate and key
  (default ``failed_supplier_is``), the originator its user id, the target one
  of its meters;
* the extra certificates that vectors import in ``prepare`` (other role codes,
  profile violations, the second user...) are issued by the world CA and added
  to ``DIR/smki/imported`` through the SMKI repository's import, so the
  gateway trusts them **after a (re)start**. Certificates the catalogue keeps
  *out* of the repository (``not-imported``, the foreign CA's) stay out.

Generating therefore changes the world's repository: use it on a test world.

Skipped (listed with the reason in ``OUT/skipped.json``): vectors checked at
another instant (``at``: a clock override a live gateway does not take),
vectors whose ``prepare`` does more than import certificates (a CRL revoking
the signer would revoke it for every later vector), and vectors marked
``known_issue`` (the verifier is known to answer otherwise).

Accepted vectors expect HTTP 200 with a signed ``sr:Response``; the DUIS code
is not fixed (``"response_code": "*"``): they all share one RequestID counter,
so after the first one the policy answers E40 (replay), and some carry content
the policy refuses (E41). Authentication, which is what the vectors test, is
passed in every case. Each catalogue sidecar also says what any strict DUIS
gateway must answer (``strict_duis``), or why that profile leaves it out.

When the world's ``gateway.toml`` names the official DUIS XSD, the live gateway
validates against it before the signature profile; vectors that XSD refuses
(malformed ``ds:Signature`` content, and one accepted vector, whose base64 has
non-zero padding bits that ``xs:base64Binary`` forbids) expect ``400 schema``,
with the catalogue's verdict kept as ``catalogue_expect`` and a ``note``.

Then the stateful vectors of :mod:`vectors.scenario` (categories ``directive``,
``policy``, ``replay``, ``accepted``): the SoLR story as signed directives and
Service Requests that expect exact DUIS codes (I99, I0, E1-E43) or a
directive's ``accepted`` verdict. Their sidecars carry ``sequence`` (the run
order) and ``relies_on`` (the earlier vectors whose effect they need). All
their counters come from one :class:`~vectors.scenario.CounterSource`, and
:func:`run_order_errors` re-reads every request of the suite in run order:
a suite whose I99/I0/E40 expectations could not all come true against a fresh
store is not written. They need a fresh store (``dcc-gateway init`` +
``serve``): a second run against the same store meets E40 where it expects
I99, and the report says so.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from lxml import etree

from gateway.checks import Check
from gateway.runtime import World, open_world
from gateway.schema import compile_xsd
from gateway.smki.repository import SmkiRepository
from gateway.world import CA_NAME, CERT_NOT_AFTER, CERT_NOT_BEFORE
from pki import IssuedCertificate, TestSmkiCa
from vectors.catalogue import VECTORS, build_context
from vectors.catalogue.model import CATEGORIES, Vector, VectorContext
from vectors.expect import SCENARIO_LEFT_OUT, Verdict, strict_duis_verdict
from vectors.judge import ANY_CODE
from vectors.scenario import (
    ADMIN,
    COUNTER_START,
    ENABLEMENT_DAYS,
    SERVICE_S,
    CounterSource,
    PlannedRequest,
    ScenarioUnavailable,
    ScenarioWorld,
    StatefulVector,
    build_policy_vectors,
    plan_errors,
    read_planned,
)
from vectors.report import FRESH_STORE_NOTE
from vectors.suite import IMPORTED_CERTIFICATES, INDEX, SKIPPED, SuiteError, write_json, write_vector

DEFAULT_ACTOR = "failed_supplier_is"
STATUS_BY_CHECK: Mapping[str, int] = {check.check_id: check.http_status for check in Check}
SCENARIO_ID = "policy-scenario"
"""The ``skipped.json`` id under which the stateful vectors are skipped as a whole."""

_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)


@dataclasses.dataclass
class GenerateReport:
    written: list[str] = dataclasses.field(default_factory=list)
    skipped: dict[str, str] = dataclasses.field(default_factory=dict)
    imported: list[str] = dataclasses.field(default_factory=list)
    categories: Counter[str] = dataclasses.field(default_factory=Counter)
    official_schema: list[str] = dataclasses.field(default_factory=list)
    """Vectors whose expectation became ``400 schema``: the world's official DUIS XSD refuses them first."""


@dataclasses.dataclass(frozen=True)
class _Built:
    """A catalogue vector built for the world: its bytes, its sidecar, the certificates it needs imported."""

    data: bytes
    sidecar: Mapping[str, Any]
    certificates: tuple[x509.Certificate, ...]


# --- the suite, step by step ----------------------------------------------------------------------


def generate_suite(
    directory: Path, out: Path, *, actor: str = DEFAULT_ACTOR, vectors: Sequence[Vector] = VECTORS
) -> GenerateReport:
    """Writes ``OUT/<id>.xml`` + ``OUT/<id>.json`` per vector, ``OUT/skipped.json``, ``OUT/suite.json``,
    and imports the certificates the vectors need into the world's repository."""
    world = open_world(directory)
    context = world_context(world, actor=actor)
    official = compile_xsd(world.official_xsd) if world.official_xsd is not None else None
    report = GenerateReport()
    catalogue = _build_catalogue(vectors, context, official, report)
    stateful = _stateful_vectors(world, context.now, report)
    problems = run_order_errors({vector_id: (b.data, b.sidecar["expect"]) for vector_id, b in catalogue.items()},
                                stateful, official)
    if problems:
        raise SuiteError("the suite could not pass against a fresh store:\n  " + "\n  ".join(problems))
    out.mkdir(parents=True, exist_ok=True)
    for built in catalogue.values():
        _write(out, built.sidecar, built.data, report)
    for sequence, step in enumerate(stateful, start=1):
        _write(out, _stateful_sidecar(step, sequence), step.data, report)
    report.imported = _import_certificates(directory, out, [c for b in catalogue.values() for c in b.certificates])
    _write_index(out, world, actor, context.now, report)
    return report


def world_context(world: World, *, actor: str = DEFAULT_ACTOR, now: dt.datetime | None = None) -> VectorContext:
    """A vector context signed by ``actor``'s world keys, its extra certificates from the world CA."""
    manifest = world.manifest
    if manifest.seed is None:
        raise SuiteError(f"{world.directory}: manifest.json has no seed; cannot rebuild the world CA")
    ca = TestSmkiCa.create(
        manifest.seed.encode("utf-8"), not_before=CERT_NOT_BEFORE, not_after=CERT_NOT_AFTER, name=CA_NAME
    )
    org = x509.load_pem_x509_certificate(manifest.smki.org_ca.read_bytes())
    if org != ca.org.certificate:
        raise SuiteError(f"{world.directory}: the organisation CA is not the one the seed gives")
    if actor not in manifest.actors:
        raise SuiteError(f"{world.directory}: no actor {actor!r} in manifest.json")
    entry = manifest.actors[actor]
    signer = IssuedCertificate.load(entry.xml_sign.cert, entry.xml_sign.key)
    others = [a for a in manifest.actors.values() if a.name != actor and a.user_id != entry.user_id]
    # SMETS1 first: there CV1 applies to SR 1.6, so an accepted vector can reach I99 rather than E12.
    own = sorted((d for d in manifest.devices if d.supplier_mpid in entry.mpids), key=lambda d: d.smets)
    options: dict[str, Any] = {}
    if own:
        options["target"] = own[0].device_id
    if others:
        options["other_user"] = others[0].user_id
    return build_context(
        ca,
        now=(now or dt.datetime.now(dt.UTC)).replace(microsecond=0),
        signer=signer,
        originator=entry.user_id,
        limits=world.limits(),
        **options,
    )


def run_order_errors(
    catalogue: Mapping[str, tuple[bytes, Mapping[str, object]]], stateful: Sequence[StatefulVector], official: Any
) -> list[str]:
    """Why a suite's expectations could not all come true in run order against a fresh store (empty: they can).

    ``catalogue`` maps each catalogue vector's id to its bytes and expectation. Its accepted
    vectors (any code) run first, by id, as :func:`vectors.run.run_suite` sends them; a stateful
    vector expecting I99 must beat whatever counter they may have consumed. The stateful vectors
    must also pass the official DUIS XSD (``official``, or None) when the world configures it:
    their expectations are policy codes, not ``400 schema``.
    """
    planned: list[PlannedRequest] = []
    for vector_id in sorted(catalogue, key=lambda vector_id: f"{vector_id}.xml"):  # the runner's order
        data, expect = catalogue[vector_id]
        if expect.get("http_status") == 200:
            request = read_planned(vector_id, data, str(expect.get("response_code", ANY_CODE)))
            if request is not None:
                planned.append(request)
    problems = []
    for step in stateful:
        code = step.expect.get("response_code")
        if code is not None:
            request = read_planned(step.id, step.data, str(code))
            if request is None:
                problems.append(f"{step.id}: no RequestID and command variant to read back")
            else:
                planned.append(request)
        if official is not None and step.endpoint != ADMIN and not official.validate(etree.fromstring(step.data)):
            problems.append(f"{step.id}: refused by the official DUIS XSD: {official.error_log.last_error}")
    return problems + plan_errors(planned)


# --- the catalogue --------------------------------------------------------------------------------


class _UnsupportedPrepare(Exception):
    pass


class _RecordingRepository:
    """Stands in for the repository in ``prepare``: records certificates, refuses anything else."""

    def __init__(self) -> None:
        self.certificates: list[x509.Certificate] = []

    def add_certificate(self, certificate: x509.Certificate) -> None:
        self.certificates.append(certificate)

    def __getattr__(self, name: str) -> Any:
        raise _UnsupportedPrepare(name)


def _build_catalogue(
    vectors: Sequence[Vector], context: VectorContext, official: Any, report: GenerateReport
) -> dict[str, _Built]:
    """Every vector a live gateway can be sent, built; the others land in ``report.skipped``."""
    built: dict[str, _Built] = {}
    for vector in vectors:
        recorder = _RecordingRepository()
        reason = _skip_reason(vector, context, recorder)
        if reason is None:
            try:
                data = vector.build(context)
            except Exception as exc:  # noqa: BLE001  (a builder that needs the catalogue's own world)
                reason = f"cannot be built with the world's keys: {type(exc).__name__}: {exc}"
        if reason is not None:
            report.skipped[vector.id] = reason
            continue
        sidecar = _catalogue_sidecar(vector, data, official, report)
        built[vector.id] = _Built(data, sidecar, tuple(recorder.certificates))
    return built


def _skip_reason(vector: Vector, context: VectorContext, recorder: _RecordingRepository) -> str | None:
    if vector.known_issue:
        return f"known verifier issue: {vector.known_issue}"
    if vector.at is not None:
        return "checked at another instant (clock override); a live gateway uses its own clock"
    if vector.prepare is not None:
        try:
            vector.prepare(context, recorder)  # type: ignore[arg-type]
        except _UnsupportedPrepare as exc:
            return (
                f"prepare uses repository.{exc.args[0]} (e.g. a CRL revoking the signer), which would change "
                "the live gateway for every other vector"
            )
    return None


def _catalogue_sidecar(vector: Vector, data: bytes, official: Any, report: GenerateReport) -> dict[str, object]:
    sidecar: dict[str, object] = {
        "id": vector.id,
        "category": vector.category,
        "description": vector.description,
        "reference": vector.reference,
        "endpoint": SERVICE_S,
        "expect": _expectation(vector),
    }
    strict, left_out = strict_duis_verdict(vector)
    schema_error = _official_xsd_error(official, vector, data)
    if schema_error is not None:
        sidecar["catalogue_expect"] = sidecar["expect"]
        sidecar["expect"] = {"http_status": 400, "check": "schema"}
        sidecar["note"] = f"refused first by the official DUIS XSD configured for this world: {schema_error}"
        report.official_schema.append(vector.id)
        if strict is Verdict.ACCEPT:
            strict, left_out = None, f"the official DUIS XSD refuses it: {schema_error}"
    if strict is not None:
        sidecar["strict_duis"] = strict.value
    else:
        sidecar["outside_strict_duis"] = left_out
    return sidecar


def _expectation(vector: Vector) -> dict[str, object]:
    if vector.expect_check is None:
        return {"http_status": 200, "response_code": ANY_CODE}
    return {"http_status": STATUS_BY_CHECK[vector.expect_check], "check": vector.expect_check}


def _official_xsd_error(official: Any, vector: Vector, data: bytes) -> str | None:
    """Why the official DUIS XSD (a separate, earlier layer than the signature profile) refuses ``data``.

    Only for vectors the catalogue expects to pass the schema stage (accepted, or refused with a
    401 signature/certificate check): those a live gateway with the official XSD configured
    refuses as ``schema`` (400) first, e.g. the XMLDSig schema's ``xs:base64Binary`` and content model.
    """
    if official is None:
        return None
    if vector.expect_check is not None and STATUS_BY_CHECK[vector.expect_check] != 401:
        return None
    try:
        root = etree.fromstring(data, _PARSER)
    except etree.XMLSyntaxError:
        return None
    if official.validate(root):
        return None
    error = official.error_log.last_error
    return str(error.message) if error is not None else "invalid"


# --- the scenario, the files, the repository -----------------------------------------------------


def _stateful_vectors(world: World, now: dt.datetime, report: GenerateReport) -> list[StatefulVector]:
    """The policy scenario for this world, or none (with the reason in ``skipped.json``)."""
    try:
        scenario_world = ScenarioWorld.from_manifest(world.manifest)
    except ScenarioUnavailable as exc:
        report.skipped[SCENARIO_ID] = f"stateful policy vectors not generated: {exc}"
        return []
    return build_policy_vectors(scenario_world, CounterSource(COUNTER_START), now)


def _stateful_sidecar(step: StatefulVector, sequence: int) -> dict[str, object]:
    return {
        "id": step.id,
        "category": step.category,
        "description": step.description,
        "reference": step.reference,
        "endpoint": step.endpoint,
        "expect": dict(step.expect),
        "sequence": sequence,
        "relies_on": list(step.relies_on),
        "outside_strict_duis": SCENARIO_LEFT_OUT,
    }


def _write(out: Path, sidecar: Mapping[str, Any], data: bytes, report: GenerateReport) -> None:
    write_vector(out, sidecar, data)
    report.written.append(sidecar["id"])
    report.categories[sidecar["category"]] += 1


def _import_certificates(directory: Path, out: Path, certificates: Sequence[x509.Certificate]) -> list[str]:
    """Imports the vectors' extra certificates into the world's repository (one bundle in ``out``)."""
    unique = {certificate.fingerprint(hashes.SHA256()): certificate for certificate in certificates}
    if not unique:
        return []
    bundle = out / IMPORTED_CERTIFICATES
    bundle.write_bytes(b"".join(c.public_bytes(serialization.Encoding.PEM) for c in unique.values()))
    imported = SmkiRepository.load_world(directory).import_files(directory, [bundle])
    if imported.skipped:
        raise SuiteError("could not import: " + "; ".join(imported.skipped))
    return [certificate.describe() for certificate in imported.certificates]


def _write_index(out: Path, world: World, actor: str, now: dt.datetime, report: GenerateReport) -> None:
    write_json(out / SKIPPED, [{"id": key, "reason": value} for key, value in report.skipped.items()])
    write_json(out / INDEX, {
        "world": str(world.directory.resolve()),
        "signer": actor,
        "generated_at": now.isoformat(),
        "vectors": report.written,
        "categories": dict(report.categories),
        "skipped": len(report.skipped),
        "official_xsd": str(world.official_xsd) if world.official_xsd is not None else None,
        "refused_by_official_xsd": report.official_schema,
        "stateful": {
            "requires": FRESH_STORE_NOTE,
            "run_before": (now + dt.timedelta(days=ENABLEMENT_DAYS)).isoformat(),
            "vectors": len(report.written) - sum(report.categories[c] for c in CATEGORIES),
        },
    })
