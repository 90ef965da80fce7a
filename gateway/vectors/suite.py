"""``dcc-gateway vectors generate|run``: the vector catalogue as files, run against a live gateway.

Generate (``generate_suite``) builds every vector of :data:`gateway.vectors.VECTORS`
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
passed in every case.

When the world's ``gateway.toml`` names the official DUIS XSD, the live gateway
validates against it before the signature profile; vectors that XSD refuses
(malformed ``ds:Signature`` content, and one accepted vector, whose base64 has
non-zero padding bits that ``xs:base64Binary`` forbids) expect ``400 schema``,
with the catalogue's verdict kept as ``catalogue_expect`` and a ``note``.

Then the stateful vectors of :mod:`gateway.vectors.policy_vectors` (categories
``directive``, ``policy``, ``replay``, ``accepted``): the SoLR story as signed
directives and Service Requests that expect exact DUIS codes (I99, I0, E1-E43)
or a directive's ``accepted`` verdict. Their sidecars carry ``sequence`` (the
run order) and ``relies_on`` (the earlier vectors whose effect they need).
All their counters come from one :class:`~gateway.vectors.replay_plan.CounterSource`,
and :func:`~gateway.vectors.replay_plan.plan_errors` re-reads every request of
the suite in run order and refuses to write a suite whose I99/I0/E40
expectations could not all come true against a fresh store. They need a fresh
store (``dcc-gateway init`` + ``serve``): a second run against the same store
meets E40 where it expects I99, and the runner says so.

Run (``run_suite``) POSTs each ``OUT/<id>.xml`` to a loopback gateway and
compares the HTTP status and the problem's ``check`` (or the response code,
or a directive's verdict). Order: the catalogue's vectors first, by id (each
stands alone), then the stateful vectors by ``sequence``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import ipaddress
import json
import socket
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO, cast
from urllib.parse import urlsplit
from xml.etree import ElementTree

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from gateway.checks import Check
from gateway.clock import FixedClock  # noqa: F401  (documented: vectors with ``at`` need it in-process)
from gateway.vectors.catalogue import VECTORS
from gateway.vectors.policy_vectors import (
    ADMIN,
    COUNTER_START,
    ENABLEMENT_DAYS,
    POLICY_CATEGORIES,
    ScenarioUnavailable,
    ScenarioWorld,
    StatefulVector,
    build_policy_vectors,
)
from gateway.vectors.replay_plan import CounterSource, PlannedRequest, plan_errors, read_planned
from gateway.vectors.signature_vectors import CATEGORIES, Vector, VectorContext

ENDPOINT = "/api/v1/serviceS"
ANY_CODE = "*"
DEFAULT_ACTOR = "failed_supplier_is"
STATUS_BY_CHECK: Mapping[str, int] = {check.check_id: check.http_status for check in Check}
SUITE_CATEGORIES = (*CATEGORIES, *POLICY_CATEGORIES)
"""Every category a generated suite can hold, in report order."""
SCENARIO_ID = "policy-scenario"
"""The ``skipped.json`` id under which the stateful vectors are skipped as a whole."""
FRESH_STORE_NOTE = (
    "stateful vectors (those with a 'sequence') expect a fresh store from 'dcc-gateway init' + 'serve': "
    "a second run against the same store meets E40 (replay) where they expect I99"
)


class SuiteError(ValueError):
    """The world or the suite directory cannot be used."""


@dataclasses.dataclass
class GenerateReport:
    written: list[str] = dataclasses.field(default_factory=list)
    skipped: dict[str, str] = dataclasses.field(default_factory=dict)
    imported: list[str] = dataclasses.field(default_factory=list)
    categories: Counter[str] = dataclasses.field(default_factory=Counter)
    official_schema: list[str] = dataclasses.field(default_factory=list)
    """Vectors whose expectation became ``400 schema``: the world's official DUIS XSD refuses them first."""


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


# --- generate -------------------------------------------------------------------------


def world_context(directory: Path, *, actor: str = DEFAULT_ACTOR, now: dt.datetime | None = None) -> VectorContext:
    """A vector context signed by ``actor``'s world keys, its extra certificates from the world CA."""
    from gateway.runtime import open_world
    from gateway.vectors.context import build_context
    from gateway.world import CA_NAME, CERT_NOT_AFTER, CERT_NOT_BEFORE
    from pki import IssuedCertificate, TestSmkiCa

    world = open_world(directory)
    manifest = world.manifest
    if manifest.seed is None:
        raise SuiteError(f"{directory}: manifest.json has no seed; cannot rebuild the world CA")
    ca = TestSmkiCa.create(
        manifest.seed.encode("utf-8"), not_before=CERT_NOT_BEFORE, not_after=CERT_NOT_AFTER, name=CA_NAME
    )
    org = x509.load_pem_x509_certificate(manifest.smki.org_ca.read_bytes())
    if org != ca.org.certificate:
        raise SuiteError(f"{directory}: the organisation CA is not the one the seed gives")
    if actor not in manifest.actors:
        raise SuiteError(f"{directory}: no actor {actor!r} in manifest.json")
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
    from lxml import etree

    if official is None:
        return None
    if vector.expect_check is not None and STATUS_BY_CHECK[vector.expect_check] != 401:
        return None
    try:
        root = etree.fromstring(data, etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False))
    except etree.XMLSyntaxError:
        return None
    if official.validate(root):
        return None
    error = official.error_log.last_error
    return str(error.message) if error is not None else "invalid"


