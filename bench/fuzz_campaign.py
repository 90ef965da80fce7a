"""A long fuzzing campaign over the hardened parser and the verifier (not part of the test suite).

    # coverage-guided, if atheris installs (PyPI wheels for CPython 3.11 on Linux x86-64):
    .venv/bin/pip install atheris
    .venv/bin/python bench/fuzz_campaign.py --engine atheris -- -max_total_time=3600 -jobs=4 CORPUS_DIR

    # otherwise, or for a reproducible run: hypothesis with many examples
    .venv/bin/python bench/fuzz_campaign.py --engine hypothesis --examples 200000

    # just write the seed corpus (every catalogue vector's bytes) for another fuzzer
    .venv/bin/python bench/fuzz_campaign.py --write-corpus CORPUS_DIR

``--engine auto`` (the default) uses atheris when importable. Seeds are the
vectors of the reviewers' kit (:data:`vectors.VECTORS`: attacks and must-accept requests),
built with the tests' deterministic CA, verified at the catalogue's "now"
against a repository holding every extra certificate the catalogue issues.

What counts as a finding (the target raises, so atheris/hypothesis report it
with the input):

1. ``gateway.parse.HardenedParser.parse`` or ``Verifier.verify`` raising
   anything but :class:`gateway.checks.VerificationError` (the gateway would
   answer 500 ``internal-error``);
2. an accepted document whose verified values (originator, target, counter,
   command variant, SRV, payment mode) are not exactly one set of values
   that a must-accept vector signed: mutation cannot make a signature, so a
   new accepted value set is a signature-wrapping or canonicalisation bug;
3. an accepted document whose signer's EUI-64 is not its originator.

Past findings: ``lxml.etree.C14NError`` from a relative namespace URI (a
500 until the verifier answered it with check ``namespace-uri``; kept as
tests/test_fuzz_ingress.py::test_relative_namespace_uri_is_refused_not_a_crash).

Crashing inputs land in atheris' ``crash-*`` files; hypothesis prints the
falsifying example (and keeps it in ``.hypothesis/``). Reproduce one with
``dcc-gateway verify FILE --dir WORLD`` after re-signing for a world, or
directly via :func:`check_one`.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gateway.checks import VerificationError
from gateway.clock import FixedClock
from gateway.parse import HardenedParser
from gateway.schema import load_schemas
from gateway.verify.documents import VerifiedRequest
from gateway.verify.verifier import Verifier
from tests import factories
from vectors import VECTORS, baseline_repository, build_context


class Finding(AssertionError):
    """An input the gateway mishandles."""


def _setup() -> tuple[HardenedParser, Verifier, list[bytes], set[tuple[object, ...]]]:
    ca = factories.make_ca()
    signer = factories.issue_xml_sign(ca, factories.SUPPLIER)
    context = build_context(
        ca, now=factories.NOW, signer=signer, originator=factories.SUPPLIER, target=factories.DEVICE,
        other_user=factories.OTHER_USER,
    )
    repository = baseline_repository(context)
    for issued in context.certificates.values():
        try:
            repository.add_certificate(issued.certificate)
        except ValueError:
            pass
    verifier = Verifier(repository, FixedClock(context.now), schemas=load_schemas(), limits=context.limits)
    seeds, signed = [], set()
    for vector in VECTORS:
        try:
            seeds.append(vector.build(context))
        except Exception:  # noqa: BLE001,S112  (a seed is a convenience, not a requirement)
            continue
        if vector.expect_check is None:
            f = vector.expected_fields(context)
            signed.add((f.originator, f.target, f.counter, f.command_variant, f.service_reference_variant, f.payment_mode))
    return HardenedParser(context.limits), verifier, seeds, signed


PARSER, VERIFIER, SEEDS, SIGNED_VALUES = _setup()


def check_one(data: bytes) -> None:
    """The fuzz target: raises :class:`Finding` (or the unexpected exception) on a bug."""
    try:
        PARSER.parse(data)
    except VerificationError:
        pass
    try:
        verified = VERIFIER.verify(data)
    except VerificationError:
        return
    if not isinstance(verified, VerifiedRequest):
        return
    modes = [child.tag.rsplit("}", 1)[-1] for child in verified.body]
    values = (
        verified.originator,
        verified.target,
        verified.request_id.counter,
        verified.command_variant,
        verified.service_reference_variant,
        modes[0] if len(modes) == 1 else tuple(modes),
    )
    if values not in SIGNED_VALUES:
        raise Finding(f"accepted values nobody signed: {values!r}")
    if verified.signer.eui64 != verified.originator:
        raise Finding(f"signer {verified.signer.eui64} is not the originator {verified.originator}")


def run_atheris(argv: list[str]) -> None:
    import atheris  # type: ignore[import-not-found]

    def target(data: bytes) -> None:
        check_one(data)

    corpus = [a for a in argv if not a.startswith("-")]
    if corpus:
        write_corpus(Path(corpus[0]))
    atheris.Setup([sys.argv[0], *argv], target)
    atheris.Fuzz()


def run_hypothesis(examples: int) -> None:
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    @st.composite
    def mutated(draw: st.DrawFn) -> bytes:
        data = bytearray(draw(st.sampled_from(SEEDS)))
        for _ in range(draw(st.integers(1, 8))):
            at = draw(st.integers(0, max(len(data) - 1, 0)))
            kind = draw(st.integers(0, 5))
            if kind == 0 and data:
                data[at] ^= 1 << draw(st.integers(0, 7))
            elif kind == 1:
                del data[at : at + draw(st.integers(1, 128))]
            elif kind == 2:
                data[at:at] = draw(st.binary(min_size=1, max_size=64))
            elif kind == 3:
                data[at:at] = data[draw(st.integers(0, max(len(data) - 1, 0))) :][: draw(st.integers(1, 512))]
            elif kind == 4:
                other = draw(st.sampled_from(SEEDS))
                cut = draw(st.integers(0, len(other)))
                data[at:] = other[cut:]
            else:
                data[at:at] = draw(st.sampled_from((b"<!--x-->", b"&#13;", b" ", b"\n", b"ds:", b'xmlns="urn:x" ')))
        return bytes(data)

    @settings(max_examples=examples, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(st.one_of(mutated(), st.binary(max_size=8192)))
    def campaign(data: bytes) -> None:
        check_one(data)

    started = time.monotonic()
    campaign()
    print(f"hypothesis: {examples} examples, no finding, {time.monotonic() - started:.1f} s")


def write_corpus(directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for index, seed in enumerate(SEEDS):
        (directory / f"seed-{index:03d}.xml").write_bytes(seed)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--engine", choices=("auto", "atheris", "hypothesis"), default="auto")
    parser.add_argument("--examples", type=int, default=100_000, help="hypothesis examples (default 100000)")
    parser.add_argument("--write-corpus", type=Path, default=None, help="write the seed corpus and exit")
    parser.add_argument("rest", nargs=argparse.REMAINDER, help="after --: arguments for libFuzzer (atheris)")
    args = parser.parse_args()
    for seed in SEEDS:  # the seeds themselves must pass the oracle
        check_one(seed)
    if args.write_corpus:
        write_corpus(args.write_corpus)
        print(f"{len(SEEDS)} seeds written to {args.write_corpus}")
        return 0
    engine = args.engine
    if engine == "auto":
        try:
            import atheris  # type: ignore[import-not-found]  # noqa: F401

            engine = "atheris"
        except ImportError:
            engine = "hypothesis"
    rest = [a for a in args.rest if a != "--"]
    if engine == "atheris":
        run_atheris(rest)
    else:
        run_hypothesis(args.examples)
    return 0


if __name__ == "__main__":
    sys.exit(main())
