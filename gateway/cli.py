"""The ``dcc-gateway`` console script (SPEC §2)."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from collections.abc import Callable, Sequence
from importlib.metadata import entry_points
from pathlib import Path

from gateway.checks import VerificationError
from gateway.clock import Clock, FixedClock

COMMAND_ENTRY_POINTS = "dcc_gateway.commands"


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    handler: Callable[[argparse.Namespace], int] = args.handler
    return handler(args)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dcc-gateway", description="A simulated DCC access-control gateway.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    init = commands.add_parser("init", help="create a simulated world (PKI, actors, devices, gateway.toml)")
    init.add_argument("dir", type=Path)
    init.add_argument("--devices", type=int, default=20, help="number of simulated meters (default 20)")
    init.add_argument("--seed", default="dcc-gateway", help="seed for keys and the fleet (default: dcc-gateway)")
    init.add_argument("--force", action="store_true", help="overwrite an existing world")
    init.add_argument(
        "--boxed", type=Path, default=None, metavar="KEYSTORE",
        help="a world in DCC Boxed's identities, from its keystore.json (read in place): ZAZ1 users, the Boxed "
        "supplier as the failing supplier, answers signed with the ZAZ1 DSP key, DCC Boxed's devices",
    )
    init.set_defaults(handler=_init)

    serve = commands.add_parser("serve", help="run the gateway")
    serve.add_argument("dir", type=Path)
    serve.add_argument("--host", default=None, help="listen address (default from gateway.toml: 127.0.0.1)")
    serve.add_argument("--port", type=int, default=None, help="listen port (default from gateway.toml: 8079)")
    serve.add_argument("--store", default=None, help="store URL (default: SQLite file in DIR)")
    serve.add_argument("--workers", type=int, default=1, help="worker processes (PostgreSQL store only)")
    serve.set_defaults(handler=_serve)

    sign = commands.add_parser("sign", help="add the DUIS signature to a request, response or directive")
    sign.add_argument("--key", type=Path, required=True, help="PEM private key")
    sign.add_argument("--cert", type=Path, required=True, help="PEM certificate named in KeyInfo")
    sign.add_argument("input", nargs="?", type=Path, help="document to sign (default: stdin)")
    sign.add_argument("-o", "--output", type=Path, help="where to write (default: stdout)")
    sign.set_defaults(handler=_sign)

    verify = commands.add_parser("verify", help="run the gateway's parse, signature and certificate checks")
    verify.add_argument("file", type=Path)
    verify.add_argument("--dir", type=Path, required=True, help="the world directory (SMKI repository, limits)")
    verify.add_argument("--json", action="store_true", help="print a JSON verdict")
    verify.add_argument(
        "--at", type=_timestamp, default=None, help="check certificate validity at this ISO 8601 instant (default: now)"
    )
    verify.set_defaults(handler=_verify)

    smki = commands.add_parser("smki", help="SMKI repository maintenance")
    smki_commands = smki.add_subparsers(dest="smki_command", required=True, metavar="SUBCOMMAND")
    smki_import = smki_commands.add_parser("import", help="add PEM certificates/CRLs or a DCC Boxed keystore.json")
    smki_import.add_argument("dir", type=Path)
    smki_import.add_argument("files", nargs="+", type=Path)
    smki_import.set_defaults(handler=_smki_import)
    admin = commands.add_parser("admin", help="sign a directive as an actor and post it to the gateway")
    from gateway.admin import add_arguments as add_admin_arguments

    add_admin_arguments(admin)
    admin.set_defaults(handler=_admin)

    demo = commands.add_parser("demo", help="run the SoLR story end to end against a gateway it starts")
    demo.add_argument("dir", nargs="?", type=Path, default=None, help="world directory (default: a temporary one)")
    demo.add_argument(
        "--plot", type=_plot_file, default=None, metavar="FILE",
        help="also draw each meter's credit and supply over the 28 days, with and without the SC role (FILE.png or FILE.svg)",
    )
    demo.set_defaults(handler=_demo)

    utrn = commands.add_parser("utrn", help="vend a UTRN (SR 2.2 Top Up) with a supplier's prepayment key")
    utrn.add_argument("dir", type=Path, help="world directory")
    utrn.add_argument("--as", dest="actor", required=True, help="the supplier actor whose prepayment key vends it")
    utrn.add_argument("--device", required=True, help="the meter's device ID")
    utrn.add_argument("--value", type=int, required=True, help="0 to 8191 (pence, or pounds with --pounds)")
    utrn.add_argument("--pounds", action="store_true", help="the value is in pounds")
    utrn.add_argument("--counter", type=int, required=True, help="the UTRN counter (32 bits, above the last one used)")
    utrn.set_defaults(handler=_utrn)

    audit = commands.add_parser("audit", help="audit log maintenance")
    audit_commands = audit.add_subparsers(dest="audit_command", required=True, metavar="SUBCOMMAND")
    audit_verify = audit_commands.add_parser("verify", help="check the audit log's hash chain")
    audit_verify.add_argument("dir", type=Path)
    audit_verify.add_argument("--store", default=None, help="store URL (default: from gateway.toml)")
    audit_verify.add_argument(
        "--anchor", action="append", default=[], metavar="SEQUENCE:HASH",
        help="a head printed by an earlier verify and kept elsewhere: it must still be in the log (repeatable)",
    )
    audit_verify.set_defaults(handler=_audit_verify)
    _add_entry_point_commands(commands)
    return parser


def _add_entry_point_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Commands that other packages of the distribution register (the reviewers' kit adds ``vectors``).

    Through the ``dcc_gateway.commands`` entry points, so that gateway never imports them: each
    names a function that adds its subparsers, with a ``handler`` default, to ``commands``.
    """
    for entry_point in sorted(entry_points(group=COMMAND_ENTRY_POINTS), key=lambda found: found.name):
        entry_point.load()(commands)