def generate_suite(
    directory: Path, out: Path, *, actor: str = DEFAULT_ACTOR, vectors: Sequence[Vector] = VECTORS
) -> GenerateReport:
    """Writes ``OUT/<id>.xml`` + ``OUT/<id>.json`` per vector, ``OUT/skipped.json``, ``OUT/suite.json``."""
    from gateway.runtime import open_world
    from gateway.schema import compile_xsd
    from gateway.smki.repository import SmkiRepository

    context = world_context(directory, actor=actor)
    world = open_world(directory)
    official_path = world.official_xsd
    official = compile_xsd(official_path) if official_path is not None else None
    out.mkdir(parents=True, exist_ok=True)
    report = GenerateReport()
    to_import: dict[bytes, x509.Certificate] = {}
    written: dict[str, tuple[bytes, Mapping[str, object]]] = {}
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
        for certificate in recorder.certificates:
            to_import[certificate.fingerprint(certificate.signature_hash_algorithm or _sha256())] = certificate
        (out / f"{vector.id}.xml").write_bytes(data)
        sidecar: dict[str, object] = {
            "id": vector.id,
            "category": vector.category,
            "description": vector.description,
            "reference": vector.reference,
            "endpoint": ENDPOINT,
            "expect": _expectation(vector),
        }
        schema_error = _official_xsd_error(official, vector, data)
        if schema_error is not None:
            sidecar["catalogue_expect"] = sidecar["expect"]
            sidecar["expect"] = {"http_status": 400, "check": "schema"}
            sidecar["note"] = f"refused first by the official DUIS XSD configured for this world: {schema_error}"
            report.official_schema.append(vector.id)
        (out / f"{vector.id}.json").write_text(json.dumps(sidecar, indent=2) + "\n", encoding="utf-8")
        report.written.append(vector.id)
        report.categories[vector.category] += 1
        written[vector.id] = (data, cast(Mapping[str, object], sidecar["expect"]))
    stateful = _stateful_vectors(world.manifest, context.now, report)
    _check_run_order(written, stateful, official)
    for sequence, step in enumerate(stateful, start=1):
        (out / f"{step.id}.xml").write_bytes(step.data)
        step_sidecar = {
            "id": step.id,
            "category": step.category,
            "description": step.description,
            "reference": step.reference,
            "endpoint": step.endpoint,
            "expect": dict(step.expect),
            "sequence": sequence,
            "relies_on": list(step.relies_on),
        }
        (out / f"{step.id}.json").write_text(json.dumps(step_sidecar, indent=2) + "\n", encoding="utf-8")
        report.written.append(step.id)
        report.categories[step.category] += 1
    if to_import:
        bundle = out / "imported-certificates.pem"
        bundle.write_bytes(b"".join(c.public_bytes(serialization.Encoding.PEM) for c in to_import.values()))
        repository = SmkiRepository.load_world(directory)
        imported = repository.import_files(directory, [bundle])
        if imported.skipped:
            raise SuiteError("could not import: " + "; ".join(imported.skipped))
        report.imported = [c.describe() for c in imported.certificates]
    skipped = [{"id": key, "reason": value} for key, value in report.skipped.items()]
    (out / "skipped.json").write_text(json.dumps(skipped, indent=2) + "\n", encoding="utf-8")
    (out / "suite.json").write_text(
        json.dumps(
            {
                "world": str(directory.resolve()),
                "signer": actor,
                "generated_at": context.now.isoformat(),
                "vectors": report.written,
                "categories": dict(report.categories),
                "skipped": len(report.skipped),
                "official_xsd": str(official_path) if official_path is not None else None,
                "refused_by_official_xsd": report.official_schema,
                "stateful": {
                    "requires": FRESH_STORE_NOTE,
                    "run_before": (context.now + dt.timedelta(days=ENABLEMENT_DAYS)).isoformat(),
                    "vectors": len(report.written) - sum(report.categories[c] for c in CATEGORIES),
                },
            },
            indent=2,
        )
        + "\n",
        encoding="utf-8",
    )
    return report


