"""``init``'s world: manifest (SPEC §3), certificates, device fleet, determinism, config."""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from gateway.config import (
    AdtConfig,
    ClockConfig,
    ConfigError,
    GatewayConfig,
    LimitsConfig,
    PolicyConfig,
    load_config,
    write_default_config,
)
from gateway.eui64 import Eui64
from gateway.manifest import Manifest, ManifestError, load_manifest, parse_manifest
from gateway.world import (
    DSP_USER_ID,
    WorldError,
    WorldExistsError,
    init_world,
    make_device,
    mpan_check_digit,
)
from pki import IssuedCertificate, RemotePartyRole, read_subject_eui64, read_subject_role

ACTOR_NAMES = {
    "failed_supplier_is",
    "failed_supplier_gs",
    "solr_is",
    "srp_sc",
    "srp_sro",
    "srp_aro",
    "network_ed",
    "other_ou",
    "authority",
    "pma",
    "dcc_operator",
}
SUPPLIER_ACTORS = {"failed_supplier_is", "failed_supplier_gs", "solr_is"}
NON_USERS = {"srp_sro", "srp_aro", "authority", "pma", "dcc_operator"}
ACTOR_KINDS = {"supplier", "solr", "srp", "authority", "pma", "dcc", "network", "other", "officer"}
ROLES = {"IS", "ES", "GS", "RSA", "ED", "GT", "OU", "SC"}
ZAZ1_IDS = {
    Eui64.parse_compact(text)
    for text in (
        "90B3D51F30010000",
        "90B3D51F30020000",
        "90B3D51F30030000",
        "90B3D51F30000001",
        "90B3D51F30000002",
        "90B3D51F30000004",
        "90B3D51F30000007",
        "90B3D51F30010008",
        "90B3D51F30010009",
        "00DB123456780004",
    )
}
EUI64_TEXT = re.compile(r"\A[0-9A-F]{2}(?:-[0-9A-F]{2}){7}\Z")


