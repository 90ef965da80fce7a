"""The security reviewers' kit: signature and policy test vectors, generated for a world and run against an endpoint.

It depends on ``gateway`` and ``pki``; neither imports it (nothing in the
request path does). The public API, which ``dcc-gateway vectors`` and the
tests use:

* :func:`generate_suite` writes a suite for a world directory
  (``OUT/<id>.xml`` + ``OUT/<id>.json``), signed with the world's own keys;
* :func:`run_suite` sends a suite to a DUIS endpoint and returns a
  :class:`RunReport` (counts by class, every miss and why it matters; text,
  JSON, JUnit), judged under a :class:`Profile` (``ours``, ``strict-duis``);
* :func:`judge` judges one :class:`Answer` against one :class:`Expectation`.

The catalogue itself (:data:`VECTORS`, :func:`build_context`,
:func:`baseline_repository`) is there for in-process use: the test-suite runs
every vector against the verifier, and ``bench/fuzz_campaign.py`` seeds from it.
"""

from vectors.catalogue import VECTORS, Vector, VectorContext, baseline_repository, build_context, vectors_by_id
from vectors.expect import Profile, Verdict
from vectors.generate import GenerateReport, generate_suite
from vectors.judge import Answer, Expectation, Judgement, Miss, judge
from vectors.report import Outcome, RunReport
from vectors.run import run_suite
from vectors.suite import SuiteError

__all__ = [
    "VECTORS",
    "Answer",
    "Expectation",
    "GenerateReport",
    "Judgement",
    "Miss",
    "Outcome",
    "Profile",
    "RunReport",
    "SuiteError",
    "Vector",
    "VectorContext",
    "Verdict",
    "baseline_repository",
    "build_context",
    "generate_suite",
    "judge",
    "run_suite",
    "vectors_by_id",
]
