"""``dcc-gateway vectors generate|run`` end to end against a real gateway process.

Generates the suite for a fresh world (which imports the vectors' extra
certificates into the world), then starts ``dcc-gateway serve`` on a free
loopback port, so the gateway loads them, and runs the suite over HTTP: under
``--expect ours`` the catalogue's signature-level vectors, then the stateful
policy scenario (directives, policy refusals, replays, acceptances) against
the fresh store; under ``--expect strict-duis`` the signature-level verdicts
alone. ``tests/test_vectors_weakened.py`` runs the kit against gateways built
with weakened verifiers.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from lxml import etree

from gateway.cli import main
from gateway.world import init_world
from vectors import VECTORS, SuiteError
from vectors.report import CLASSES
from vectors.run import check_url
from vectors.scenario import ADMIN, POLICY_CATEGORIES, SERVICE_D, SERVICE_S, SERVICE_T

DCC_GATEWAY = Path(sys.executable).with_name("dcc-gateway")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def suite(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("vectors")
    world, out = root / "world", root / "suite"
    init_world(world, devices=20)
    assert main(["vectors", "generate", str(world), str(out)]) == 0
    return world, out


@pytest.fixture(scope="module")
def gateway_url(suite: tuple[Path, Path]) -> Iterator[str]:
    world, _ = suite
    port = _free_port()
    command = [str(DCC_GATEWAY), "serve", str(world), "--host", "127.0.0.1", "--port", str(port)]
    log = (world / "serve.log").open("wb")
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(url + "/healthz", timeout=1):
                    break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"gateway did not start: {(world / 'serve.log').read_text(errors='replace')}")
                time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def test_generate_writes_every_vector_or_a_reason(suite: tuple[Path, Path]) -> None:
    world, out = suite
    skipped = {entry["id"]: entry["reason"] for entry in json.loads((out / "skipped.json").read_text())}
    sidecars = {path.stem: json.loads(path.with_suffix(".json").read_text()) for path in out.glob("*.xml")}
    catalogue = {vector_id for vector_id, sidecar in sidecars.items() if "sequence" not in sidecar}
    stateful = {vector_id: sidecar for vector_id, sidecar in sidecars.items() if "sequence" in sidecar}
    assert catalogue | set(skipped) == {vector.id for vector in VECTORS}
    assert not set(sidecars) & set(skipped)
    assert all(reason for reason in skipped.values())
    for sidecar in sidecars.values():
        assert set(sidecar) >= {"id", "description", "reference", "endpoint", "expect"}
        expect = sidecar["expect"]
        if sidecar["endpoint"] == ADMIN:
            assert set(expect) == {"http_status", "accepted"} and expect["http_status"] == 200
        else:
            assert ("check" in expect) == (expect["http_status"] != 200)
    assert {sidecars[v]["endpoint"] for v in catalogue} == {SERVICE_S}
    # The default world holds every meter the policy scenario needs: it is generated whole, in one order.
    assert {s["category"] for s in stateful.values()} == set(POLICY_CATEGORIES)
    assert {s["endpoint"] for s in stateful.values()} == {SERVICE_S, SERVICE_T, SERVICE_D, ADMIN}
    assert sorted(s["sequence"] for s in stateful.values()) == list(range(1, len(stateful) + 1))
    assert all(s["reference"] and s["description"] for s in stateful.values())
    # The vectors' extra certificates were imported for the live gateway to load.
    assert list((world / "smki" / "imported").glob("*.pem"))


def test_generated_vectors_are_signed_by_the_world_actor(suite: tuple[Path, Path], tmp_path: Path) -> None:
    world, out = suite
    accepted = [
        path
        for path in sorted(out.glob("*.json"))
        if path.name not in ("skipped.json", "suite.json")
        and json.loads(path.read_text())["expect"]["http_status"] == 200
        and "sequence" not in json.loads(path.read_text())  # the catalogue's, signed by the suite's signer
    ]
    assert accepted, "no accepted vectors were written"
    result = subprocess.run(
        [str(DCC_GATEWAY), "verify", str(accepted[0].with_suffix(".xml")), "--dir", str(world), "--json"],
        capture_output=True,
        check=False,
    )
    verdict = json.loads(result.stdout)
    assert verdict["valid"], verdict
    assert json.loads((out / "suite.json").read_text())["signer"] == "failed_supplier_is"


def test_run_against_live_gateway_has_no_miss(
    suite: tuple[Path, Path], gateway_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, out = suite
    junit = tmp_path / "vectors.junit.xml"
    code = main(["vectors", "run", str(out), "--url", gateway_url, "--json", "--junit", str(junit)])
    report = json.loads(capsys.readouterr().out)
    assert code == 0, report["misses"]
    summary = json.loads((out / "suite.json").read_text())
    assert report["expect"] == "ours" and report["ok"] and report["misses"] == []
    expected = {category: count for category, count in summary["categories"].items() if count}
    assert {c: n["vectors"] for c, n in report["classes"].items()} == expected
    assert all(n["passed"] == n["vectors"] and n["missed"] == 0 for n in report["classes"].values())
    assert set(report["classes"]) <= set(CLASSES)
    # The policy-level classes ran (exact DUIS codes and directive verdicts), not only signature-level ones.
    assert all(report["classes"][category]["vectors"] > 0 for category in POLICY_CATEGORIES)
    assert report["totals"] == {"vectors": len(summary["vectors"]), "passed": len(summary["vectors"]),
                                "missed": 0, "left_out": 0}
    tree = etree.parse(str(junit))
    assert sum(int(s.get("tests")) for s in tree.iter("testsuite")) == len(summary["vectors"])
    assert sum(int(s.get("failures")) for s in tree.iter("testsuite")) == 0


def test_strict_duis_profile_sends_only_the_signature_level_vectors(
    suite: tuple[Path, Path], gateway_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Our gateway is a strict DUIS gateway: it passes the profile that judges any of them."""
    _, out = suite
    sidecars = [json.loads(p.read_text()) for p in out.glob("*.json") if p.name not in ("suite.json", "skipped.json")]
    judged = {s["id"] for s in sidecars if "strict_duis" in s}
    assert main(["vectors", "run", str(out), "--url", gateway_url, "--expect", "strict-duis", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert {v["id"] for v in report["vectors"]} == judged
    assert report["totals"]["left_out"] == len(sidecars) - len(judged)
    assert {v["expected"] for v in report["vectors"]} == {"accepted", "refused (4xx)"}
    assert set(report["classes"]) == {"wrapping", "content", "profile", "certificate", "positive"}
    # Every vector outside the profile says why; none of the stateful scenario is in it.
    assert all(s.get("outside_strict_duis") for s in sidecars if s["id"] not in judged)
    assert not any("sequence" in s for s in sidecars if s["id"] in judged)


def test_run_reports_a_miss_with_why_it_matters_and_exits_non_zero(
    suite: tuple[Path, Path], gateway_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, out = suite
    broken = tmp_path / "broken"
    broken.mkdir()
    # A catalogue vector: it stands alone, so sending it again cannot disturb the stateful scenario's run.
    source = out / "xsw-evil-request-inside-object.json"
    sidecar = json.loads(source.read_text())
    assert sidecar["expect"] == {"http_status": 401, "check": "signature-object"}
    sidecar["expect"] = {"http_status": 401, "check": "no-such-check"}
    (broken / source.name).write_text(json.dumps(sidecar))
    (broken / source.with_suffix(".xml").name).write_bytes(source.with_suffix(".xml").read_bytes())
    junit = tmp_path / "broken.xml"
    assert main(["vectors", "run", str(broken), "--url", gateway_url, "--junit", str(junit)]) == 1
    printed = capsys.readouterr().out
    assert "\nwrapping " in printed and "wrapping: a miss here means signature wrapping" in printed
    assert "  wrong-reason (1): gave the right verdict for another reason" in printed
    assert (
        "  wrong-reason  xsw-evil-request-inside-object: expected 401 no-such-check, got 401 signature-object\n"
        f"      {sidecar['description']} [{sidecar['reference']}]"
    ) in printed
    failure = etree.parse(str(junit)).find(".//failure")
    assert failure is not None and failure.get("type") == "wrong-reason"
    assert failure.text is not None and sidecar["reference"] in failure.text


@pytest.mark.parametrize("url", ["http://192.0.2.1:8079", "http://8.8.8.8", "ftp://127.0.0.1/", "not a url"])
def test_run_refuses_non_loopback_urls(url: str) -> None:
    with pytest.raises(SuiteError):
        check_url(url)


def test_remote_urls_need_allow_remote() -> None:
    assert check_url("http://192.0.2.1:8079/", allow_remote=True) == "http://192.0.2.1:8079"
    with pytest.raises(SuiteError, match="not an http"):
        check_url("ftp://192.0.2.1/", allow_remote=True)


def test_loopback_urls_are_allowed() -> None:
    assert check_url("http://127.0.0.1:8079/") == "http://127.0.0.1:8079"
    assert check_url("http://localhost:8079").startswith("http://localhost")
