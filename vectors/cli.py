"""``dcc-gateway vectors generate|run``: the kit's commands.

The ``dcc-gateway`` console script is the gateway's; this package adds its
``vectors`` command through the ``dcc_gateway.commands`` entry point
(pyproject.toml), so that ``gateway`` never imports the kit.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from vectors.expect import Profile

DESCRIPTION = (
    "generate: rebuilds the world's test CA from manifest.json's seed, signs every vector with the world actor's "
    "own xmlSign key, and imports the extra certificates vectors need into DIR/smki/imported (restart the gateway "
    "afterwards; use a test world). Vectors needing a clock override, a CRL, or marked as known issues are listed "
    "in OUT/skipped.json. After the catalogue's signature-level vectors come the stateful ones in a fixed order: "
    "the SoLR story as directives, policy refusals, replays and accepted requests, each expecting an exact DUIS "
    "code; run them once against a fresh world's gateway. run: POSTs the suite to an endpoint and prints a "
    "one-page report (counts by class, every miss and why it matters). --expect ours judges every vector by this "
    "gateway's exact answers; --expect strict-duis only the signature-level verdicts any strict DUIS gateway must "
    "give (a refusal is any HTTP 4xx, an acceptance a signed sr:Response)."
)


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Adds ``vectors`` and its subcommands to the ``dcc-gateway`` parser."""
    vectors = commands.add_parser(
        "vectors", help="signature and policy test vectors as files, run against a DUIS endpoint",
        description=DESCRIPTION,
    )
    subcommands = vectors.add_subparsers(dest="vectors_command", required=True, metavar="SUBCOMMAND")
    generate = subcommands.add_parser(
        "generate", help="write OUT/<id>.xml and OUT/<id>.json for the world in DIR (imports certificates into DIR)"
    )
    generate.add_argument("dir", type=Path)
    generate.add_argument("out", type=Path)
    generate.add_argument("--actor", default="failed_supplier_is", help="signing actor (default: %(default)s)")
    generate.set_defaults(handler=_generate)
    run = subcommands.add_parser("run", help="POST a generated suite to an endpoint and report what it missed")
    run.add_argument("out", type=Path)
    run.add_argument("--url", default="http://127.0.0.1:8079", help="endpoint URL (default: %(default)s)")
    run.add_argument(
        "--expect", choices=[profile.value for profile in Profile], default=Profile.OURS.value,
        help="ours: this gateway's exact answers; strict-duis: the signature-level verdicts any strict DUIS "
        "gateway must give (default: %(default)s)",
    )
    run.add_argument("--json", action="store_true", help="print the report as JSON")
    run.add_argument("--junit", type=Path, default=None, help="also write JUnit XML here")
    run.add_argument("--verbose", action="store_true", help="list every vector before the report")
    run.add_argument("--timeout", type=float, default=30.0, help="seconds per request (default: %(default)s)")
    run.add_argument(
        "--allow-remote", action="store_true",
        help="send to a non-loopback host (a test endpoint you own: the suite is a set of attacks)",
    )
    run.set_defaults(handler=_run)


def _generate(args: argparse.Namespace) -> int:
    from vectors.generate import generate_suite
    from vectors.suite import SuiteError

    try:
        report = generate_suite(args.dir, args.out, actor=args.actor)
    except (OSError, ValueError, SuiteError) as exc:
        print(f"dcc-gateway vectors generate: {exc}", file=sys.stderr)
        return 2
    for category, count in report.categories.items():
        print(f"{category:<14} {count:>4}")
    print(
        f"{len(report.written)} vectors written to {args.out}, {len(report.skipped)} skipped (skipped.json), "
        f"{len(report.imported)} certificates imported into {args.dir}/smki/imported (restart the gateway)"
    )
    if report.official_schema:
        print(f"{len(report.official_schema)} vectors expect '400 schema': the world's official DUIS XSD refuses "
              "them first")
    return 0


def _run(args: argparse.Namespace) -> int:
    from vectors.run import run_suite
    from vectors.suite import SuiteError

    try:
        report = run_suite(
            args.out, args.url, profile=Profile(args.expect), timeout=args.timeout, allow_remote=args.allow_remote
        )
    except (OSError, ValueError, SuiteError) as exc:
        print(f"dcc-gateway vectors run: {exc}", file=sys.stderr)
        return 2
    if args.json:
        document: dict[str, Any] = report.to_json()
        print(json.dumps(document, indent=2))
    else:
        report.write_text(sys.stdout, verbose=args.verbose)
    if args.junit:
        report.write_junit(args.junit)
    return 0 if report.ok else 1