def _plot_file(text: str) -> Path:
    from gateway.demo_plot import plot_format

    path = Path(text)
    try:
        plot_format(path)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return path


def _timestamp(text: str) -> dt.datetime:
    when = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    if when.tzinfo is None:
        raise argparse.ArgumentTypeError("give a timezone, e.g. 2026-01-01T00:00:00Z")
    return when


# --- handlers -----------------------------------------------------------------


def _init(args: argparse.Namespace) -> int:
    from gateway.boxed import KeystoreError, init_boxed_world
    from gateway.clock import SystemClock
    from gateway.world import init_world

    try:
        if args.boxed is None:
            manifest = init_world(args.dir, devices=args.devices, seed=args.seed, force=args.force)
        else:
            manifest, report = init_boxed_world(
                args.dir, args.boxed, now=SystemClock().now(), devices=args.devices, seed=args.seed, force=args.force
            )
            print("\n".join(report.lines()))
    except KeystoreError as exc:
        print(f"dcc-gateway init: {exc}", file=sys.stderr)
        return 2
    except (FileExistsError, ValueError) as exc:
        print(f"dcc-gateway init: {exc}", file=sys.stderr)
        return 1
    print(f"world written to {args.dir} ({len(manifest.actors)} actors, {len(manifest.devices)} devices)")
    return 0


def _serve(args: argparse.Namespace) -> int:
    from gateway.server import serve

    try:
        return serve(args.dir, host=args.host, port=args.port, store_url=args.store, workers=args.workers)
    except (OSError, ValueError) as exc:
        print(f"dcc-gateway serve: {exc}", file=sys.stderr)
        return 2


def _sign(args: argparse.Namespace) -> int:
    from gateway.signing import SigningKey, sign_bytes

    try:
        key = SigningKey.load(args.key, args.cert)
        data = args.input.read_bytes() if args.input else sys.stdin.buffer.read()
        signed = sign_bytes(data, key)
    except (OSError, ValueError, VerificationError) as exc:
        print(f"dcc-gateway sign: {exc}", file=sys.stderr)
        return 1
    if args.output:
        args.output.write_bytes(signed)
    else:
        sys.stdout.buffer.write(signed)
    return 0


