"""The kit against gateways built with weakened verifiers: it must catch exactly what each weakening lets through.

Two throwaway weakenings, built here and nowhere else (never in shipped code):

``xmldsig-profile``
    The DUIS signature profile is skipped: where it would refuse a request, a
    generic XMLDSig verifier decides instead (signxml, with the key of the
    certificate KeyInfo names in the repository; the certificate must still be
    a valid xmlSign one), and the request is read from the document as it
    arrived. The verifier DOMAIN.md's "Known XML-signature pitfalls" warn of.
``certificate-profile``
    The repository forgets every certificate's SMKI profile violations, so the
    verifier's certificate-profile check never fires.

Each weakened gateway gets a fresh store of one generated world. The oracle does
not use the kit's judging: every catalogue vector of the suite is verified
in-process by the same weakened verifier and compared with its sidecar. The kit,
over HTTP, must report a miss for exactly the vectors where they differ, of the
same kind (an accepted attack, a refusal for another reason), and nothing else;
``strict-duis`` must report exactly the wrong verdicts (not the wrong reasons)
among the vectors it judges.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, cast

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from lxml import etree

from gateway.server import create_app
from gateway.checks import Check, VerificationError
from gateway.cli import main
from gateway.clock import Clock, SystemClock
from gateway.namespaces import DS
from gateway.runtime import World, open_world
from gateway.smki.certificate import KeyUsage, RoleCode, SmkiCertificate
from gateway.smki.names import NameKey
from gateway.smki.repository import SmkiRepository
from gateway.verify import documents
from gateway.verify.documents import VerifiedRequest
from gateway.verify.verifier import RevocationDelay, Verifier
from gateway.world import init_world
from tests.live_gateway import LiveGateway
from vectors import Miss, generate_suite

DUIS_PROFILE_CHECKS = frozenset(
    {
        Check.SIGNATURE_DUPLICATE,
        Check.SIGNATURE_POSITION,
        Check.SIGNATURE_STRUCTURE,
        Check.SIGNATURE_OBJECT,
        Check.KEY_INFO,
        Check.REFERENCE,
        Check.TRANSFORMS,
        Check.C14N_ALGORITHM,
        Check.SIGNATURE_ALGORITHM,
        Check.DIGEST_ALGORITHM,
    }
)
"""The checks that are the DUIS XMLDSig profile rather than XMLDSig's own validation or the certificate's."""

_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)


# --- the weakenings (throwaway) ------------------------------------------------------------------


class GenericXmlDsigFallback:
    """The gateway's verifier, but a generic XMLDSig check where its DUIS profile would refuse."""

    def __init__(self, strict: Verifier, repository: SmkiRepository, clock: Clock) -> None:
        self._strict = strict
        self._repository = repository
        self._clock = clock

    def __getattr__(self, name: str) -> Any:
        return getattr(self._strict, name)

    def verify_request(self, data: bytes) -> VerifiedRequest:
        try:
            return self._strict.verify_request(data)
        except VerificationError as refusal:
            if refusal.check not in DUIS_PROFILE_CHECKS:
                raise
            return self._generic(data, refusal)

    def _generic(self, data: bytes, refusal: VerificationError) -> VerifiedRequest:
        signxml = pytest.importorskip("signxml")
        try:
            root = etree.fromstring(data, _PARSER)
            signer = self._named_certificate(root)
            pem = signer.certificate.public_bytes(serialization.Encoding.PEM).decode()
            config = signxml.SignatureConfiguration(verification_time=self._clock.now(), location=".//")
            signxml.XMLVerifier().verify(data, x509_cert=pem, expect_config=config)
            request = documents.signed_request(root, signer)  # the document as it arrived, not what was signed
        except Exception as exc:  # noqa: BLE001  (a generic verifier refusing, whatever the reason)
            raise refusal from exc
        if signer.eui64 != request.originator:
            raise VerificationError(Check.SIGNER_MISMATCH, f"signed by {signer.eui64}, not {request.originator}")
        return request

    def _named_certificate(self, root: etree._Element) -> SmkiCertificate:
        """The certificate the first X509IssuerSerial anywhere names, if it is a valid, unrevoked xmlSign one."""
        issuer = root.findtext(f".//{{{DS}}}X509IssuerName")
        serial = root.findtext(f".//{{{DS}}}X509SerialNumber")
        if issuer is None or serial is None:
            raise ValueError("no X509IssuerSerial")
        found = self._repository.lookup(NameKey.parse(issuer), int(serial))
        now = self._clock.now()
        if (
            found is None
            or found.profile_error is not None
            or self._repository.chain_error(found) is not None
            or found.role != RoleCode.XML_SIGN
            or found.key_usage is not KeyUsage.DIGITAL_SIGNATURE
            or not found.not_before <= now <= found.not_after
            or self._repository.revoked_at(found) is not None
        ):
            raise ValueError("not a trusted xmlSign certificate")
        return found


