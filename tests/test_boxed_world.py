"""``dcc-gateway init DIR --boxed KEYSTORE``: a world in DCC Boxed's identities, from the real ZAZ1 keystore.

The keystore and the DUIS templates are read from ``../shared`` (never copied); the tests skip
when they are absent.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from lxml import etree

from gateway.boxed import BOXED_DEVICES, NETWORK_MPIDS, SUPPLIER_MPIDS, BoxedReport, init_boxed_world
from gateway.checks import Check, VerificationError
from gateway.cli import main
from gateway.clock import FixedClock
from gateway.eui64 import Eui64
from gateway.manifest import Manifest, load_manifest
from gateway.namespaces import SR
from gateway.runtime import open_world
from gateway.signing import SigningKey, sign_bytes
from gateway.smki.names import NameKey
from gateway.smki.repository import SmkiRepository
from gateway.world import ACTORS, init_world
from pki import RemotePartyRole, TestSmkiCa
from tests import factories
from tests.shared_data import shared_path

NOW = dt.datetime(2026, 6, 1, tzinfo=dt.timezone.utc)
SUPPLIER = Eui64.parse("90-B3-D5-1F-30-01-00-00")
NETWORK = Eui64.parse("90-B3-D5-1F-30-02-00-00")
OTHER = Eui64.parse("00-DB-12-34-56-78-00-04")
DSP = Eui64.parse("90-B3-D5-1F-30-00-00-02")
ZAZ1_ISSUER = NameKey.parse("CN=Z1, OU=07")
TEST_PKI_ISSUER = NameKey.parse("OU=07, CN=DG")
TEST_PKI_ACTORS = ("solr_is", "srp_sc", "srp_sro", "srp_aro", "authority", "pma", "dcc_operator")
_SR = f"{{{SR}}}"


def keystore_path() -> Path:
    return shared_path("zaz1", "keystore.json")


def keystore_json() -> dict[str, dict[str, dict[str, dict[str, object]]]]:
    raw: dict[str, dict[str, dict[str, dict[str, object]]]] = json.loads(keystore_path().read_text())
    return raw


def entry_named(name: str) -> dict[str, object]:
    return next(e for usages in keystore_json().values() for serials in usages.values() for e in serials.values() if e["name"] == name)


@pytest.fixture(scope="module")
def boxed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Manifest, BoxedReport]:
    directory = tmp_path_factory.mktemp("boxed-world")
    manifest, report = init_boxed_world(directory, keystore_path(), now=NOW, devices=20, seed="boxed-tests")
    return directory, manifest, report


@pytest.fixture(scope="module")
def manifest(boxed: tuple[Path, Manifest, BoxedReport]) -> Manifest:
    return boxed[1]


# --- who is who ------------------------------------------------------------------------------


def test_the_zaz1_users_are_registered_with_the_roles_their_certificates_give(manifest: Manifest) -> None:
    zaz1 = {name: (a.user_id, a.kind, a.party, a.role, a.roles) for name, a in manifest.actors.items() if name not in TEST_PKI_ACTORS}
    assert zaz1 == {
        "failed_supplier_is": (SUPPLIER, "supplier", "failed-supplier", "IS", ("IS", "GS")),
        "network_ed": (NETWORK, "network", "network-operator", "ED", ("ED", "GT")),
        "other_ou": (OTHER, "other", "other-user", "OU", ("OU",)),
    }
    assert manifest.party("failed-supplier").mpids == SUPPLIER_MPIDS == manifest.actor("failed_supplier_is").mpids
    assert manifest.party("network-operator").mpids == NETWORK_MPIDS
    assert all(actor.response_url for actor in manifest.actors.values() if actor.role is not None)


def test_the_solr_actors_boxed_lacks_come_from_the_test_pki(manifest: Manifest) -> None:
    default = {actor.name: actor for actor in ACTORS}
    for name in TEST_PKI_ACTORS:
        actor = manifest.actor(name)
        assert (actor.user_id, actor.kind, actor.role) == (default[name].user_id, default[name].kind, default[name].role)
        issuer = x509.load_pem_x509_certificate(actor.xml_sign.cert.read_bytes()).issuer
        assert NameKey.from_name(issuer) == TEST_PKI_ISSUER
    assert manifest.actor("srp_sc").agent_for == "failed-supplier"


def _same_key(pair_cert: Path, pair_key: Path, keystore_name: str) -> None:
    entry = entry_named(keystore_name)
    certificate = x509.load_pem_x509_certificate(pair_cert.read_bytes())
    assert certificate == x509.load_pem_x509_certificate(str(entry["certificate"]).encode())
    key = serialization.load_pem_private_key(pair_key.read_bytes(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    signature = key.sign(b"proof", ec.ECDSA(hashes.SHA256()))
    public = certificate.public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey)
    public.verify(signature, b"proof", ec.ECDSA(hashes.SHA256()))


def test_keys_are_the_keystore_keys(manifest: Manifest) -> None:
    supplier = manifest.actor("failed_supplier_is")
    _same_key(supplier.xml_sign.cert, supplier.xml_sign.key, "xml-sign-90B3D51F30010000-ds")
    assert supplier.digital_signing is not None
    # The Supplier DS key DCC Boxed's tools use (the RTDS Pre-Commands are signed with it), not its Z1b twin.
    _same_key(supplier.digital_signing.cert, supplier.digital_signing.key, "Z1-supplier-ds")
    _same_key(manifest.actor("network_ed").xml_sign.cert, manifest.actor("network_ed").xml_sign.key, "xml-sign-90B3D51F30020000-ds")
    gateway = manifest.gateway
    assert gateway.dsp_user_id == DSP and gateway.response_key is not None
    _same_key(gateway.response_cert, gateway.response_key, "dsp-xml-sign-90B3D51F30000002-ds")


def test_no_keystore_name_becomes_a_path(boxed: tuple[Path, Manifest, BoxedReport]) -> None:
    directory, _, _ = boxed
    zaz1 = sorted(p.relative_to(directory / "pki" / "zaz1").as_posix() for p in (directory / "pki" / "zaz1").rglob("*.pem"))
    assert zaz1 and all(len(part.split("/")) == 2 and part.split("/")[0] == part.split("/")[0].upper() for part in zaz1)
    keys = [p for p in zaz1 if p.endswith(".key.pem")]
    # the DSP's 89, the supplier's 87, 02 and prepayment key-agreement 02, the network operator's and the other user's 87
    assert len(keys) == 6


# --- devices -----------------------------------------------------------------------------------


def _template_targets() -> dict[Eui64, list[str]]:
    targets: dict[Eui64, list[str]] = {}
    for path in sorted(shared_path("duis", "templates").iterdir()):
        request_id = etree.parse(str(path)).findtext(f"{_SR}Header/{_SR}RequestID") or ""
        target = Eui64.parse(request_id.split(":")[1])
        if str(target).startswith("00-DB-"):
            targets.setdefault(target, []).append(path.name)
    return targets


def test_every_device_the_templates_address_is_in_the_fleet(manifest: Manifest) -> None:
    targets = _template_targets()
    assert set(targets) == {device.device_id for device in BOXED_DEVICES}
    for device_id in targets:
        device = manifest.device(device_id)
        assert device.smets == 2
        gas = device.type in ("GSME", "GPF")
        assert device.supplier_mpid == SUPPLIER_MPIDS[1 if gas else 0]
        assert device.network_mpid == NETWORK_MPIDS[1 if gas else 0]
        assert device.is_meter == (device.mpxn is not None) == (device.payment_mode is not None)


def test_device_types_agree_with_what_the_templates_say(manifest: Manifest) -> None:
    """Where a template's body names a device's type (opt-in, pre-notification) it is the fleet's type;
    electricity (ECS) use cases go to the ESMEs and the comms hub, gas (GCS) ones to the GSME and GPF."""
    declared = 0
    for path in sorted(shared_path("duis", "templates").iterdir()):
        body = etree.parse(str(path)).find(f"{_SR}Body")
        assert body is not None
        for node in body.iter(f"{_SR}DeviceType"):
            device_id = node.getparent().findtext(f"{_SR}DeviceID")  # type: ignore[union-attr]
            if device_id:
                assert manifest.device(device_id).type == node.text, path.name
                declared += 1
    assert declared >= 2
    for device_id, names in _template_targets().items():
        kind = manifest.device(device_id).type
        families = {name[:3] for name in names}
        if "ECS" in families:
            assert kind in ("ESME", "CHF"), (device_id, names)
        if "GCS" in families:
            assert kind in ("GSME", "GPF"), (device_id, names)
    assert manifest.device("00-DB-12-34-56-78-90-A0").mpxn == "1312345678111"  # 8.6 Service Opt In


def test_the_mixed_fleet_follows_with_the_boxed_supplier_as_the_failed_supplier(manifest: Manifest, tmp_path: Path) -> None:
    mixed = manifest.devices[len(BOXED_DEVICES):]
    assert len(mixed) == 20
    default = init_world(tmp_path / "default", devices=20, seed="boxed-tests").devices
    renamed = {"FAIL": SUPPLIER_MPIDS[0], "FALG": SUPPLIER_MPIDS[1]}
    assert [(d.device_id, d.type, d.smets, d.payment_mode, d.credit_pence) for d in mixed] == [
        (d.device_id, d.type, d.smets, d.payment_mode, d.credit_pence) for d in default
    ]
    assert [d.supplier_mpid for d in mixed] == [renamed.get(d.supplier_mpid, d.supplier_mpid) for d in default]
    assert {d.supplier_mpid for d in mixed} == {*SUPPLIER_MPIDS, "SOLR", "SOLG"}


# --- SMKI ------------------------------------------------------------------------------------------


def test_the_smki_repository_holds_both_pkis(boxed: tuple[Path, Manifest, BoxedReport], manifest: Manifest) -> None:
    repository = SmkiRepository.load_world(boxed[0])
    by_subject = {(c.eui64, c.role) for c in repository.certificates()}
    assert {(SUPPLIER, 0x87), (SUPPLIER, 0x02), (NETWORK, 0x87), (OTHER, 0x87), (DSP, 0x89), (DSP, 0x04)} <= by_subject
    for name in TEST_PKI_ACTORS:
        assert (manifest.actor(name).user_id, 0x87) in by_subject
    ours = [c for c in repository.certificates() if c.issuer == TEST_PKI_ISSUER]
    zaz1 = [c for c in repository.certificates() if c.issuer != TEST_PKI_ISSUER]
    assert len(ours) == len(TEST_PKI_ACTORS) + 2  # + solr_is's DS and prepayment key-agreement certificates
    assert len(zaz1) == 31  # every readable certificate of the keystore
    assert {c.issuer for c in zaz1} == {ZAZ1_ISSUER, NameKey.parse("CN=OB, OU=07")}  # the other user's 7F are OB's
    # Several organisation CAs: the test PKI's is in the repository, so its certificates must chain to it;
    # DCC Boxed's are not published, so their certificates are trusted as imported (SPEC §4, per issuer).
    assert all(repository.chain_error(c) is None for c in zaz1 + ours)


def test_a_certificate_naming_the_test_ca_but_not_issued_by_it_is_refused(boxed: tuple[Path, Manifest, BoxedReport]) -> None:
    impostor_ca = TestSmkiCa.create(b"impostor", not_before=factories.NOW - dt.timedelta(days=1),
                                    not_after=factories.NOW + dt.timedelta(days=3650), name="DG")
    impostor = impostor_ca.issue("impostor", eui64=SUPPLIER, role=RemotePartyRole.XML_SIGN)
    repository = SmkiRepository.load_world(boxed[0])
    loaded = repository.add_certificate(impostor.certificate)
    assert loaded is not None and repository.chain_error(loaded) is not None


def test_requests_verify_with_zaz1_keys_and_directives_with_test_pki_keys(boxed: tuple[Path, Manifest, BoxedReport], manifest: Manifest) -> None:
    world = open_world(boxed[0])
    verifier = world.verifier(FixedClock(NOW))
    supplier = manifest.actor("failed_supplier_is")
    request = factories.request_tree(originator=SUPPLIER, target=Eui64.parse("00-DB-12-34-56-78-90-A1"), counter=7,
                                     command_variant=1, service_reference="4.1", service_reference_variant="4.1.1",
                                     body=etree.Element(f"{_SR}ReadInstantaneousImportRegisters"))
    signed = sign_bytes(etree.tostring(request), SigningKey.load(supplier.xml_sign.key, supplier.xml_sign.cert))
    assert verifier.verify_request(signed).signer.eui64 == SUPPLIER
    # The ZAZ1 Supplier DS certificate expired in 2025: it anchors the meters but signs no DUIS.
    assert supplier.digital_signing is not None
    ds = SigningKey.load(supplier.digital_signing.key, supplier.digital_signing.cert)
    with pytest.raises(VerificationError) as refused:
        verifier.verify_request(sign_bytes(etree.tostring(request), ds))
    assert refused.value.check in (Check.CERTIFICATE_ROLE, Check.CERTIFICATE_EXPIRED)


# --- expiry ----------------------------------------------------------------------------------------


def test_expired_zaz1_certificates_are_reported_with_their_end(boxed: tuple[Path, Manifest, BoxedReport]) -> None:
    directory, _, report = boxed
    expired = {e.name: e for e in report.expired}
    every = {
        str(e["name"]): x509.load_pem_x509_certificate(str(e["certificate"]).encode())
        for usages in keystore_json().values() for serials in usages.values() for e in serials.values()
        if not str(e["name"]).startswith("mdr-")
    }
    assert set(expired) == {name for name, cert in every.items() if cert.not_valid_after_utc < NOW}
    anchor = expired["Z1-supplier-ds"]
    assert anchor.not_after == dt.datetime(2025, 10, 29, 23, 59, 59, tzinfo=dt.timezone.utc)
    assert "trust anchor" in anchor.use and anchor.user_id == SUPPLIER
    assert "xml-sign-90B3D51F30010000-ds" not in expired and "dsp-xml-sign-90B3D51F30000002-ds" not in expired
    recorded = json.loads((directory / "manifest.json").read_text())["boxed"]
    assert recorded["expired"] == [e.to_json() for e in report.expired]
    assert {line.split(": ")[0] for line in report.skipped} == {
        "mdr-ka (?, 90-B3-D5-1F-30-01-00-09)", "mdr-ds (?, 90-B3-D5-1F-30-01-00-09)"
    }


def test_init_prints_what_it_took_and_what_has_expired(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["init", str(tmp_path / "w"), "--boxed", str(keystore_path()), "--devices", "2"]) == 0
    out = capsys.readouterr().out
    assert "user failed_supplier_is: 90-B3-D5-1F-30-01-00-00 as IS, GS" in out
    assert "expired: Z1-supplier-ds (02, 90-B3-D5-1F-30-01-00-00) expired 2025-10-29T23:59:59+00:00" in out
    assert "world written to" in out and load_manifest(tmp_path / "w").device("00-DB-12-34-56-78-90-A6").type == "ESME"


# --- bad input ---------------------------------------------------------------------------------------


def _without(predicate) -> dict[str, object]:  # type: ignore[no-untyped-def]
    keystore = copy.deepcopy(keystore_json())
    for usages in keystore.values():
        for serials in usages.values():
            for serial in [s for s, e in serials.items() if predicate(e)]:
                del serials[serial]
    return keystore  # type: ignore[return-value]


def _drop_key(name: str) -> dict[str, object]:
    keystore = copy.deepcopy(keystore_json())
    for usages in keystore.values():
        for serials in usages.values():
            for entry in serials.values():
                if entry["name"] == name:
                    del entry["privateKey"]
    return keystore  # type: ignore[return-value]


BAD_KEYSTORES = [
    pytest.param(lambda: b"not json", "not JSON", id="not-json"),
    pytest.param(lambda: b"[1, 2]", "the top level must be an object", id="not-an-object"),
    pytest.param(lambda: b"{}", "holds no certificates", id="empty"),
    pytest.param(lambda: json.dumps({"90b3d51f30010000": {"signing": {}}}).encode(), "90b3d51f30010000.signing", id="bad-usage"),
    pytest.param(lambda: json.dumps({"zz": {}}).encode(), "an EUI-64", id="bad-eui"),
    pytest.param(lambda: json.dumps(_without(lambda e: e["role"] == 137)).encode(), "dSPXmlSign (89)", id="no-dsp-key"),
    pytest.param(lambda: json.dumps(_drop_key("dsp-xml-sign-90B3D51F30000002-ds")).encode(), "dSPXmlSign (89)", id="dsp-without-private-key"),
    pytest.param(lambda: json.dumps(_without(lambda e: e["name"] == "xml-sign-90B3D51F30010000-ds")).encode(), "xmlSign (87)", id="no-supplier-xml-sign"),
    pytest.param(lambda: json.dumps(_without(lambda e: e["role"] == 2 and "supplier-ds" in str(e["name"]) and "supplier2" not in str(e["name"]))).encode(),
                 "Supplier (02) digital-signing", id="no-supplier-ds"),
]


@pytest.mark.parametrize(("content", "named"), BAD_KEYSTORES)
def test_a_bad_keystore_exits_2_naming_what_is_missing_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content, named: str  # type: ignore[no-untyped-def]
) -> None:
    keystore = tmp_path / "keystore.json"
    keystore.write_bytes(content())
    target = tmp_path / "world"
    assert main(["init", str(target), "--boxed", str(keystore)]) == 2
    assert named in capsys.readouterr().err
    assert not target.exists()


def test_a_bad_keystore_leaves_an_existing_world_alone_even_with_force(tmp_path: Path) -> None:
    target = tmp_path / "world"
    init_world(target, devices=2)
    before = {p: p.read_bytes() for p in target.rglob("*") if p.is_file()}
    keystore = tmp_path / "keystore.json"
    keystore.write_text(json.dumps(_without(lambda e: e["role"] == 137)))
    assert main(["init", str(target), "--boxed", str(keystore), "--force"]) == 2
    assert {p: p.read_bytes() for p in target.rglob("*") if p.is_file()} == before


def test_a_missing_keystore_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["init", str(tmp_path / "w"), "--boxed", str(tmp_path / "absent.json")]) == 2
    assert "cannot read the keystore" in capsys.readouterr().err and not (tmp_path / "w").exists()


# --- the default world is unchanged ------------------------------------------------------------------


def test_the_default_world_gives_each_user_id_one_role_and_records_no_boxed_keys(tmp_path: Path) -> None:
    manifest = init_world(tmp_path / "w", devices=30)
    raw = json.loads((tmp_path / "w" / "manifest.json").read_text())
    assert "boxed" not in raw
    assert all("roles" not in actor for actor in raw["actors"].values())
    assert all(set(device) == {"device_id", "type", "smets", "mpxn", "supplier_mpid", "payment_mode", "credit_pence"}
               for device in raw["devices"])
    assert all(actor.roles == ((actor.role,) if actor.role else ()) for actor in manifest.actors.values())


def test_a_keystore_without_a_network_operator_user_gets_the_test_pkis(tmp_path: Path) -> None:
    keystore = tmp_path / "keystore.json"
    keystore.write_text(json.dumps(_without(lambda e: e["name"] == "xml-sign-90B3D51F30020000-ds")))
    manifest, report = init_boxed_world(tmp_path / "w", keystore, now=NOW, devices=0)
    network = manifest.actor("network_ed")
    assert network.user_id == next(a.user_id for a in ACTORS if a.name == "network_ed") and network.roles == ("ED",)
    assert any(line.startswith("90-B3-D5-1F-30-02-00-00 ") for line in report.not_registered)
    assert "failed_supplier_gs" not in manifest.actors
