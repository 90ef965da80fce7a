"""The ``dcc-gateway`` console script (SPEC §2): init, sign, verify, smki import, ``--at``.

Most tests call :func:`gateway.cli.main` in-process and read its output with
capsys; :func:`test_console_script_signs_and_verifies_in_a_subprocess` runs the
installed ``dcc-gateway`` executable once, end to end. Worlds come from
``init`` itself, and requests are signed with the actors' keys that
``manifest.json`` lists.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509

from gateway.cli import main
from gateway.eui64 import Eui64
from gateway.signing import to_bytes
from pki import RemotePartyRole, TestSmkiCa
from tests import factories
from tests.interop_tools import load_keystore
from tests.shared_data import shared_path

SPEC_ACTORS = {
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
JSON_KEYS = {"valid", "check", "detail", "signer"}
NEW_USER = Eui64.parse("90-B3-D5-1F-30-99-00-01")


@dataclass(frozen=True)
class Actor:
    name: str
    user_id: str
    cert: Path
    key: Path


@dataclass(frozen=True)
class World:
    directory: Path
    manifest: dict[str, object]

    def actor(self, name: str) -> Actor:
        actors = self.manifest["actors"]
        assert isinstance(actors, dict)
        entry = actors[name]
        return Actor(
            name,
            entry["user_id"],
            self.directory / entry["xml_sign"]["cert"],
            self.directory / entry["xml_sign"]["key"],
        )


def _init(directory: Path, *extra: str) -> World:
    assert main(["init", str(directory), *extra]) == 0
    return World(directory, json.loads((directory / "manifest.json").read_text()))


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    """One default world shared by the tests that only read it."""
    return _init(tmp_path_factory.mktemp("cli") / "world")


@pytest.fixture
def fresh_world(tmp_path: Path) -> World:
    """A world of its own, for tests that import into its repository."""
    return _init(tmp_path / "world", "--devices", "2")


def _unsigned_request(originator: str, counter: int = 1000) -> bytes:
    return to_bytes(
        factories.request_tree(originator=Eui64.parse(originator), counter=counter)
    )


def _sign_file(
    tmp_path: Path, actor: Actor, document: bytes, name: str = "request"
) -> Path:
    unsigned = tmp_path / f"{name}.xml"
    unsigned.write_bytes(document)
    signed = tmp_path / f"{name}.signed.xml"
    assert (
        main(
            [
                "sign",
                "--key",
                str(actor.key),
                "--cert",
                str(actor.cert),
                str(unsigned),
                "-o",
                str(signed),
            ]
        )
        == 0
    )
    return signed


def _verify(
    capsys: pytest.CaptureFixture[str], path: Path, world: World, *extra: str
) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(["verify", str(path), "--dir", str(world.directory), *extra])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _verify_json(
    capsys: pytest.CaptureFixture[str], path: Path, world: World, *extra: str
) -> tuple[int, dict[str, object]]:
    code, out, _ = _verify(capsys, path, world, "--json", *extra)
    lines = out.splitlines()
    assert len(lines) == 1, out
    return code, json.loads(lines[0])


# --- init -------------------------------------------------------------------------------


def test_init_writes_a_complete_world(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    directory = tmp_path / "new"
    assert main(["init", str(directory), "--devices", "6", "--seed", "cli"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"world written to {directory}")
    manifest = json.loads((directory / "manifest.json").read_text())
    assert (directory / "gateway.toml").is_file()
    assert {"gateway", "smki", "actors", "devices"} <= set(manifest)
    assert SPEC_ACTORS <= set(manifest["actors"])
    assert len(manifest["devices"]) == 6
    assert manifest["gateway"]["dsp_user_id"] == "90-B3-D5-1F-30-00-00-02"
    for name, actor in manifest["actors"].items():
        for field in ("cert", "key"):
            assert (directory / actor["xml_sign"][field]).is_file(), (name, field)
    for field in ("root_ca", "org_ca", "crl"):
        assert (directory / manifest["smki"][field]).is_file(), field


def test_init_refuses_a_non_empty_directory_without_force(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    directory = tmp_path / "occupied"
    directory.mkdir()
    (directory / "notes.txt").write_text("mine")
    capsys.readouterr()
    assert main(["init", str(directory)]) == 1
    captured = capsys.readouterr()
    assert captured.err.startswith("dcc-gateway init:"), captured.err
    assert captured.out == ""
    assert not (directory / "manifest.json").exists()
    assert main(["init", str(directory), "--force"]) == 0
    assert (directory / "manifest.json").is_file()


def test_init_is_deterministic_for_a_seed(tmp_path: Path) -> None:
    first = _init(tmp_path / "a", "--seed", "same", "--devices", "3")
    second = _init(tmp_path / "b", "--seed", "same", "--devices", "3")
    other = _init(tmp_path / "c", "--seed", "other", "--devices", "3")
    assert first.manifest == second.manifest
    actor = "failed_supplier_is"
    assert first.actor(actor).cert.read_bytes() == second.actor(actor).cert.read_bytes()
    assert first.actor(actor).cert.read_bytes() != other.actor(actor).cert.read_bytes()


# --- sign -------------------------------------------------------------------------------


def test_sign_file_to_file_then_verify(
    tmp_path: Path, world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    actor = world.actor("failed_supplier_is")
    capsys.readouterr()
    signed = _sign_file(tmp_path, actor, _unsigned_request(actor.user_id))
    assert capsys.readouterr().out == ""
    assert signed.read_bytes().startswith(b"<?xml")
    code, out, err = _verify(capsys, signed, world)
    assert (code, err) == (0, "")
    assert out.startswith("valid: ") and actor.user_id in out, out


def test_sign_stdin_to_stdout(
    world: World,
    monkeypatch: pytest.MonkeyPatch,
    capsysbinary: pytest.CaptureFixture[bytes],
    tmp_path: Path,
) -> None:
    actor = world.actor("solr_is")
    monkeypatch.setattr(
        sys, "stdin", io.TextIOWrapper(io.BytesIO(_unsigned_request(actor.user_id)))
    )
    assert main(["sign", "--key", str(actor.key), "--cert", str(actor.cert)]) == 0
    signed = capsysbinary.readouterr().out
    assert b"<ds:SignatureValue>" in signed
    path = tmp_path / "from-stdout.xml"
    path.write_bytes(signed)
    assert main(["verify", str(path), "--dir", str(world.directory)]) == 0
    assert actor.user_id.encode() in capsysbinary.readouterr().out


def test_sign_refuses_a_key_that_does_not_match_the_certificate(
    tmp_path: Path, world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    mine, theirs = world.actor("failed_supplier_is"), world.actor("solr_is")
    unsigned = tmp_path / "request.xml"
    unsigned.write_bytes(_unsigned_request(mine.user_id))
    capsys.readouterr()
    assert (
        main(
            ["sign", "--key", str(mine.key), "--cert", str(theirs.cert), str(unsigned)]
        )
        == 1
    )
    captured = capsys.readouterr()
    assert captured.out == ""
    assert (
        captured.err.startswith("dcc-gateway sign:")
        and "does not match" in captured.err
    )


def test_sign_reports_a_missing_input(
    tmp_path: Path, world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    actor = world.actor("failed_supplier_is")
    capsys.readouterr()
    assert (
        main(
            [
                "sign",
                "--key",
                str(actor.key),
                "--cert",
                str(actor.cert),
                str(tmp_path / "absent.xml"),
            ]
        )
        == 1
    )
    assert capsys.readouterr().err.startswith("dcc-gateway sign:")


def test_sign_replaces_the_placeholder_signature_of_a_template(
    tmp_path: Path, world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    """DUIS templates carry a placeholder ds:Signature; ``sign`` replaces it."""
    actor = world.actor("failed_supplier_is")
    template = shared_path(
        "duis", "templates", "ECS02_1.6_IMMEDIATE_SINGLE_SUCCESS_REQUEST_DUIS.XML"
    )
    own = template.read_bytes().replace(
        b"<sr:RequestID>90-B3-D5-1F-30-01-00-00:",
        f"<sr:RequestID>{actor.user_id}:".encode(),
    )
    signed = _sign_file(tmp_path, actor, own, name="template")
    assert b"ZGVmYXVsdA==" not in signed.read_bytes()
    code, verdict = _verify_json(capsys, signed, world)
    assert (code, verdict["signer"]) == (0, actor.user_id), verdict


# --- verify -----------------------------------------------------------------------------


def test_verify_json_on_success(
    tmp_path: Path, world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    actor = world.actor("failed_supplier_gs")
    signed = _sign_file(tmp_path, actor, _unsigned_request(actor.user_id))
    code, verdict = _verify_json(capsys, signed, world)
    assert code == 0
    assert set(verdict) == JSON_KEYS
    assert (verdict["valid"], verdict["check"], verdict["signer"]) == (
        True,
        "ok",
        actor.user_id,
    )
    assert isinstance(verdict["detail"], str) and verdict["detail"]


def test_verify_reports_tampering(
    tmp_path: Path, world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    actor = world.actor("failed_supplier_is")
    signed = _sign_file(tmp_path, actor, _unsigned_request(actor.user_id))
    signed.write_bytes(
        signed.read_bytes().replace(b":1000</sr:RequestID>", b":1001</sr:RequestID>")
    )
    code, out, _ = _verify(capsys, signed, world)
    assert code == 1
    assert out.startswith("invalid (digest-mismatch): "), out
    code, verdict = _verify_json(capsys, signed, world)
    assert code == 1
    assert set(verdict) == JSON_KEYS
    assert (verdict["valid"], verdict["check"], verdict["signer"]) == (
        False,
        "digest-mismatch",
        None,
    )
    assert isinstance(verdict["detail"], str) and verdict["detail"]


def test_verify_binds_the_signer_to_the_originator(
    tmp_path: Path, world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    """Signed with a valid key of the world, but not the key of the RequestID's originator."""
    signer, originator = world.actor("failed_supplier_is"), world.actor("solr_is")
    signed = _sign_file(tmp_path, signer, _unsigned_request(originator.user_id))
    code, verdict = _verify_json(capsys, signed, world)
    assert (code, verdict["valid"], verdict["check"], verdict["signer"]) == (
        1,
        False,
        "signer-mismatch",
        None,
    )