@dataclasses.dataclass(frozen=True)
class GenericXmlDsigWorld(World):
    def verifier(
        self, clock: Clock | None = None, revocation_delay: RevocationDelay | None = None, *, own_schemas: bool = False
    ) -> Verifier:
        strict = super().verifier(clock, revocation_delay, own_schemas=own_schemas)
        return cast(Verifier, GenericXmlDsigFallback(strict, self.repository, clock or SystemClock()))


class ProfileBlindRepository(SmkiRepository):
    """Forgets each certificate's SMKI profile violations (when it has a P-256 key to verify with)."""

    def lookup(self, issuer: NameKey, serial: int) -> SmkiCertificate | None:
        found = super().lookup(issuer, serial)
        if found is None or found.profile_error is None:
            return found
        key = found.certificate.public_key()
        if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
            return found
        return dataclasses.replace(found, profile_error=None, public_key=key)


def xmldsig_profile_skipped(world: World) -> World:
    return GenericXmlDsigWorld(**{field.name: getattr(world, field.name) for field in dataclasses.fields(world)})


def certificate_profile_skipped(world: World) -> World:
    return dataclasses.replace(world, repository=ProfileBlindRepository.load_world(world.directory))


WEAKENINGS: dict[str, Callable[[World], World]] = {
    "xmldsig-profile": xmldsig_profile_skipped,
    "certificate-profile": certificate_profile_skipped,
}


# --- fixtures --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def suite(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("weakened")
    world, out = root / "world", root / "suite"
    init_world(world, devices=20)
    generate_suite(world, out)
    return world, out


@dataclasses.dataclass(frozen=True)
class Weakened:
    name: str
    world: World
    url: str


@pytest.fixture(scope="module", params=sorted(WEAKENINGS))
def weakened(
    request: pytest.FixtureRequest, suite: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Weakened]:
    world_dir, _ = suite
    world = WEAKENINGS[request.param](open_world(world_dir))
    store = tmp_path_factory.mktemp(f"store-{request.param}") / "store.db"
    live = LiveGateway(create_app(world, store_url=f"sqlite:///{store}"))
    live.start()
    yield Weakened(request.param, world, live.url)
    live.stop()


def _catalogue(out: Path) -> dict[str, dict[str, Any]]:
    paths = [path for path in sorted(out.glob("*.json")) if path.name not in ("suite.json", "skipped.json")]
    sidecars = [json.loads(path.read_text()) for path in paths]
    return {s["id"]: s for s in sidecars if "sequence" not in s}