@pytest.fixture
def no_shared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A shared folder without the matrix or the XSD (the world must not need them)."""
    return tmp_path_factory.mktemp("no-shared")


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Manifest:
    shared = tmp_path_factory.mktemp("shared")
    return init_world(tmp_path_factory.mktemp("world") / "w", shared_dir=shared)


@pytest.fixture(scope="module")
def raw(world: Manifest) -> dict[str, object]:
    return json.loads(world.path.read_text(encoding="utf-8"))  # type: ignore[no-any-return]


def load_cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def files_of(directory: Path) -> dict[str, bytes]:
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


# --- manifest.json against SPEC §3 -----------------------------------------------------


def _relative_file(world_dir: Path, value: object) -> None:
    assert isinstance(value, str) and not Path(value).is_absolute(), value
    assert (world_dir / value).is_file(), value


def test_manifest_top_level_keys(world: Manifest, raw: dict[str, object]) -> None:
    assert {"gateway", "smki", "actors", "devices"} <= set(raw)
    gateway = raw["gateway"]
    assert isinstance(gateway, dict)
    assert gateway["url"] == "http://127.0.0.1:8079"
    assert gateway["dsp_user_id"] == "90-B3-D5-1F-30-00-00-02"
    _relative_file(world.directory, gateway["response_cert"])
    _relative_file(world.directory, gateway["response_key"])
    smki = raw["smki"]
    assert isinstance(smki, dict)
    for key in ("root_ca", "org_ca", "crl"):
        _relative_file(world.directory, smki[key])


def test_manifest_actor_entries(world: Manifest, raw: dict[str, object]) -> None:
    actors = raw["actors"]
    assert isinstance(actors, dict) and set(actors) == ACTOR_NAMES
    for name, entry in actors.items():
        assert entry["kind"] in ACTOR_KINDS, name
        assert isinstance(entry["party"], str) and entry["party"], name
        assert EUI64_TEXT.match(entry["user_id"]), name
        assert entry["role"] is None or entry["role"] in ROLES, name
        assert isinstance(entry["mpids"], list) and all(isinstance(m, str) for m in entry["mpids"]), name
        for pair in (entry["xml_sign"], entry["digital_signing"]):
            if pair is not None:
                _relative_file(world.directory, pair["cert"])
                _relative_file(world.directory, pair["key"])
        assert entry["response_url"] is None or entry["response_url"].startswith("http://"), name
    assert actors["srp_sc"]["agent_for"] == actors["failed_supplier_is"]["party"]


def test_manifest_device_entries(raw: dict[str, object]) -> None:
    devices = raw["devices"]
    assert isinstance(devices, list) and len(devices) == 20
    for device in devices:
        assert list(device) == [
            "device_id",
            "type",
            "smets",
            "mpxn",
            "supplier_mpid",
            "payment_mode",
            "credit_pence",
        ]
        assert EUI64_TEXT.match(device["device_id"])
        assert device["type"] in ("ESME", "GSME") and device["smets"] in (1, 2)
        assert device["payment_mode"] in ("Credit", "Prepayment")
        assert isinstance(device["mpxn"], str) and isinstance(device["supplier_mpid"], str)
        assert type(device["credit_pence"]) is int


def test_actor_kinds_roles_and_parties(world: Manifest) -> None:
    expected = {
        "failed_supplier_is": ("supplier", "IS"),
        "failed_supplier_gs": ("supplier", "GS"),
        "solr_is": ("solr", "IS"),
        "srp_sc": ("srp", "SC"),
        "srp_sro": ("officer", None),
        "srp_aro": ("officer", None),
        "network_ed": ("network", "ED"),
        "other_ou": ("other", "OU"),
        "authority": ("authority", None),
        "pma": ("pma", None),
        "dcc_operator": ("dcc", None),
    }
    assert {name: (a.kind, a.role) for name, a in world.actors.items()} == expected
    for actor in world.actors.values():
        assert actor.party in world.parties
    srp = world.actor("srp_sc").party
    assert world.actor("srp_sro").party == srp and world.actor("srp_sro").office == "SRO"
    assert world.actor("srp_aro").party == srp and world.actor("srp_aro").office == "ARO"


def test_mpids(world: Manifest) -> None:
    failed, solr = world.actor("failed_supplier_is"), world.actor("solr_is")
    assert failed.mpids == world.actor("failed_supplier_gs").mpids == world.party(failed.party).mpids
    assert len(failed.mpids) == 2 and len(solr.mpids) == 2
    assert not set(failed.mpids) & set(solr.mpids)
    network = world.actor("network_ed").mpids
    assert network and not set(network) & (set(failed.mpids) | set(solr.mpids))
    assert world.actor("srp_sc").mpids == ()


def test_user_ids_are_distinct_and_clear_of_zaz1(world: Manifest) -> None:
    ids = [actor.user_id for actor in world.actors.values()]
    assert len(set(ids)) == len(ids)
    assert not set(ids) & ZAZ1_IDS
    assert all(str(user_id).startswith("90-B3-D5-1F-30-") for user_id in ids)
    assert DSP_USER_ID not in ids and world.gateway.dsp_user_id == DSP_USER_ID


def test_response_urls(world: Manifest) -> None:
    for name, actor in world.actors.items():
        if name in NON_USERS:
            assert actor.response_url is None and actor.role is None
        else:
            assert actor.response_url is not None and actor.response_url.endswith(f"/receive/{name}")


# --- certificates ------------------------------------------------------------------------


def _check_pair(cert_path: Path, key_path: Path, org: x509.Certificate) -> x509.Certificate:
    issued = IssuedCertificate.load(cert_path, key_path)
    cert = issued.certificate
    assert cert.public_key() == issued.private_key.public_key()
    cert.verify_directly_issued_by(org)
    return cert


def test_every_actor_has_an_xml_sign_certificate_for_its_user_id(world: Manifest) -> None:
    org = load_cert(world.smki.org_ca)
    for actor in world.actors.values():
        cert = _check_pair(actor.xml_sign.cert, actor.xml_sign.key, org)
        assert read_subject_eui64(cert.subject) == actor.user_id, actor.name
        assert read_subject_role(cert.subject) is RemotePartyRole.XML_SIGN, actor.name
        assert cert.extensions.get_extension_for_class(x509.KeyUsage).value.digital_signature


def test_digital_signing_certificates_for_suppliers_only(world: Manifest) -> None:
    org = load_cert(world.smki.org_ca)
    with_ds = {name for name, actor in world.actors.items() if actor.digital_signing is not None}
    assert with_ds == SUPPLIER_ACTORS
    for name in SUPPLIER_ACTORS:
        actor = world.actor(name)
        assert actor.digital_signing is not None
        cert = _check_pair(actor.digital_signing.cert, actor.digital_signing.key, org)
        assert read_subject_role(cert.subject) is RemotePartyRole.SUPPLIER
        assert read_subject_eui64(cert.subject) == actor.user_id
    ds_files = {p.parent.name for p in (world.directory / "pki" / "actors").glob("*/ds.pem")}
    assert ds_files == SUPPLIER_ACTORS


def test_gateway_response_certificate(world: Manifest) -> None:
    assert world.gateway.response_key is not None
    cert = _check_pair(world.gateway.response_cert, world.gateway.response_key, load_cert(world.smki.org_ca))
    assert read_subject_role(cert.subject) is RemotePartyRole.DSP_XML_SIGN
    assert read_subject_eui64(cert.subject) == Eui64.parse("90-B3-D5-1F-30-00-00-02")


def test_ca_chain_crl_and_fixed_validity(world: Manifest) -> None:
    root, org = load_cert(world.smki.root_ca), load_cert(world.smki.org_ca)
    org.verify_directly_issued_by(root)
    assert org.subject.rfc4514_string().endswith(",OU=07")
    crl = x509.load_pem_x509_crl(world.smki.crl.read_bytes())
    assert len(crl) == 0 and crl.is_signature_valid(org.public_key())  # type: ignore[arg-type]
    assert world.smki.org_ca_key is not None
    org_key = serialization.load_pem_private_key(world.smki.org_ca_key.read_bytes(), None)
    assert org_key.public_key() == org.public_key()
    for cert in (root, org, load_cert(world.actor("srp_sc").xml_sign.cert)):
        assert cert.not_valid_before_utc == dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)
        assert cert.not_valid_after_utc == dt.datetime(2124, 1, 1, tzinfo=dt.timezone.utc)


def test_private_keys_are_unencrypted_pkcs8_readable_by_owner_only(world: Manifest) -> None:
    key_path = world.actor("srp_sc").xml_sign.key
    assert key_path.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    assert key_path.stat().st_mode & 0o077 == 0


# --- device fleet --------------------------------------------------------------------------


@pytest.mark.parametrize("count", [8, 20, 500])
def test_failed_supplier_holds_prepayment_meters_of_all_four_kinds(count: int) -> None:
    devices = [make_device("dcc-gateway", i) for i in range(count)]
    failed_prepayment = [d for d in devices if d.supplier_mpid in ("FAIL", "FALG") and d.payment_mode == "Prepayment"]
    combos = {(d.type, d.smets) for d in failed_prepayment}
    assert combos == {("ESME", 1), ("ESME", 2), ("GSME", 1), ("GSME", 2)}


def test_default_fleet_is_mixed_and_shared_between_suppliers(world: Manifest) -> None:
    devices = world.devices
    assert len(devices) == 20
    assert {d.smets for d in devices} == {1, 2}
    assert {d.type for d in devices} == {"ESME", "GSME"}
    assert {d.payment_mode for d in devices} == {"Credit", "Prepayment"}
    solr_mpids = set(world.actor("solr_is").mpids)
    assert any(d.supplier_mpid in solr_mpids for d in devices)
    assert any(d.payment_mode == "Prepayment" and d.credit_pence < 150 for d in devices)


def test_device_fields_follow_fuel(world: Manifest) -> None:
    parties = [world.party("failed-supplier"), world.party("solr-supplier")]
    electricity = {party.mpids[0] for party in parties}
    gas = {party.mpids[1] for party in parties}
    for device in world.devices:
        if device.type == "ESME":
            assert device.supplier_mpid in electricity
            assert re.fullmatch(r"\d{13}", device.mpxn)
            assert mpan_check_digit(device.mpxn[:12]) == int(device.mpxn[12])
        else:
            assert device.supplier_mpid in gas
            assert re.fullmatch(r"\d{10}", device.mpxn)
        assert 0 <= device.credit_pence <= 5000


def test_large_fleet_has_unique_ids_and_mpxns() -> None:
    devices = [make_device("dcc-gateway", i) for i in range(5000)]
    assert len({d.device_id for d in devices}) == len({d.mpxn for d in devices}) == 5000
    assert not {d.device_id for d in devices} & ZAZ1_IDS


@pytest.mark.parametrize(
    ("core", "valid"),
    [("1312345678907", True), ("2499999999990", False)],  # public examples (limejump/mpan README and tests)
)
def test_mpan_check_digit_public_examples(core: str, valid: bool) -> None:
    assert (mpan_check_digit(core[:12]) == int(core[12])) is valid


# --- determinism and --force ---------------------------------------------------------------


def test_same_seed_gives_byte_identical_worlds(tmp_path: Path, no_shared: Path) -> None:
    init_world(tmp_path / "a", seed="s1", devices=50, shared_dir=no_shared)
    init_world(tmp_path / "b", seed="s1", devices=50, shared_dir=no_shared)
    first, second = files_of(tmp_path / "a"), files_of(tmp_path / "b")
    assert list(first) == list(second)
    assert first == second


def test_different_seed_gives_different_keys_and_fleet(tmp_path: Path, no_shared: Path) -> None:
    a = init_world(tmp_path / "a", seed="s1", devices=50, shared_dir=no_shared)
    b = init_world(tmp_path / "b", seed="s2", devices=50, shared_dir=no_shared)
    assert a.smki.org_ca.read_bytes() != b.smki.org_ca.read_bytes()
    assert a.actor("srp_sc").xml_sign.key.read_bytes() != b.actor("srp_sc").xml_sign.key.read_bytes()
    assert a.devices != b.devices


def test_refuses_non_empty_directory_without_force(tmp_path: Path, no_shared: Path) -> None:
    (tmp_path / "note.txt").write_text("keep me")
    with pytest.raises(WorldExistsError):
        init_world(tmp_path, shared_dir=no_shared)
    assert not (tmp_path / "manifest.json").exists()


def test_force_replaces_the_world_and_leaves_other_files(tmp_path: Path, no_shared: Path) -> None:
    init_world(tmp_path, seed="old", devices=3, shared_dir=no_shared)
    stale = tmp_path / "pki" / "actors" / "retired_user"
    stale.mkdir()
    (stale / "xml-sign.pem").write_text("stale")
    (tmp_path / "store.db").write_bytes(b"old state")
    (tmp_path / "note.txt").write_text("keep me")
    manifest = init_world(tmp_path, seed="new", devices=4, force=True, shared_dir=no_shared)
    assert manifest.seed == "new" and len(manifest.devices) == 4
    assert not stale.exists() and not (tmp_path / "store.db").exists()
    assert (tmp_path / "note.txt").read_text() == "keep me"


def test_empty_existing_directory_is_fine(tmp_path: Path, no_shared: Path) -> None:
    assert len(init_world(tmp_path, devices=1, shared_dir=no_shared).devices) == 1


def test_refuses_a_file_and_negative_counts(tmp_path: Path, no_shared: Path) -> None:
    target = tmp_path / "file"
    target.write_text("x")
    with pytest.raises(WorldError):
        init_world(target, shared_dir=no_shared)
    for count in (-1, 10**9 + 1):
        with pytest.raises(WorldError):
            init_world(tmp_path / "w", devices=count, shared_dir=no_shared)


def test_zero_devices(tmp_path: Path, no_shared: Path) -> None:
    manifest = init_world(tmp_path, devices=0, shared_dir=no_shared)
    assert manifest.devices == ()
    assert json.loads(manifest.path.read_text())["devices"] == []


# --- gateway.toml written by init ------------------------------------------------------------


def test_config_points_at_shared_data_when_present(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    (shared / "duis" / "xsd").mkdir(parents=True)
    (shared / "duis" / "srv-eligibility-matrix.json").write_text("{}")
    (shared / "duis" / "xsd" / "DUIS-Schema-V5.4.xsd").write_text("<schema/>")
    init_world(tmp_path / "w", shared_dir=shared)
    config = load_config(tmp_path / "w" / "gateway.toml")
    assert config.policy.eligibility_matrix == (shared / "duis" / "srv-eligibility-matrix.json").resolve()
    assert config.schema.duis_xsd == (shared / "duis" / "xsd" / "DUIS-Schema-V5.4.xsd").resolve()


def test_config_leaves_shared_paths_empty_when_absent(tmp_path: Path, no_shared: Path) -> None:
    init_world(tmp_path / "w", shared_dir=no_shared)
    config = load_config(tmp_path / "w")
    assert config.policy.eligibility_matrix is None and config.schema.duis_xsd is None
    assert 'eligibility_matrix = ""' in (tmp_path / "w" / "gateway.toml").read_text()
    assert config.store.sqlite_path == (tmp_path / "w" / "store.db").resolve()


# --- load_manifest ---------------------------------------------------------------------------


def test_load_manifest_round_trip(world: Manifest) -> None:
    assert load_manifest(world.directory) == world
    assert load_manifest(world.path) == world
    assert world.path.is_absolute()


def test_manifest_accessors(world: Manifest) -> None:
    assert world.actor("srp_sc").role == "SC"
    assert {a.name for a in world.actors_of_kind("officer")} == {"srp_sro", "srp_aro"}
    assert world.party("failed-supplier").kind == "supplier"
    first = world.devices[0]
    assert world.device(first.device_id) is first
    assert world.device(str(first.device_id)) is first
    assert world.actor_by_user_id(world.actor("pma").user_id).name == "pma"
    for lookup in (
        lambda: world.actor("nobody"),
        lambda: world.party("nobody"),
        lambda: world.device("00-00-00-00-00-00-00-00"),
    ):
        with pytest.raises(KeyError):
            lookup()


def test_paths_resolve_against_the_manifest(world: Manifest) -> None:
    cert = world.actor("failed_supplier_is").xml_sign.cert
    assert cert == world.directory / "pki" / "actors" / "failed_supplier_is" / "xml-sign.pem"


@pytest.mark.parametrize("indent", [None, 0, 4], ids=["compact", "indent-0", "indent-4"])
def test_decoding_does_not_depend_on_formatting(
    world: Manifest, raw: dict[str, object], tmp_path: Path, indent: int | None
) -> None:
    reformatted = tmp_path / "manifest.json"
    reformatted.write_text(json.dumps(raw, indent=indent))
    loaded = load_manifest(reformatted)
    assert loaded.devices == world.devices and loaded.parties == world.parties
    assert loaded.gateway.dsp_user_id == world.gateway.dsp_user_id
    for name, actor in world.actors.items():
        moved = loaded.actor(name)
        assert moved.xml_sign.cert.relative_to(tmp_path) == actor.xml_sign.cert.relative_to(world.directory)
        assert (moved.user_id, moved.role, moved.mpids) == (actor.user_id, actor.role, actor.mpids)


def test_init_writes_devices_in_the_fast_form(world: Manifest) -> None:
    # Start-up with a million meters relies on init's device lines taking the fast path.
    from gateway.manifest import _CANONICAL_DEVICE

    text = world.path.read_text(encoding="utf-8")
    lines = [line for line in text.splitlines() if line.lstrip().startswith('{"device_id"')]
    assert len(lines) == len(world.devices)
    assert all(_CANONICAL_DEVICE.match(line.rstrip(",")) for line in lines)


def test_devices_in_other_forms_decode_alike(world: Manifest, tmp_path: Path) -> None:
    """Escapes, another key order and extra keys take the general path, to the same devices."""
    text = world.path.read_text(encoding="utf-8")
    head, _ = text.split('"devices": [')
    entries = []
    for index, device in enumerate(world.devices):
        entry = device.to_json()
        if index % 3 == 0:
            entry = dict(reversed(entry.items()))
        elif index % 3 == 1:
            entry["note"] = "extra keys are allowed"
        entries.append(json.dumps(entry).replace('"FAIL"', '"\\u0046AIL"').replace('"ESME"', '"ES\\u004dE"'))
    assert any("\\u0046AIL" in entry for entry in entries) and any("\\u004d" in entry for entry in entries)
    path = tmp_path / "manifest.json"
    path.write_text(head + '"devices": [\n    ' + ",\n    ".join(entries) + "\n  ]\n}\n", encoding="utf-8")
    assert load_manifest(path).devices == world.devices


@pytest.mark.parametrize(
    ("pattern", "replacement"),
    [
        (r'"smets": \d', '"smets": 3'),
        (r'"smets": (\d)', r'"smets": \1.0'),
        (r'"credit_pence": \d+', '"credit_pence": true'),
        (r'"credit_pence": (\d+)', r'"credit_pence": 0\1'),
        (r'"mpxn": "(\d+)"', r'"mpxn": "\1x"'),
        (r'"device_id": "00-DB', '"device_id": "00-db'),
        (r'"type": "[A-Z]+"', '"type": "HCALCS"'),
        (r'"payment_mode": "[A-Za-z]+"', '"payment_mode": "Pay"'),
        (r'"supplier_mpid": "[A-Z]+"', '"supplier_mpid": 7'),
        (r'\}', '"}'),
    ],
    ids=["smets-3", "smets-float", "credit-bool", "credit-leading-zero", "mpxn-letter", "id-lower-case",
         "meter-fields-on-a-non-meter", "payment-mode", "mpid-number", "broken-json"],
)
def test_near_canonical_invalid_devices_are_refused(
    world: Manifest, tmp_path: Path, pattern: str, replacement: str
) -> None:
    text = world.path.read_text(encoding="utf-8")
    head, devices = text.split('"devices": [')
    changed = re.sub(pattern, replacement, devices, count=1)
    assert changed != devices
    path = tmp_path / "manifest.json"
    path.write_text(head + '"devices": [' + changed, encoding="utf-8")
    with pytest.raises(ManifestError):
        load_manifest(path)


def test_devices_that_are_not_meters_have_no_meter_fields(world: Manifest, tmp_path: Path) -> None:
    """A comms hub, gas proxy, PPMID, … (DUIS device types) carries no MPxN, payment mode or credit."""
    raw = json.loads(world.path.read_text(encoding="utf-8"))
    mpid = raw["devices"][0]["supplier_mpid"]
    raw["devices"].append({"device_id": "00-DB-12-34-56-78-90-A2", "type": "CHF", "smets": 2, "supplier_mpid": mpid})
    raw["devices"].append({"device_id": "00-DB-12-34-56-78-90-A4", "type": "PPMID", "smets": 2,
                           "mpxn": None, "supplier_mpid": mpid, "payment_mode": None, "credit_pence": None})
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps(raw), encoding="utf-8")
    loaded = load_manifest(path)
    hub, ppmid = loaded.device("00-DB-12-34-56-78-90-A2"), loaded.device("00-DB-12-34-56-78-90-A4")
    assert (hub.type, hub.is_meter, hub.mpxn, hub.payment_mode, hub.credit_pence) == ("CHF", False, None, None, None)
    assert (ppmid.type, ppmid.is_meter) == ("PPMID", False)
    assert all(device.is_meter for device in world.devices)
    raw["devices"][-1]["payment_mode"] = "Credit"
    path.write_text(json.dumps(raw), encoding="utf-8")
    with pytest.raises(ManifestError, match="PPMID is not a meter"):
        load_manifest(path)


def _broken(raw: dict[str, object], change: str) -> Iterator[dict[str, object]]:
    broken = json.loads(json.dumps(raw))
    if change == "missing-gateway":
        del broken["gateway"]
    elif change == "missing-response-url":
        del broken["actors"]["srp_sc"]["response_url"]
    elif change == "bad-user-id":
        broken["actors"]["srp_sc"]["user_id"] = "90B3D51F30130001"
    elif change == "bad-role":
        broken["actors"]["srp_sc"]["role"] = "XX"
    elif change == "unknown-party":
        broken["actors"]["srp_sc"]["agent_for"] = "nobody"
    elif change == "bad-device-type":
        broken["devices"][0]["type"] = "METER"
    elif change == "bool-as-int":
        broken["devices"][0]["credit_pence"] = True
    elif change == "duplicate-device":
        broken["devices"].append(broken["devices"][0])
    elif change == "roles-not-starting-with-role":
        broken["actors"]["failed_supplier_is"]["roles"] = ["GS", "IS"]
    elif change == "roles-repeated":
        broken["actors"]["failed_supplier_is"]["roles"] = ["IS", "IS"]
    elif change == "roles-unknown":
        broken["actors"]["failed_supplier_is"]["roles"] = ["IS", "XX"]
    elif change == "roles-with-sc":
        broken["actors"]["srp_sc"]["roles"] = ["SC", "IS"]
    elif change == "roles-without-role":
        broken["actors"]["srp_aro"]["roles"] = ["IS"]
    elif change == "network-mpid-not-text":
        broken["devices"][0]["network_mpid"] = 7
    yield broken


@pytest.mark.parametrize(
    "change",
    [
        "missing-gateway",
        "missing-response-url",
        "bad-user-id",
        "bad-role",
        "unknown-party",
        "bad-device-type",
        "bool-as-int",
        "duplicate-device",
        "roles-not-starting-with-role",
        "roles-repeated",
        "roles-unknown",
        "roles-with-sc",
        "roles-without-role",
        "network-mpid-not-text",
    ],
)
def test_invalid_manifests_are_refused(raw: dict[str, object], tmp_path: Path, change: str) -> None:
    for broken in _broken(raw, change):
        path = tmp_path / "manifest.json"
        path.write_text(json.dumps(broken))
        with pytest.raises(ManifestError):
            load_manifest(path)
        with pytest.raises(ManifestError):
            parse_manifest(broken, path=path)


@pytest.mark.parametrize(
    "text",
    ["", "[]", '{"devices": [}', '{"devices": []} trailing', '{"devices": [],}', "{1: 2}", '{"a": 1'],
    ids=["empty", "array", "bad-array", "trailing-data", "trailing-comma", "non-string-key", "truncated"],
)
def test_malformed_json_is_refused(tmp_path: Path, text: str) -> None:
    path = tmp_path / "manifest.json"
    path.write_text(text)
    with pytest.raises(ManifestError):
        load_manifest(path)


def test_missing_manifest(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="cannot read"):
        load_manifest(tmp_path)


# --- gateway.toml ----------------------------------------------------------------------------


def write_toml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "gateway.toml"
    path.write_text(text)
    return path


def test_config_defaults(tmp_path: Path) -> None:
    config = load_config(write_toml(tmp_path, ""))
    assert config.server.host == "127.0.0.1" and config.server.port == 8079
    assert config.store.url == f"sqlite:///{(tmp_path / 'store.db').resolve()}"
    assert config.limits == LimitsConfig(262144, 32, 5000, 16, 32)
    assert config.clock == ClockConfig("system", None, 1.0)
    assert config.policy == PolicyConfig(None, ("1.6",), 90)
    assert config.adt.default_window_seconds == 3600 and dict(config.adt.default_thresholds) == {"1.6": 100}
    assert config.schema.duis_xsd is None and config.simulation.expose_devices is True
    assert config.limits == GatewayConfig().limits


def test_written_default_config_round_trips(tmp_path: Path) -> None:
    written = write_default_config(tmp_path / "gateway.toml")
    assert written == load_config(tmp_path)
    assert written.policy == GatewayConfig().policy and written.clock == GatewayConfig().clock


def test_config_values(tmp_path: Path) -> None:
    path = write_toml(
        tmp_path,
        """