def test_verify_reports_an_unsigned_document(
    tmp_path: Path, world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "unsigned.xml"
    path.write_bytes(_unsigned_request(world.actor("failed_supplier_is").user_id))
    code, verdict = _verify_json(capsys, path, world)
    # The DUIS schema makes ds:Signature mandatory, and the schema check runs first.
    assert (code, verdict["valid"], verdict["check"], verdict["signer"]) == (
        1,
        False,
        "schema",
        None,
    )
    assert "ds:" in str(verdict["detail"]), verdict


def test_verify_reports_a_missing_file(
    tmp_path: Path, world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = _verify(capsys, tmp_path / "absent.xml", world)
    assert code != 0 and out == ""
    assert err.startswith("dcc-gateway verify:")


# --- --at ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def validity(world: World) -> tuple[dt.datetime, dt.datetime]:
    certificate = x509.load_pem_x509_certificate(
        world.actor("failed_supplier_is").cert.read_bytes()
    )
    return certificate.not_valid_before_utc, certificate.not_valid_after_utc


def _iso(when: dt.datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def test_at_one_second_either_side_of_the_validity_period(
    tmp_path: Path,
    world: World,
    validity: tuple[dt.datetime, dt.datetime],
    capsys: pytest.CaptureFixture[str],
) -> None:
    actor = world.actor("failed_supplier_is")
    signed = _sign_file(tmp_path, actor, _unsigned_request(actor.user_id))
    not_before, not_after = validity
    second = dt.timedelta(seconds=1)
    expectations = [
        (not_before - second, "certificate-not-yet-valid"),
        (not_before, "ok"),
        (not_after, "ok"),
        (not_after + second, "certificate-expired"),
    ]
    for when, expected in expectations:
        code, verdict = _verify_json(capsys, signed, world, "--at", _iso(when))
        assert (verdict["check"], code) == (expected, 0 if expected == "ok" else 1), (
            when
        )


def test_at_accepts_offsets_other_than_utc(
    tmp_path: Path,
    world: World,
    validity: tuple[dt.datetime, dt.datetime],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """``2024-01-01T00:59:59+01:00`` is one second before a 00:00:00Z not-before."""
    actor = world.actor("failed_supplier_is")
    signed = _sign_file(tmp_path, actor, _unsigned_request(actor.user_id))
    not_before = validity[0]
    plus_one = (not_before - dt.timedelta(seconds=1)).astimezone(
        dt.timezone(dt.timedelta(hours=1))
    )
    code, verdict = _verify_json(capsys, signed, world, "--at", plus_one.isoformat())
    assert (code, verdict["check"]) == (1, "certificate-not-yet-valid")


@pytest.mark.parametrize("text", ["2030-01-01T00:00:00", "yesterday", ""])
def test_at_refuses_times_without_a_zone_or_unreadable(
    text: str, tmp_path: Path, world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "any.xml"
    path.write_bytes(b"<x/>")
    with pytest.raises(SystemExit) as exit_info:
        main(["verify", str(path), "--dir", str(world.directory), "--at", text])
    assert exit_info.value.code == 2
    assert "--at" in capsys.readouterr().err


# --- smki import ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def outside_ca() -> TestSmkiCa:
    """Another organisation CA (``OU=07, CN=IMP``) whose CA certificate the world does not hold."""
    return TestSmkiCa.create(
        b"cli-import",
        not_before=factories.CA_NOT_BEFORE,
        not_after=factories.CA_NOT_AFTER,
        name="IMP",
    )


def test_smki_import_pem_makes_a_new_signer_known(
    tmp_path: Path,
    fresh_world: World,
    outside_ca: TestSmkiCa,
    capsys: pytest.CaptureFixture[str],
) -> None:
    issued = outside_ca.issue("new-user", eui64=NEW_USER, role=RemotePartyRole.XML_SIGN)
    cert, key = tmp_path / "new-user.pem", tmp_path / "new-user.key.pem"
    issued.write_pem(cert, key)
    signer = Actor("new_user", str(NEW_USER), cert, key)
    signed = _sign_file(tmp_path, signer, _unsigned_request(str(NEW_USER)))
    code, verdict = _verify_json(capsys, signed, fresh_world)
    assert (code, verdict["check"]) == (1, "certificate-unknown")

    assert main(["smki", "import", str(fresh_world.directory), str(cert)]) == 0
    captured = capsys.readouterr()
    assert (
        f"imported EUI-64 {NEW_USER} role 87 serial {issued.certificate.serial_number}"
        in captured.out
    )
    assert captured.out.splitlines()[-1] == "1 certificates imported, 0 skipped"
    assert captured.err == ""

    code, verdict = _verify_json(capsys, signed, fresh_world)
    assert (code, verdict["valid"], verdict["signer"]) == (0, True, str(NEW_USER)), (
        verdict
    )


def test_smki_import_reports_unreadable_pem_blocks(
    tmp_path: Path,
    fresh_world: World,
    outside_ca: TestSmkiCa,
    capsys: pytest.CaptureFixture[str],
) -> None:
    good = outside_ca.issue(
        "good", eui64=NEW_USER, role=RemotePartyRole.XML_SIGN
    ).cert_pem()
    bad = b"-----BEGIN CERTIFICATE-----\nTm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n"
    path = tmp_path / "mixed.pem"
    path.write_bytes(bad + good)
    capsys.readouterr()
    assert main(["smki", "import", str(fresh_world.directory), str(path)]) == 0
    captured = capsys.readouterr()
    assert captured.out.splitlines()[-1] == "1 certificates imported, 1 skipped"
    skipped = [
        line for line in captured.err.splitlines() if line.startswith("skipped: ")
    ]
    assert len(skipped) == 1 and str(path) in skipped[0]


def test_smki_import_keystore_json(
    fresh_world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    """DCC Boxed's keystore.json: every readable certificate is imported, the rest reported and skipped."""
    keystore = shared_path("zaz1", "keystore.json")
    entries = load_keystore(keystore)
    capsys.readouterr()
    assert main(["smki", "import", str(fresh_world.directory), str(keystore)]) == 0
    captured = capsys.readouterr()
    imported = [
        line for line in captured.out.splitlines() if line.startswith("imported ")
    ]
    skipped = [
        line for line in captured.err.splitlines() if line.startswith("skipped: ")
    ]
    assert (
        captured.out.splitlines()[-1]
        == f"{len(imported)} certificates imported, {len(skipped)} skipped"
    )
    assert len(imported) + len(skipped) == len(entries)
    assert 1 <= len(skipped) <= 3, skipped
    assert any("EUI-64 90-B3-D5-1F-30-01-00-00 role 87" in line for line in imported)


def test_smki_import_refuses_a_file_that_is_not_a_keystore(
    tmp_path: Path, fresh_world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "keystore.json"
    path.write_text("[1, 2, 3]")
    capsys.readouterr()
    assert main(["smki", "import", str(fresh_world.directory), str(path)]) == 1
    assert capsys.readouterr().err.startswith("dcc-gateway smki import:")


# --- the installed console script ----------------------------------------------------------


def test_console_script_signs_and_verifies_in_a_subprocess(
    tmp_path: Path, world: World
) -> None:
    executable = Path(sys.executable).parent / "dcc-gateway"
    if not executable.is_file():
        found = shutil.which("dcc-gateway")
        if found is None:
            pytest.skip(
                "the dcc-gateway console script is not installed next to this Python"
            )
        executable = Path(found)
    actor = world.actor("failed_supplier_is")
    signing = subprocess.run(
        [str(executable), "sign", "--key", str(actor.key), "--cert", str(actor.cert)],
        input=_unsigned_request(actor.user_id),
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert signing.returncode == 0, signing.stderr.decode()
    path = tmp_path / "signed.xml"
    path.write_bytes(signing.stdout)
    verifying = subprocess.run(
        [str(executable), "verify", str(path), "--dir", str(world.directory), "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert verifying.returncode == 0, verifying.stderr
    verdict = json.loads(verifying.stdout)
    assert set(verdict) == JSON_KEYS
    assert (verdict["valid"], verdict["check"], verdict["signer"]) == (
        True,
        "ok",
        actor.user_id,
    )
    tampered = tmp_path / "tampered.xml"
    tampered.write_bytes(
        signing.stdout.replace(b":1000</sr:RequestID>", b":1001</sr:RequestID>")
    )
    failing = subprocess.run(
        [str(executable), "verify", str(tampered), "--dir", str(world.directory)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert failing.returncode == 1
    assert failing.stdout.startswith("invalid (digest-mismatch): ")


def test_a_configured_official_xsd_that_does_not_exist_is_an_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A configured check must not be dropped silently (a typo would weaken validation unnoticed)."""
    from gateway.world import init_world

    world = tmp_path / "world"
    init_world(world, devices=8, seed="xsd-config")
    toml = world / "gateway.toml"
    lines = [
        'duis_xsd = "/nonexistent/DUIS.xsd"' if line.startswith("duis_xsd") else line
        for line in toml.read_text().splitlines()
    ]
    toml.write_text("\n".join(lines) + "\n")
    document = tmp_path / "any.xml"
    document.write_bytes(b"<r/>")
    assert main(["verify", str(document), "--dir", str(world)]) == 2
    assert "duis_xsd" in capsys.readouterr().err