def _stateful_vectors(manifest: Any, now: dt.datetime, report: GenerateReport) -> list[StatefulVector]:
    """The policy scenario for this world, or none (with the reason in ``skipped.json``)."""
    try:
        world = ScenarioWorld.from_manifest(manifest)
    except ScenarioUnavailable as exc:
        report.skipped[SCENARIO_ID] = f"stateful policy vectors not generated: {exc}"
        return []
    return build_policy_vectors(world, CounterSource(COUNTER_START), now)


def _check_run_order(
    catalogue: Mapping[str, tuple[bytes, Mapping[str, object]]], stateful: Sequence[StatefulVector], official: Any
) -> None:
    """Refuses a suite whose expectations could not all come true in run order against a fresh store.

    The catalogue's accepted vectors (any code) run first, by id, as :func:`run_suite` sends them; a
    stateful vector expecting I99 must beat whatever counter they may have consumed. The stateful
    vectors must also pass the official DUIS XSD when the world configures it: their expectations are
    policy codes, not ``400 schema``.
    """
    planned: list[PlannedRequest] = []
    for vector_id in sorted(catalogue, key=lambda vector_id: f"{vector_id}.xml"):  # run_suite's order
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
        if official is not None and step.endpoint != ADMIN:
            from lxml import etree

            if not official.validate(etree.fromstring(step.data)):
                problems.append(f"{step.id}: refused by the official DUIS XSD: {official.error_log.last_error}")
    problems += plan_errors(planned)
    if problems:
        raise SuiteError("the suite could not pass against a fresh store:\n  " + "\n  ".join(problems))


def _sha256() -> Any:
    from cryptography.hazmat.primitives import hashes

    return hashes.SHA256()


# --- run ------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Outcome:
    id: str
    category: str
    expected: str
    got: str
    ok: bool
    seconds: float
    stateful: bool = False
    """A vector of the ordered policy scenario (its sidecar has a ``sequence``)."""


def require_loopback(url: str) -> str:
    """The URL without a trailing slash, or SuiteError when its host is not a loopback address."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise SuiteError(f"not an http(s) URL: {url}")
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(parts.hostname, parts.port or 80)}
    except OSError as exc:
        raise SuiteError(f"cannot resolve {parts.hostname}: {exc}") from exc
    if not addresses or not all(ipaddress.ip_address(a.split("%")[0]).is_loopback for a in addresses):
        raise SuiteError(f"refusing a non-loopback gateway: {url} ({', '.join(sorted(addresses))})")
    return url.rstrip("/")


def _post(url: str, data: bytes, timeout: float) -> tuple[int, str, bytes]:
    request = urllib.request.Request(url, data=data, method="POST", headers={"Content-Type": "application/xml"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.headers.get("Content-Type", ""), response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers.get("Content-Type", ""), error.read()


def _response_code(body: bytes) -> str | None:
    from lxml import etree

    try:
        root = etree.fromstring(body, etree.XMLParser(resolve_entities=False, no_network=True))
    except etree.XMLSyntaxError:
        return None
    if etree.QName(root).localname != "Response":
        return None
    if not any(etree.QName(e).localname == "Signature" for e in root):
        return None
    codes = [e.text for e in root.iter() if isinstance(e.tag, str) and etree.QName(e).localname == "ResponseCode"]
    return (codes[0] or "").strip() if codes else None


def _judge(expect: Mapping[str, Any], status: int, content_type: str, body: bytes) -> tuple[str, bool]:
    if "accepted" in expect:
        return _judge_directive(expect, status, content_type, body)
    if status != 200:
        check = None
        if content_type.startswith("application/problem+json"):
            try:
                check = json.loads(body).get("check")
            except (ValueError, AttributeError):
                check = None
        got = f"{status} {check}"
        return got, status == expect["http_status"] and check == expect.get("check")
    code = _response_code(body)
    got = f"200 {code if code is not None else '(no signed sr:Response)'}"
    if expect["http_status"] != 200 or code is None:
        return got, False
    wanted = expect.get("response_code", ANY_CODE)
    return got, wanted == ANY_CODE or wanted == code


def _judge_directive(expect: Mapping[str, Any], status: int, content_type: str, body: bytes) -> tuple[str, bool]:
    """A directive's answer: HTTP 200 with JSON ``{"accepted": bool, "reason": ...}``."""
    verdict = None
    if status == 200 and content_type.startswith("application/json"):
        try:
            answer = json.loads(body)
        except ValueError:
            answer = None
        if isinstance(answer, dict) and isinstance(answer.get("accepted"), bool):
            verdict = answer["accepted"]
    if verdict is None:
        return f"{status} (no directive verdict)", False
    got = f"200 {'accepted' if verdict else 'refused'}"
    return got, expect["http_status"] == 200 and expect["accepted"] is verdict


