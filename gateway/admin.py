"""``dcc-gateway admin DIR --as ACTOR DIRECTIVE [args]``: sign a directive as an actor and post it.

Arguments follow SPEC §6: positional where the SPEC writes them bare, options
where it writes ``--flag``. The DirectiveID counter is the current time in
microseconds, so an actor's successive directives get growing counters.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path

from gateway.manifest import Manifest, load_manifest
from gateway.policy import directives as d
from gateway.signing import SigningKey, sign_tree, to_bytes

# directive -> (positional fields, option fields), in SPEC §6's words.
SYNTAX: Mapping[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "revoke-licence": (("supplier",), ()),
    "appoint-solr": (("failed", "solr"), ()),
    "enable-contingency": (("failed", "srp_user"), ("until",)),
    "withdraw-contingency": (("failed", "srp_user"), ()),
    "delay-revocation": (("supplier",), ("until", "considered")),
    "delay-mpid-transfer": (("supplier",), ("until", "considered")),
    "confirm-takeover": (("failed",), ("estate", "staff", "srp_support", "risks", "timescales")),
    "revoke-certificates": (("supplier",), ()),
    "transfer-mpids": (("failed", "solr"), ()),
    "register-party": (("name", "kind"), ("mpids",)),
    "register-user": (("user_id", "name", "party", "role"), ()),
    "register-device": (("device_id", "device_type", "smets", "mpid"), ()),
    "suspend-party": (("party",), ()),
    "create-aro": (("user_id", "name"), ()),
    "submit-adt": (("failed", "file"), ()),
    "release-quarantine": (("event_ref",), ()),
    "delete-quarantine": (("event_ref",), ()),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dir", type=Path, help="the world directory (manifest.json)")
    parser.add_argument("--as", dest="actor", required=True, help="actor name from manifest.json")
    parser.add_argument("--url", default=None, help="gateway base URL (default: manifest gateway.url)")
    commands = parser.add_subparsers(dest="directive", required=True, metavar="DIRECTIVE")
    for name, (positional, options) in SYNTAX.items():
        command = commands.add_parser(name)
        for field in positional:
            command.add_argument(field, metavar=field.upper())
        for field in options:
            command.add_argument("--" + field.replace("_", "-"), dest=field, required=True)


def build(args: argparse.Namespace) -> d.Directive:
    positional, options = SYNTAX[args.directive]
    values = {field: str(getattr(args, field)) for field in (*positional, *options)}
    if args.directive == "submit-adt":
        adt = json.loads(Path(values.pop("file")).read_text())
        values["window_seconds"] = str(adt["window_seconds"])
        values["thresholds"] = json.dumps(adt["thresholds"])
    return d.from_arguments(args.directive, values)


def signed_directive(manifest: Manifest, actor_name: str, directive: d.Directive, counter: int) -> bytes:
    actor = manifest.actor(actor_name)
    directive_id = f"{actor.user_id}:{manifest.gateway.dsp_user_id}:{counter}"
    key = SigningKey.load(actor.xml_sign.key, actor.xml_sign.cert)
    return to_bytes(sign_tree(d.directive_tree(directive, directive_id), key))


def post(url: str, body: bytes, timeout: float = 10.0) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/xml"}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - the user's own gateway
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def run(args: argparse.Namespace, now: dt.datetime) -> int:
    manifest = load_manifest(args.dir)
    directive = build(args)
    counter = int(now.timestamp() * 1_000_000)
    body = signed_directive(manifest, args.actor, directive, counter)
    status, answer = post((args.url or manifest.gateway.url).rstrip("/") + "/api/v1/admin", body)
    if status != 200:
        print(f"rejected before authorisation (HTTP {status}): {answer.decode(errors='replace')}")
        return 1
    outcome = json.loads(answer)
    print(("accepted: " if outcome["accepted"] else "refused: ") + outcome["reason"])
    return 0 if outcome["accepted"] else 1