[server]
port = 9000
[store]
url = "postgresql://gw@localhost/gw"
[clock]
mode = "accelerated"
start = "2026-03-01T12:00:00Z"
rate = 60
[policy]
eligibility_matrix = "data/matrix.json"
sc_allowed_srvs = ["1.6", "2.1"]
[adt]
default_thresholds = { "1.6" = 5, "11.2" = 1 }
""",
    )
    config = load_config(path)
    assert config.server.port == 9000
    assert config.store.url == "postgresql://gw@localhost/gw" and config.store.sqlite_path is None
    assert config.clock == ClockConfig("accelerated", dt.datetime(2026, 3, 1, 12, tzinfo=dt.timezone.utc), 60.0)
    assert config.policy.eligibility_matrix == tmp_path.resolve() / "data" / "matrix.json"
    assert config.policy.sc_allowed_srvs == ("1.6", "2.1")
    assert dict(config.adt.default_thresholds) == {"1.6": 5, "11.2": 1}


def test_toml_native_datetime_is_accepted(tmp_path: Path) -> None:
    config = load_config(write_toml(tmp_path, '[clock]\nmode = "fixed"\nstart = 2026-01-01T00:00:00Z\n'))
    assert config.clock.start == dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param("[sever]\nport = 1\n", "unknown section", id="unknown-section"),
        pytest.param("[limits]\nmax_body_byte = 1\n", "max_body_byte", id="unknown-key"),
        pytest.param('[server]\nport = "8079"\n', "server.port", id="port-as-string"),
        pytest.param("[server]\nport = 70000\n", "server.port", id="port-out-of-range"),
        pytest.param("[limits]\nmax_depth = 0\n", "limits.max_depth", id="zero-limit"),
        pytest.param("[limits]\nmax_depth = true\n", "limits.max_depth", id="bool-limit"),
        pytest.param('[clock]\nmode = "warp"\n', "clock.mode", id="clock-mode"),
        pytest.param('[clock]\nstart = "2026-01-01T00:00:00"\n', "UTC offset", id="naive-start"),
        pytest.param('[clock]\nstart = "soon"\n', "ISO 8601", id="bad-start"),
        pytest.param("[clock]\nrate = 0\n", "rate", id="zero-rate"),
        pytest.param('[policy]\nsc_allowed_srvs = "1.6"\n', "sc_allowed_srvs", id="srvs-not-list"),
        pytest.param('[policy]\nsc_allowed_srvs = ["one"]\n', "sc_allowed_srvs", id="srvs-not-srv"),
        pytest.param('[adt]\ndefault_thresholds = { "1.6" = -1 }\n', "default_thresholds", id="negative-threshold"),
        pytest.param('[store]\nurl = "mysql://x"\n', "store.url", id="store-scheme"),
        pytest.param("server = 1\n", "[server] must be a table", id="section-not-table"),
        pytest.param("[server\n", "not valid TOML", id="not-toml"),
    ],
)
def test_config_errors(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_config(write_toml(tmp_path, text))


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path)


def test_write_default_config_refuses_unknown_overrides(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown"):
        write_default_config(tmp_path / "gateway.toml", policy={"eligibilty_matrix": "x"})
    with pytest.raises(ConfigError, match="unknown"):
        write_default_config(tmp_path / "gateway.toml", polcy={"eligibility_matrix": "x"})
    with pytest.raises(ConfigError):
        write_default_config(tmp_path / "gateway.toml", server={"port": "x"})
    assert not (tmp_path / "gateway.toml").exists()


def test_write_default_config_overrides(tmp_path: Path) -> None:
    config = write_default_config(
        tmp_path / "gateway.toml", server={"port": 8100}, adt={"default_thresholds": {"1.6": 7}}
    )
    assert config.server.port == 8100 and dict(config.adt.default_thresholds) == {"1.6": 7}
    assert config.adt != AdtConfig()


def test_roles_and_network_mpid_are_read_where_a_manifest_lists_them(raw: dict[str, object], tmp_path: Path) -> None:
    """A DCC Boxed world lists several roles for a User ID and a device's network operator MPID."""
    changed = json.loads(json.dumps(raw))
    changed["actors"]["failed_supplier_is"]["roles"] = ["IS", "GS"]
    changed["devices"][0]["network_mpid"] = "NETW"
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps(changed))
    loaded = load_manifest(path)
    assert loaded.actor("failed_supplier_is").roles == ("IS", "GS")
    assert loaded.actor("failed_supplier_gs").roles == ("GS",) and loaded.actor("srp_aro").roles == ()
    assert loaded.devices[0].network_mpid == "NETW" and loaded.devices[0].to_json()["network_mpid"] == "NETW"
    assert loaded.devices[1].network_mpid is None and "network_mpid" not in loaded.devices[1].to_json()