def _wanted(expect: Mapping[str, Any]) -> str:
    if "accepted" in expect:
        return f"{expect['http_status']} {'accepted' if expect['accepted'] else 'refused'}"
    return f"{expect['http_status']} {expect.get('check', expect.get('response_code'))}"


def load_suite(out: Path) -> list[dict[str, Any]]:
    """The sidecars in run order: the catalogue's (no ``sequence``) by file name, then the rest by ``sequence``."""
    sidecars = []
    for path in sorted(out.glob("*.json")):
        if path.name in ("skipped.json", "suite.json"):
            continue
        sidecar = json.loads(path.read_text(encoding="utf-8"))
        sidecar["_xml"] = path.with_suffix(".xml")
        sidecars.append(sidecar)
    if not sidecars:
        raise SuiteError(f"{out}: no vectors (run 'dcc-gateway vectors generate' first)")
    return sorted(sidecars, key=lambda sidecar: (sidecar.get("sequence", 0), sidecar["_xml"].name))


def run_suite(out: Path, url: str, *, timeout: float = 30.0) -> list[Outcome]:
    base = require_loopback(url)
    outcomes = []
    for sidecar in load_suite(out):
        expect = sidecar["expect"]
        started = time.monotonic()
        try:
            status, content_type, body = _post(base + sidecar["endpoint"], sidecar["_xml"].read_bytes(), timeout)
            got, ok = _judge(expect, status, content_type, body)
        except (OSError, urllib.error.URLError) as exc:
            got, ok = f"error: {exc}", False
        outcomes.append(
            Outcome(
                sidecar["id"],
                sidecar.get("category", "?"),
                _wanted(expect),
                got,
                ok,
                time.monotonic() - started,
                stateful="sequence" in sidecar,
            )
        )
    return outcomes


def category_counts(outcomes: Sequence[Outcome]) -> dict[str, dict[str, int]]:
    counts: dict[str, dict[str, int]] = {}
    for outcome in outcomes:
        entry = counts.setdefault(outcome.category, {"total": 0, "passed": 0, "mismatched": 0})
        entry["total"] += 1
        entry["passed" if outcome.ok else "mismatched"] += 1
    order = {category: index for index, category in enumerate(SUITE_CATEGORIES)}
    return dict(sorted(counts.items(), key=lambda item: order.get(item[0], len(order))))


def print_report(outcomes: Sequence[Outcome], stream: TextIO, *, verbose: bool = True) -> None:
    width = max((len(o.id) for o in outcomes), default=10)
    if verbose:
        print(f"{'vector':<{width}}  {'category':<12}  {'expected':<34}  {'got':<34}  result", file=stream)
        for o in outcomes:
            print(f"{o.id:<{width}}  {o.category:<12}  {o.expected:<34}  {o.got:<34}  {'ok' if o.ok else 'MISMATCH'}",
                  file=stream)
    print(f"\n{'category':<14} {'total':>6} {'passed':>7} {'mismatched':>11}", file=stream)
    for category, entry in category_counts(outcomes).items():
        print(f"{category:<14} {entry['total']:>6} {entry['passed']:>7} {entry['mismatched']:>11}", file=stream)
    failed = sum(not o.ok for o in outcomes)
    print(f"{'all':<14} {len(outcomes):>6} {len(outcomes) - failed:>7} {failed:>11}", file=stream)
    if any(o.stateful and not o.ok and o.got == "200 E40" for o in outcomes):
        print(f"\nnote: {FRESH_STORE_NOTE}", file=stream)


def write_junit(outcomes: Sequence[Outcome], path: Path) -> None:
    suites = ElementTree.Element("testsuites", name="dcc-gateway vectors")
    for category in dict.fromkeys(o.category for o in outcomes):
        members = [o for o in outcomes if o.category == category]
        suite = ElementTree.SubElement(
            suites,
            "testsuite",
            name=category,
            tests=str(len(members)),
            failures=str(sum(not o.ok for o in members)),
            time=f"{sum(o.seconds for o in members):.3f}",
        )
        for o in members:
            case = ElementTree.SubElement(suite, "testcase", classname=f"vectors.{category}", name=o.id,
                                          time=f"{o.seconds:.3f}")
            if not o.ok:
                failure = ElementTree.SubElement(case, "failure", message=f"expected {o.expected}, got {o.got}")
                failure.text = f"expected {o.expected}\ngot {o.got}\n"
    ElementTree.ElementTree(suites).write(path, encoding="utf-8", xml_declaration=True)