def _verify(args: argparse.Namespace) -> int:
    from gateway.runtime import open_world

    clock: Clock | None = FixedClock(args.at) if args.at else None
    try:
        verifier = open_world(args.dir).verifier(clock)
        data = args.file.read_bytes()
    except (OSError, ValueError) as exc:
        print(f"dcc-gateway verify: {exc}", file=sys.stderr)
        return 2
    try:
        verified = verifier.verify(data)
    except VerificationError as exc:
        _print_verdict(args.json, valid=False, check=exc.check_id, detail=exc.detail, signer=None)
        return 1
    signer = verified.signer
    detail = f"{type(verified).__name__} signed by {signer.describe()}"
    _print_verdict(args.json, valid=True, check="ok", detail=detail, signer=str(signer.eui64))
    return 0


def _print_verdict(as_json: bool, *, valid: bool, check: str, detail: str, signer: str | None) -> None:
    if as_json:
        print(json.dumps({"valid": valid, "check": check, "detail": detail, "signer": signer}))
    elif valid:
        print(f"valid: {detail}")
    else:
        print(f"invalid ({check}): {detail}")


def _smki_import(args: argparse.Namespace) -> int:
    from gateway.smki.repository import RepositoryError, SmkiRepository

    try:
        repository = SmkiRepository.load_world(args.dir)
        report = repository.import_files(args.dir, args.files)
    except (OSError, RepositoryError) as exc:
        print(f"dcc-gateway smki import: {exc}", file=sys.stderr)
        return 1
    for certificate in report.certificates:
        print(f"imported {certificate.describe()}")
    for reason in report.skipped:
        print(f"skipped: {reason}", file=sys.stderr)
    print(f"{len(report.certificates)} certificates imported, {len(report.skipped)} skipped")
    return 0


def _admin(args: argparse.Namespace) -> int:
    from gateway.admin import run
    from gateway.clock import SystemClock
    from gateway.policy.directives import DirectiveError

    try:
        return run(args, SystemClock().now())
    except (OSError, ValueError, KeyError, DirectiveError) as exc:
        print(f"dcc-gateway admin: {exc}", file=sys.stderr)
        return 2


def _demo(args: argparse.Namespace) -> int:
    from gateway.demo import main as run_demo

    story = run_demo(args.dir, plot=args.plot)
    return 0 if all(supply == "Enabled" for supply in story.with_role.values()) else 1


def _utrn(args: argparse.Namespace) -> int:
    """Prints the UTRN and the RequestID counter of the SR 2.2 that carries it."""
    from gateway.devices.credentials import vend_for_meter
    from gateway.devices.utrn import ValueClass
    from gateway.manifest import load_manifest

    try:
        utrn, counter = vend_for_meter(
            load_manifest(args.dir), args.actor, args.device, args.value,
            ValueClass.POUNDS if args.pounds else ValueClass.PENCE, args.counter,
        )  # fmt: skip
    except (OSError, ValueError, KeyError) as exc:
        print(f"dcc-gateway utrn: {exc}", file=sys.stderr)
        return 2
    print(json.dumps({"utrn": utrn, "request_counter": counter}))
    return 0


def _audit_verify(args: argparse.Namespace) -> int:
    import asyncio

    from gateway.store.audit import ChainAnchor
    from gateway.store.factory import verify_audit

    try:
        anchors = [ChainAnchor.parse(text) for text in args.anchor]
        report = asyncio.run(verify_audit(args.dir, args.store, anchors))
    except (OSError, ValueError) as exc:
        print(f"dcc-gateway audit verify: {exc}", file=sys.stderr)
        return 2
    if report.ok:
        print(f"audit chain intact: {report.records} records")
        if report.head is not None:
            print(f"head {report.head} (keep it elsewhere; --anchor {report.head} later also catches a cut tail)")
        return 0
    print(f"audit chain broken at record {report.first_broken}: {report.reason}")
    return 1


if __name__ == "__main__":
    sys.exit(main())
