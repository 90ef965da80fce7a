"""``/console``'s JSON endpoints and gate, each on its own, over real HTTP (issue #17).

The page only draws what these endpoints answer, so what a person reads is checked
here against an independent source: the meters as ``run_down`` leaves them, the
store's own audit log and quarantine, the bytes that were sent, the gateway's
signature on what it answered.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import shutil
import tomllib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer, make_mocked_request

from gateway.app import FORWARDER, RUNTIME
from gateway.server import create_app
from gateway.config import ConfigError, load_config, render_config
from gateway.console.routes import _loopback_gate, arrived_on_loopback, is_loopback_host
from gateway.devices import run_down
from gateway.eui64 import Eui64
from gateway.policy import directives as d
from gateway.recent import Exchange, RecentExchanges
from gateway.runtime import open_world
from gateway.verify.documents import VerifiedDirective, VerifiedRequest, VerifiedResponse
from gateway.world import init_world
from tests.scenario import START, make_scenario
from tests.test_service_http import Harness

UNTIL = START + dt.timedelta(days=30)
CHF = Eui64.parse("00-DB-12-CF-00-00-00-01")


@pytest.fixture(scope="module")
def world_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 20-meter world plus a comms hub (a device with no payment mode or credit)."""
    directory = tmp_path_factory.mktemp("console-world")
    init_world(directory, devices=20, seed="console-tests")
    manifest = json.loads((directory / "manifest.json").read_text())
    manifest["devices"].append({"device_id": str(CHF), "type": "CHF", "smets": 2, "supplier_mpid": "FAIL"})
    (directory / "manifest.json").write_text(json.dumps(manifest))
    return directory


def with_config(world_dir: Path, target: Path, **sections: dict[str, object]) -> Path:
    """A copy of the world with some gateway.toml keys changed."""
    shutil.copytree(world_dir, target)
    tables = tomllib.loads((target / "gateway.toml").read_text())
    for name, values in sections.items():
        tables[name].update(values)
    (target / "gateway.toml").write_text(render_config(tables))
    return target


async def open_harness(world: Path, tmp_path: Path) -> tuple[Harness, TestClient]:
    scenario = make_scenario(world)
    app = create_app(open_world(world), clock=scenario.clock, store_url=f"sqlite:///{tmp_path / 'store.db'}")
    client = TestClient(TestServer(app, host="127.0.0.1"))
    await client.start_server()
    return Harness(client, scenario), client


@pytest.fixture
async def harness(world_dir: Path, tmp_path: Path) -> AsyncIterator[Harness]:
    harness, client = await open_harness(world_dir, tmp_path)
    try:
        yield harness
    finally:
        await client.close()


async def get_json(harness: Harness, path: str) -> dict[str, object]:
    response = await harness.client.get(path)
    assert response.status == 200, await response.text()
    value: dict[str, object] = await response.json()
    return value


async def contingency(harness: Harness, threshold: int = 10) -> None:
    sc_user = harness.scenario.actor("srp_sc").user_id
    await harness.must("authority", d.RevokeLicence("failed-supplier"))
    await harness.must("authority", d.AppointSolr("failed-supplier", "solr-supplier"))
    await harness.must("authority", d.EnableContingency("failed-supplier", sc_user, UNTIL))
    await harness.must("srp_aro", d.SubmitAdt("failed-supplier", 3600, {"1.6": threshold}))


def failed_prepayment_smets1(harness: Harness) -> list[Eui64]:
    devices = harness.scenario.devices(mpid_of="failed-supplier", smets=1)
    return [device.device_id for device in devices if device.payment_mode == "Prepayment"]


# --- the gate ------------------------------------------------------------------------------------


