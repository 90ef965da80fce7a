"""Bounded fuzzing of the HTTP ingress: whatever arrives, the gateway answers in its own terms.

A real gateway (:class:`tests.live_gateway.LiveGateway`: ``create_app`` on a free
loopback port, in a background thread with its own event loop) receives
random bytes and mutations of correctly signed requests and directives on
every POST path, with well-formed and odd Content-Types. Properties:

* never a 5xx (a 500 ``internal-error`` is a bug with a traceback in the log);
* always an answer within :data:`TIMEOUT` seconds;
* every ``application/problem+json`` body is JSON naming a ``check``;
* a 200 on a service path is a signed DUIS ``sr:Response`` (XML), on admin JSON.

Bounded (``max_examples`` 200 per property, no deadline) so it runs in the
normal suite; ``bench/fuzz_campaign.py`` runs the long campaign.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.server import create_app
from gateway.policy import directives as d
from gateway.runtime import open_world
from gateway.world import init_world
from tests.live_gateway import LiveGateway
from tests.scenario import Scenario, make_scenario

TIMEOUT = 15.0
PATHS = ("/api/v1/serviceS", "/api/v1/serviceT", "/api/v1/serviceD", "/api/v1/admin")
CONTENT_TYPES = (
    "application/xml",
    "application/xml",
    "application/xml",
    "text/xml; charset=utf-8",
    "application/json",
    "",
    "application/xml; charset=utf-16",
    "multipart/form-data; boundary=x",
)
FUZZ = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)


@pytest.fixture(scope="module")
def world_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("fuzz-world")
    init_world(directory, devices=8, seed="fuzz-tests")
    return directory


@pytest.fixture(scope="module")
def scenario(world_dir: Path) -> Scenario:
    return make_scenario(world_dir)


@pytest.fixture(scope="module")
def gateway(world_dir: Path, scenario: Scenario, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveGateway]:
    store = tmp_path_factory.mktemp("fuzz-store") / "store.db"
    live = LiveGateway(
        create_app(open_world(world_dir), clock=scenario.clock, store_url=f"sqlite:///{store}"), timeout=TIMEOUT
    )
    live.start()
    yield live
    live.stop()


@pytest.fixture(scope="module")
def seeds(scenario: Scenario) -> dict[str, bytes]:
    """Correctly signed documents the mutations start from, one per path."""
    meter = scenario.device(smets=1).device_id
    return {
        "/api/v1/serviceS": scenario.signed_request("failed_supplier_is", meter),
        "/api/v1/serviceT": scenario.signed_request("failed_supplier_is", meter, cv=4),
        "/api/v1/serviceD": scenario.signed_request("failed_supplier_is", meter, srv="8.2", cv=2),
        "/api/v1/admin": scenario.signed_directive("authority", d.RevokeLicence("no-such-party")),
    }


def assert_answer_in_own_terms(path: str, status: int, content_type: str, body: bytes) -> None:
    assert status < 500, (status, body[:500])
    if content_type.startswith("application/problem+json"):
        problem = json.loads(body)
        assert isinstance(problem, dict) and isinstance(problem.get("check"), str) and problem["check"], problem
        assert problem.get("status") == status
    if status == 200:
        if path.endswith("/admin"):
            assert isinstance(json.loads(body), dict)
        else:
            assert content_type.startswith(("application/xml", "text/xml")), content_type
            assert b"Response" in body and b"Signature" in body
    elif 400 <= status < 500:
        assert content_type.startswith("application/problem+json"), (status, content_type, body[:300])


@st.composite
def mutated(draw: st.DrawFn, seed: bytes) -> bytes:
    data = bytearray(seed)
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(("flip", "delete", "insert", "duplicate", "truncate", "splice-markup")))
        at = draw(st.integers(0, max(len(data) - 1, 0)))
        if kind == "flip" and data:
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif kind == "delete":
            del data[at : at + draw(st.integers(1, 64))]
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=32))
        elif kind == "duplicate":
            data[at:at] = data[at : at + draw(st.integers(1, 256))]
        elif kind == "truncate":
            del data[at:]
        else:
            data[at:at] = draw(
                st.sampled_from(
                    (
                        b"<!DOCTYPE x [<!ENTITY e 'e'>]>",
                        b"<!-- c -->",
                        b"<?pi x?>",
                        b"&e;",
                        b"<![CDATA[x]]>",
                        b'<ds:Object xmlns:ds="http://www.w3.org/2000/09/xmldsig#">',
                        b"\x00",
                        b"\xef\xbb\xbf",
                        b' xmlns:x="urn:x"',
                    )
                )
            )
    return bytes(data)


@FUZZ
@given(path=st.sampled_from(PATHS), content_type=st.sampled_from(CONTENT_TYPES), body=st.binary(max_size=4096))
def test_random_bytes_never_break_the_gateway(gateway: LiveGateway, path: str, content_type: str, body: bytes) -> None:
    status, answered_type, answer = gateway.post(path, body, content_type)
    assert_answer_in_own_terms(path, status, answered_type, answer)


@FUZZ
@given(path=st.sampled_from(PATHS), data=st.data())
def test_mutated_signed_documents_never_break_the_gateway(
    gateway: LiveGateway, seeds: dict[str, bytes], path: str, data: st.DataObject
) -> None:
    body = data.draw(mutated(seeds[path]))
    target = data.draw(st.sampled_from(PATHS))  # also the right document on the wrong path
    status, answered_type, answer = gateway.post(target, body, "application/xml")
    assert_answer_in_own_terms(target, status, answered_type, answer)


def test_unmutated_seeds_are_answered(gateway: LiveGateway, seeds: dict[str, bytes]) -> None:
    for path, body in seeds.items():
        status, content_type, answer = gateway.post(path, body, "application/xml")
        assert status == 200, (path, answer[:500])
        assert_answer_in_own_terms(path, status, content_type, answer)


def test_oversized_body_is_a_problem_not_a_crash(gateway: LiveGateway, world_dir: Path) -> None:
    limit = open_world(world_dir).config.limits.max_body_bytes
    status, content_type, answer = gateway.post(PATHS[0], b"<a>" + b" " * (limit + 10) + b"</a>", "application/xml")
    assert status == 413
    assert_answer_in_own_terms(PATHS[0], status, content_type, answer)


@pytest.mark.parametrize("namespace", [b"relative", b"http;//x", b"a/b"])
def test_relative_namespace_uri_is_refused_not_a_crash(
    gateway: LiveGateway, seeds: dict[str, bytes], namespace: bytes
) -> None:
    seed = seeds["/api/v1/serviceS"]
    root_start = seed.index(b"<", seed.index(b"?>"))
    name_end = seed.index(b" ", root_start)
    body = seed[:name_end] + b' xmlns:zz="' + namespace + b'"' + seed[name_end:]
    status, content_type, answer = gateway.post("/api/v1/serviceS", body, "application/xml")
    assert_answer_in_own_terms("/api/v1/serviceS", status, content_type, answer)
    assert status == 400 and json.loads(answer)["check"] == "namespace-uri"  # found by bench/fuzz_campaign.py
