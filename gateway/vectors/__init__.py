"""Signature verification vectors: attacks and must-accept requests, as data.

Test-vector tooling only: nothing in the request path imports this package.
``VECTORS`` is the catalogue; :func:`build_context` makes what its builders
need from a test SMKI CA; :func:`baseline_repository` is the repository every
vector starts from (see :class:`Vector` for ``prepare`` and ``at``).
"""

from gateway.vectors.catalogue import VECTORS, vectors_by_id
from gateway.vectors.context import baseline_repository, build_context
from gateway.vectors.signature_vectors import CATEGORIES, Vector, VectorContext

__all__ = ["CATEGORIES", "VECTORS", "Vector", "VectorContext", "baseline_repository", "build_context", "vectors_by_id"]