def in_process_misses(world: World, out: Path) -> dict[str, Miss]:
    """What the weakened verifier gets wrong, vector by vector, without the kit: verified here and
    compared with each sidecar's expectation."""
    verifier = world.verifier(SystemClock())
    misses: dict[str, Miss] = {}
    for vector_id, sidecar in _catalogue(out).items():
        expect = sidecar["expect"]
        try:
            verifier.verify_request((out / f"{vector_id}.xml").read_bytes())
        except VerificationError as refusal:
            if expect["http_status"] == 200:
                misses[vector_id] = Miss.REFUSED_VALID
            elif (refusal.http_status, refusal.check_id) != (expect["http_status"], expect["check"]):
                misses[vector_id] = Miss.WRONG_REASON
            continue
        except Exception:  # noqa: BLE001  (the live gateway answers it 500 internal-error)
            misses[vector_id] = Miss.NO_VERDICT
            continue
        if expect["http_status"] != 200:
            misses[vector_id] = Miss.ACCEPTED_ATTACK
    return misses


def _run(out: Path, url: str, expect: str, capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    code = main(["vectors", "run", str(out), "--url", url, "--expect", expect, "--json"])
    report: dict[str, Any] = json.loads(capsys.readouterr().out)
    assert code == (0 if report["ok"] else 1)
    return report


# --- the kit catches them --------------------------------------------------------------------------


def test_ours_reports_exactly_what_the_weakened_verifier_gets_wrong(
    weakened: Weakened, suite: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    _, out = suite
    report = _run(out, weakened.url, "ours", capsys)
    reported = {miss["id"]: Miss(miss["kind"]) for miss in report["misses"]}
    assert reported == in_process_misses(weakened.world, out)
    assert reported, "the weakening changed no verdict: it is not a weakening"
    assert not report["ok"]
    assert all(miss["why_it_matters"] and miss["reference"] for miss in report["misses"])
    # The policy is not weakened: the stateful scenario still passes on the fresh store.
    stateful = {v["id"] for v in report["vectors"]} - set(_catalogue(out))
    assert stateful and not stateful & set(reported)


def test_strict_duis_reports_the_wrong_verdicts_among_the_vectors_it_judges(
    weakened: Weakened, suite: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    _, out = suite
    catalogue = _catalogue(out)
    judged = {vector_id for vector_id, sidecar in catalogue.items() if "strict_duis" in sidecar}
    expected = {
        vector_id: miss
        for vector_id, miss in in_process_misses(weakened.world, out).items()
        if vector_id in judged and miss is not Miss.WRONG_REASON  # strict-duis judges the verdict, not the reason
    }
    report = _run(out, weakened.url, "strict-duis", capsys)
    assert {miss["id"]: Miss(miss["kind"]) for miss in report["misses"]} == expected
    assert expected, "strict-duis must catch this weakening too"


def test_the_weakenings_let_through_what_they_should(weakened: Weakened, suite: tuple[Path, Path]) -> None:
    """Fixed facts, so that the oracle above cannot drift into agreeing with a broken kit."""
    _, out = suite
    misses = in_process_misses(weakened.world, out)
    classes = {_catalogue(out)[vector_id]["category"] for vector_id in misses}
    if weakened.name == "xmldsig-profile":
        # DOMAIN.md: signxml and xmlsec1 verify these; only the profile stops them.
        for vector_id in ("xsw-evil-request-inside-object", "structure-mixed-ds-prefixes",
                          "content-namespace-added-on-signature", "key-info-x509-certificate-added"):
            assert misses.get(vector_id) is Miss.ACCEPTED_ATTACK, vector_id
        assert classes <= {"wrapping", "content", "profile"}, classes
    else:
        assert misses.get("certificate-profile-omit-policy") is Miss.ACCEPTED_ATTACK
        # keyUsage the profile check no longer reads: the role check still refuses it, for another reason.
        assert misses.get("certificate-profile-key-usage-non-critical") is Miss.WRONG_REASON
        assert all(vector_id.startswith("certificate-profile-") for vector_id in misses), misses
        # A role the OU does not give was the profile check's to refuse: the role check, reached now, crashes.
        assert misses.get("certificate-profile-omit-ou") is Miss.NO_VERDICT
    assert Miss.REFUSED_VALID not in misses.values()