async def test_the_page_and_its_files_are_served_on_loopback_with_a_strict_policy(harness: Harness) -> None:
    page = await harness.client.get("/console")
    assert page.status == 200 and page.content_type == "text/html"
    policy = page.headers["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy and "frame-ancestors 'none'" in policy
    html = await page.text()
    assert '<script src="/console/console.js"' in html and "<script>" not in html  # no inline script
    for path, kind in (("/console/console.js", "text/javascript"), ("/console/console.css", "text/css")):
        response = await harness.client.get(path)
        assert response.status == 200 and response.content_type == kind
    script = await (await harness.client.get("/console/console.js")).text()
    assert "innerHTML" not in script  # everything from the gateway goes in as text


@pytest.mark.parametrize(
    "path",
    [
        "/console/",
        "/console/anything",
        "/console/api",
        "/console/api/nothing",
        "/console/api/fleet/extra",
        "/console/api/exchanges/999/request.xml",
        "/console/api/exchanges/1/other.xml",
        "/console/api/exchanges/x/request.xml",
        "/console/api/deliveries/12345.xml",
        "/console/api/quarantine/77.xml",
        "/console/../manifest.json",
        "/console/static/console.js",
    ],
)
async def test_unknown_paths_under_the_console_are_404(harness: Harness, path: str) -> None:
    response = await harness.client.get(path)
    assert response.status == 404, path


@pytest.mark.parametrize(
    ("server", "simulation", "served"),
    [
        pytest.param({"host": "0.0.0.0"}, {}, False, id="every-address-by-default-off"),
        pytest.param({"host": "192.0.2.10"}, {}, False, id="other-address-off"),
        pytest.param({"host": "0.0.0.0"}, {"console": True}, True, id="configured-on"),
        pytest.param({"host": "127.0.0.1"}, {"console": False}, False, id="switched-off-on-loopback"),
        pytest.param({"host": "::1"}, {}, True, id="ipv6-loopback"),
        pytest.param({"host": "localhost"}, {}, True, id="localhost"),
    ],
)
async def test_off_loopback_the_console_is_off_unless_configured(
    world_dir: Path, tmp_path: Path, server: dict[str, object], simulation: dict[str, object], served: bool
) -> None:
    world = with_config(world_dir, tmp_path / "world", server=server, simulation=simulation)
    harness, client = await open_harness(world, tmp_path)
    try:
        for path in ("/console", "/console/api/fleet", "/console/api/audit"):
            assert ((await client.get(path)).status == 200) is served, path
        assert (await client.get("/healthz")).status == 200  # the gateway itself is unaffected
    finally:
        await client.close()


class _Transport:
    def __init__(self, sockname: object) -> None:
        self._sockname = sockname

    def get_extra_info(self, name: str, default: object = None) -> object:
        return self._sockname if name == "sockname" else default

    def is_closing(self) -> bool:
        return False


@pytest.mark.parametrize(
    ("sockname", "allowed"),
    [
        pytest.param(("127.0.0.1", 8079), True, id="ipv4-loopback"),
        pytest.param(("127.8.9.10", 8079), True, id="ipv4-loopback-range"),
        pytest.param(("::1", 8079, 0, 0), True, id="ipv6-loopback"),
        pytest.param(("192.0.2.10", 8079), False, id="an-interface-address"),
        pytest.param(("::ffff:192.0.2.10", 8079, 0, 0), False, id="mapped-address"),
        pytest.param("/run/gateway.sock", False, id="unix-socket"),
        pytest.param(None, False, id="unknown"),
    ],
)
async def test_a_connection_that_arrived_off_loopback_meets_a_404(sockname: object, allowed: bool) -> None:
    """``serve --host 0.0.0.0`` over a loopback gateway.toml: the routes exist, but only a connection
    to a loopback address of the host reaches them."""
    request = make_mocked_request("GET", "/console", transport=_Transport(sockname))
    assert arrived_on_loopback(request) is allowed

    async def page(_: object) -> object:
        return "the page"

    gated = _loopback_gate(page)  # type: ignore[arg-type]
    if allowed:
        assert await gated(request) == "the page"
    else:
        with pytest.raises(Exception) as refused:
            await gated(request)
        assert getattr(refused.value, "status", None) == 404


@pytest.mark.parametrize(
    ("host", "loopback"),
    [("127.0.0.1", True), ("::1", True), ("[::1]", True), ("localhost", True), ("LOCALHOST", True),
     ("0.0.0.0", False), ("::", False), ("", False), ("gateway.example", False), ("10.0.0.1", False)],
)
def test_which_listen_addresses_are_loopback(host: str, loopback: bool) -> None:
    assert is_loopback_host(host) is loopback


@pytest.mark.parametrize("value", ['"yes"', "1", '"Loopback"', '""'])
def test_the_console_switch_is_true_false_or_loopback(tmp_path: Path, value: str) -> None:
    (tmp_path / "gateway.toml").write_text(f"[simulation]\nconsole = {value}\n")
    with pytest.raises(ConfigError, match="console must be true, false or"):
        load_config(tmp_path)


def test_the_console_switch_defaults_to_loopback(tmp_path: Path) -> None:
    (tmp_path / "gateway.toml").write_text("")
    assert load_config(tmp_path).simulation.console == "loopback"
    (tmp_path / "gateway.toml").write_text("[simulation]\nconsole = true\n")
    assert load_config(tmp_path).simulation.console is True


# --- the fleet -----------------------------------------------------------------------------------


async def test_the_fleet_shows_each_meter_as_run_down_now_and_a_device_without_a_meter_as_such(harness: Harness) -> None:
    harness.scenario.clock.set(START + dt.timedelta(days=2))
    view = await get_json(harness, "/console/api/fleet?limit=500")
    manifest = harness.scenario.manifest
    rows = {row["device_id"]: row for row in view["rows"]}  # type: ignore[union-attr, index]
    assert len(rows) == len(manifest.devices) == view["matching"]
    fleet = harness.client.server.app[RUNTIME].fleet  # type: ignore[union-attr]
    for device in manifest.devices:
        row = rows[str(device.device_id)]
        assert (row["device_type"], row["smets"], row["mpid"]) == (device.type, device.smets, device.supplier_mpid)
        state = fleet.state(device.device_id)
        if state is None:
            continue
        now, _ = run_down(state, harness.scenario.clock.now())
        assert (row["payment_mode"], row["credit_pence"], row["emergency_credit_pence"], row["supply"]) == (
            now.payment_mode, now.credit_pence, now.emergency_credit_pence, now.supply
        )
        assert row["simulated"] is True and len(row["sparkline"]) == 15
        assert row["sparkline"][0]["pence"] == now.credit_pence + now.emergency_credit_pence
    hub = rows[str(CHF)]
    assert hub["simulated"] is False and hub["supplier"] == "failed-supplier"
    assert [hub[key] for key in ("payment_mode", "credit_pence", "emergency_credit_pence", "supply", "mpxn")] == [None] * 5
    assert hub["sparkline"] == []
    counts = view["counts"]
    assert counts["devices"] == len(manifest.devices) and counts["meters"] == len(manifest.devices) - 1  # type: ignore[index]


@pytest.mark.parametrize("days", [1, 3, 10])
async def test_will_lose_supply_within_n_days_is_what_the_simulation_then_does(harness: Harness, days: int) -> None:
    """The filter's answer against an independent oracle: each meter run down to now + N days."""
    now = harness.scenario.clock.now()
    view = await get_json(harness, f"/console/api/fleet?within_days={days}&limit=500")
    shown = {row["device_id"] for row in view["rows"]}  # type: ignore[union-attr, index]
    fleet = harness.client.server.app[RUNTIME].fleet  # type: ignore[union-attr]
    expected = set()
    for device in harness.scenario.manifest.devices:
        state = fleet.state(device.device_id)
        if state is not None and run_down(state, now + dt.timedelta(days=days))[0].supply == "Disabled":
            expected.add(str(device.device_id))
    assert shown == expected and expected, f"some meter should lose supply within {days} days"
    for row in view["rows"]:  # type: ignore[union-attr]
        lost = dt.datetime.fromisoformat(row["loses_supply_at"].replace("Z", "+00:00"))  # type: ignore[index]
        state = fleet.state(Eui64.parse(row["device_id"]))  # type: ignore[index]
        assert run_down(state, lost - dt.timedelta(microseconds=1))[0].supply == "Enabled"  # type: ignore[arg-type]
        assert run_down(state, lost)[0].supply == "Disabled"  # type: ignore[arg-type]


async def test_the_fleet_filters_by_supplier_party_or_mpid_and_pages(harness: Harness) -> None:
    manifest = harness.scenario.manifest
    failed = set(manifest.party("failed-supplier").mpids)
    by_party = await get_json(harness, "/console/api/fleet?supplier=failed-supplier&limit=500")
    assert {row["mpid"] for row in by_party["rows"]} <= failed  # type: ignore[union-attr, index]
    assert by_party["matching"] == sum(1 for device in manifest.devices if device.supplier_mpid in failed)
    by_mpid = await get_json(harness, "/console/api/fleet?supplier=FALG&limit=500")
    assert {row["mpid"] for row in by_mpid["rows"]} == {"FALG"}  # type: ignore[union-attr, index]
    first = await get_json(harness, "/console/api/fleet?limit=5")
    second = await get_json(harness, "/console/api/fleet?limit=5&offset=5")
    ids = [row["device_id"] for row in first["rows"] + second["rows"]]  # type: ignore[operator, index]
    assert ids == [str(device.device_id) for device in manifest.devices[:10]]
    parties = {supplier["party"] for supplier in first["suppliers"]}  # type: ignore[union-attr, index]
    assert {"failed-supplier", "solr-supplier"} <= parties


async def test_after_the_mpid_transfer_the_fleet_names_the_solr_as_holder(harness: Harness) -> None:
    await contingency(harness)
    await harness.must("solr_is", d.ConfirmTakeover("failed-supplier", "estate", "staff", "srp", "risks", "weeks"))
    await harness.must("dcc_operator", d.TransferMpids("failed-supplier", "solr-supplier"))
    view = await get_json(harness, "/console/api/fleet?supplier=solr-supplier&limit=500")
    assert "FAIL" in {row["mpid"] for row in view["rows"]}  # type: ignore[union-attr, index]
    assert {row["supplier"] for row in view["rows"]} == {"solr-supplier"}  # type: ignore[union-attr, index]


@pytest.mark.parametrize(
    "query",
    ["within_days=abc", "within_days=0", "within_days=-2", "within_days=366", "within_days=nan", "within_days=inf",
     "limit=0", "limit=501", "limit=x", "offset=-1", "colour=red"],
)
async def test_a_bad_fleet_query_is_a_problem_naming_the_parameter(harness: Harness, query: str) -> None:
    response = await harness.client.get(f"/console/api/fleet?{query}")
    assert response.status == 400 and response.content_type == "application/problem+json"
    problem = await response.json()
    assert problem["check"] == "console-query" and query.split("=")[0] in problem["detail"]


# --- the SoLR event --------------------------------------------------------------------------------


async def test_the_solr_event_shows_each_directive_in_force_and_what_the_machine_would_do_next(harness: Harness) -> None:
    assert (await get_json(harness, "/console/api/solr"))["events"] == []
    await contingency(harness, threshold=3)
    await harness.must("pma", d.DelayMpidTransfer("failed-supplier", START + dt.timedelta(days=10), "eligibility, continuity plan, SRP"))
    (event,) = (await get_json(harness, "/console/api/solr"))["events"]  # type: ignore[misc]
    assert event["failed"] == "failed-supplier" and event["solr"] == "solr-supplier" and event["stage"] == "solr-appointed"
    in_force = {item["directive"]: item for item in event["in_force"]}
    assert set(in_force) == {"revoke-licence", "appoint-solr", "enable-contingency", "submit-adt", "delay-mpid-transfer"}
    enablement = in_force["enable-contingency"]
    assert enablement["until"] == "2026-04-01T09:00:00Z" and enablement["status"] == "in force" and enablement["user"] == "srp_sc"
    assert any("(E41)" in text for text in enablement["refuses"]) and "Credit" in enablement["allows"][0]
    delay = in_force["delay-mpid-transfer"]
    assert delay["considered"] == "eligibility, continuity plan, SRP" and delay["active"] is True
    assert delay["refuses"] == ["transfer-mpids until 2026-03-12T09:00:00Z"]
    assert in_force["submit-adt"]["thresholds"] == {"1.6": 3} and in_force["submit-adt"]["submitted_by"] == "srp_aro"
    verdicts = {probe["directive"]: probe for probe in event["next"]}
    assert verdicts["confirm-takeover"]["accepted"] is True and verdicts["confirm-takeover"]["issuer"] == "solr_is"
    assert verdicts["transfer-mpids"]["accepted"] is False and "delayed the transfer" in verdicts["transfer-mpids"]["reason"]
    assert "not yet confirmed" in verdicts["revoke-certificates"]["reason"]
    # Asking changed nothing: the takeover is still unconfirmed, and the stored log has no probe in it.
    assert (await harness.direct("solr_is", d.ConfirmTakeover("failed-supplier", "e", "s", "p", "r", "t")))["accepted"]

    harness.scenario.clock.set(UNTIL + dt.timedelta(seconds=1))
    (event,) = (await get_json(harness, "/console/api/solr"))["events"]  # type: ignore[misc]
    in_force = {item["directive"]: item for item in event["in_force"]}
    assert in_force["enable-contingency"]["status"] == "expired"
    assert in_force["enable-contingency"]["refuses"] == ["every request of srp_sc for failed-supplier (E3: enablement expired)"]
    assert in_force["delay-mpid-transfer"]["active"] is False and event["stage"] == "solr-confirmed"


# --- ADT windows, quarantine ---------------------------------------------------------------------------


async def test_a_quarantined_request_is_shown_with_its_window_its_bytes_and_the_command_that_releases_it(
    harness: Harness,
) -> None:
    await contingency(harness, threshold=1)
    first, second = failed_prepayment_smets1(harness)[:2]
    assert (await harness.send("serviceS", "srp_sc", first))[0] == "I99"
    sent = harness.scenario.signed_request("srp_sc", second)
    status, _, _ = await harness.post("serviceS", sent)
    assert status == 200

    view = await get_json(harness, "/console/api/quarantine")
    (window,) = [w for w in view["windows"] if w["user"] == "srp_sc"]  # type: ignore[union-attr, index]
    assert (window["admissions_in_window"], window["threshold"], window["window_seconds"]) == (1, 1, 3600)
    assert window["next_is_quarantined"] is True and "ADT file of srp" in window["source"]
    (held,) = view["quarantined"]  # type: ignore[misc]
    stored = await harness.client.server.app[RUNTIME].store.quarantined(harness.scenario.actor("srp_sc").user_id)  # type: ignore[union-attr]
    assert held["event_ref"] == stored[0].event_ref and held["status"] == "held" and held["user"] == "srp_sc"
    port = harness.client.server.port  # type: ignore[union-attr]
    assert held["commands"]["release"] == (
        f"dcc-gateway admin {harness.scenario.world.directory} --as srp_sc --url http://127.0.0.1:{port} "
        f"release-quarantine {held['event_ref']}"
    )
    assert held["commands"]["delete"].endswith(f"delete-quarantine {held['event_ref']}")
    document = await harness.client.get(held["xml"])
    assert document.content_type == "application/xml" and await document.read() == sent
    assert "sandbox" in document.headers["Content-Security-Policy"]

    await harness.must("srp_sc", d.DeleteQuarantine(held["event_ref"]))
    (held,) = (await get_json(harness, "/console/api/quarantine"))["quarantined"]  # type: ignore[misc]
    assert held["status"] == "deleted" and held["commands"] == {}


# --- requests, deliveries, audit ----------------------------------------------------------------------


async def test_the_last_exchanges_open_as_the_signed_xml_that_crossed_the_wire(harness: Harness) -> None:
    await contingency(harness)
    meter = failed_prepayment_smets1(harness)[0]
    sent = harness.scenario.signed_request("srp_sc", meter)
    status, headers, answer = await harness.post("serviceS", sent)
    assert status == 200
    tampered = harness.scenario.signed_request("srp_sc", meter, counter=5000).replace(b":5000<", b":5001<")
    assert (await harness.post("serviceS", tampered))[0] == 401

    traffic = await get_json(harness, "/console/api/traffic")
    bad, good = traffic["exchanges"][:2]  # type: ignore[index]
    assert bad["outcome"] == "digest-mismatch" and bad["request_xml"] is None and bad["response_xml"] is None
    assert bad["sender"] is None  # who it claims to be from is not known: it did not authenticate
    assert (good["outcome"], good["sender"], good["srv"], good["cv"]) == ("I99", "srp_sc", "1.6", 1)
    assert good["reason"] == headers["DUIS-Reason"] and good["target"] == str(meter)
    assert await (await harness.client.get(good["request_xml"])).read() == sent
    shown_answer = await (await harness.client.get(good["response_xml"])).read()
    assert shown_answer == answer
    verified = harness.scenario.world.verifier(harness.scenario.clock).verify(shown_answer)
    assert isinstance(verified, VerifiedResponse) and verified.response_code == "I99"
    directive = next(x for x in traffic["exchanges"] if x["kind"] == "directive")  # type: ignore[union-attr]
    assert directive["directive"] == "submit-adt" and directive["outcome"] == "accepted" and directive["sender"] == "srp_aro"
    assert (await harness.client.get(f"/console/api/exchanges/{bad['sequence']}/request.xml")).status == 404

    await harness.client.server.app[FORWARDER].drain()  # type: ignore[union-attr]
    deliveries = (await get_json(harness, "/console/api/traffic"))["deliveries"]
    result = next(x for x in deliveries if x["message"] == "ResponseMessage")  # type: ignore[union-attr]
    assert (result["code"], result["recipient"], result["request_id"]) == ("I0", "srp_sc", good["subject"])
    body = await (await harness.client.get(result["xml"])).read()
    delivered = harness.scenario.world.verifier(harness.scenario.clock).verify(body)
    assert isinstance(delivered, VerifiedResponse) and delivered.response_code == "I0"
    assert any(x["message"] == "DeviceAlertMessage" and x["code"].startswith("alert ") for x in deliveries)  # type: ignore[union-attr]


def test_the_ring_keeps_the_newest_exchanges_only() -> None:
    ring = RecentExchanges(capacity=3)
    for _ in range(5):
        ring.add(Exchange(ring.next_sequence(), START, "request", "serviceS", "I99", ""))
    assert [x.sequence for x in ring.newest_first()] == [5, 4, 3]
    assert ring.get(2) is None and ring.get(4) is not None
    with pytest.raises(ValueError):
        RecentExchanges(capacity=0)


async def test_the_audit_head_is_the_stores_last_record(harness: Harness) -> None:
    assert (await get_json(harness, "/console/api/audit"))["head"] is None
    await contingency(harness)
    await harness.send("serviceS", "srp_sc", failed_prepayment_smets1(harness)[0])
    view = await get_json(harness, "/console/api/audit")
    records = [r async for r in harness.client.server.app[RUNTIME].store.audit_records()]  # type: ignore[union-attr]
    # The outbox may have recorded more since (delivery attempts run in the background): the head shown
    # is the store's record at that sequence, and the records shown are the ones before it, newest first.
    head = records[view["head"]["sequence"] - 1]  # type: ignore[index]
    assert view["head"] == {"sequence": head.sequence, "hash": head.hash, "anchor": f"{head.sequence}:{head.hash}"}
    assert head.sequence >= 5  # four directives and the request, at least
    shown = [(r["sequence"], r["kind"], r["outcome"], r["hash"]) for r in view["records"]]  # type: ignore[union-attr, index]
    expected = [(r.sequence, r.entry.kind, r.entry.outcome, r.hash) for r in reversed(records[: head.sequence])]
    assert shown == expected[: len(shown)] and len(shown) == min(25, head.sequence)


# --- what the console never shows ------------------------------------------------------------------------


async def test_the_console_shows_no_private_key_and_nothing_beyond_the_devices_and_the_audit_log(harness: Harness) -> None:
    await contingency(harness, threshold=1)
    first, second = failed_prepayment_smets1(harness)[:2]
    await harness.send("serviceS", "srp_sc", first)
    await harness.send("serviceS", "srp_sc", second)
    await harness.client.server.app[FORWARDER].drain()  # type: ignore[union-attr]
    texts = []
    for path in ("/console", "/console/console.js", "/console/api/fleet?limit=500", "/console/api/solr",
                 "/console/api/quarantine", "/console/api/traffic", "/console/api/audit"):
        texts.append(await (await harness.client.get(path)).text())
    traffic = json.loads(texts[5])
    for link in [x[k] for x in traffic["exchanges"] for k in ("request_xml", "response_xml") if x[k]] + [
        x["xml"] for x in traffic["deliveries"]
    ]:
        texts.append(await (await harness.client.get(link)).text())
    everything = "\n".join(texts)
    assert "PRIVATE KEY" not in everything
    for actor in harness.scenario.manifest.actors.values():
        keys = [actor.xml_sign.key] + ([actor.digital_signing.key] if actor.digital_signing else [])
        for key in keys:
            body = "".join(line for line in key.read_text().splitlines() if not line.startswith("-----"))
            for start in range(0, len(body) - 24, 24):
                assert body[start : start + 24] not in everything, f"part of {key.name} of {actor.name} is shown"
            assert str(key) not in everything and key.name not in everything
    # The signed documents shown are only what authenticated and the gateway's own answers.
    for exchange in traffic["exchanges"]:
        if exchange["request_xml"]:
            sent = await (await harness.client.get(exchange["request_xml"])).read()
            verified = harness.scenario.world.verifier(harness.scenario.clock).verify(sent)
            assert isinstance(verified, VerifiedRequest if exchange["kind"] == "request" else VerifiedDirective)
    assert not re.search(r"/pki/actors/", everything)
