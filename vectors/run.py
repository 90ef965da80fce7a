"""Runs a generated suite against a DUIS endpoint: POST each vector, judge each answer, report.

Order: the catalogue's vectors first, by id (each stands alone), then the
stateful vectors by ``sequence``. The profile (:mod:`vectors.expect`) decides
which vectors are sent and how their answers are judged. The URL must be a
loopback address unless the caller allows a remote one: the suite is a set of
attacks, for a test endpoint its owner points it at on purpose.
"""

from __future__ import annotations

import ipaddress
import socket
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

from vectors.expect import Profile
from vectors.judge import Answer, judge, unanswered
from vectors.report import Outcome, RunReport
from vectors.suite import SuiteError, SuiteVector, load_suite


def run_suite(
    out: Path, url: str, *, profile: Profile = Profile.OURS, timeout: float = 30.0, allow_remote: bool = False
) -> RunReport:
    """Sends every vector of the suite in ``out`` that ``profile`` judges to the endpoint at ``url``."""
    base = check_url(url, allow_remote=allow_remote)
    suite = load_suite(out)
    chosen = [vector for vector in suite if vector.judged_by(profile)]
    if not chosen:
        raise SuiteError(f"{out}: the profile {profile.value} judges none of this suite's vectors")
    outcomes = tuple(_send(vector, base, profile, timeout) for vector in chosen)
    return RunReport(url=base, profile=profile, outcomes=outcomes, left_out=len(suite) - len(chosen))


def check_url(url: str, *, allow_remote: bool = False) -> str:
    """The URL without a trailing slash; SuiteError when it is not http(s), or not loopback unless allowed."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise SuiteError(f"not an http(s) URL: {url}")
    if not allow_remote:
        try:
            addresses = {info[4][0] for info in socket.getaddrinfo(parts.hostname, parts.port or 80)}
        except OSError as exc:
            raise SuiteError(f"cannot resolve {parts.hostname}: {exc}") from exc
        if not addresses or not all(ipaddress.ip_address(str(a).split("%")[0]).is_loopback for a in addresses):
            raise SuiteError(
                f"refusing a non-loopback endpoint: {url} ({', '.join(sorted(map(str, addresses)))}); "
                "--allow-remote sends the suite there (a test endpoint you own: the suite is a set of attacks)"
            )
    return url.rstrip("/")


def post(url: str, data: bytes, timeout: float) -> Answer:
    """POSTs ``data`` as application/xml; an HTTP error status is an answer too."""
    request = urllib.request.Request(url, data=data, method="POST", headers={"Content-Type": "application/xml"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return Answer(response.status, response.headers.get("Content-Type", ""), response.read())
    except urllib.error.HTTPError as error:
        return Answer(error.code, error.headers.get("Content-Type", ""), error.read())


def _send(vector: SuiteVector, base: str, profile: Profile, timeout: float) -> Outcome:
    data = vector.xml.read_bytes()
    started = time.monotonic()  # for the JUnit report's times only
    try:
        judgement = judge(vector.expectation, post(base + vector.endpoint, data, timeout), profile)
    except OSError as exc:  # urllib.error.URLError, timeouts and resets are OSErrors
        judgement = unanswered(str(exc))
    return Outcome(
        id=vector.id,
        category=vector.category,
        expected=vector.expectation.wanted(profile),
        got=judgement.got,
        miss=judgement.miss,
        seconds=time.monotonic() - started,
        description=vector.description,
        reference=vector.reference,
        stateful=vector.stateful,
    )
