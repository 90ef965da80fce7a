"""The signature-level catalogue: every vector, in category order, with unique ids.

Each :class:`Vector` is a builder of request bytes with provenance and the
verdict the gateway must reach (:mod:`vectors.catalogue.model`); builders take
a :class:`VectorContext` made from a test SMKI CA by :func:`build_context`, and
every vector starts from :func:`baseline_repository`. The categories' modules:
``parse``, ``document`` (document, wrapping, content), ``profile`` (profile,
malleability), ``certificate``, ``positive``; ``tooling`` and ``base`` build and
break signed requests.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from vectors.catalogue.certificate import CERTIFICATE_VECTORS
from vectors.catalogue.context import baseline_repository, build_context
from vectors.catalogue.document import CONTENT_VECTORS, DOCUMENT_VECTORS, WRAPPING_VECTORS
from vectors.catalogue.model import CATEGORIES, Vector, VectorContext
from vectors.catalogue.parse import PARSE_VECTORS
from vectors.catalogue.positive import POSITIVE_VECTORS
from vectors.catalogue.profile import MALLEABILITY_VECTORS, PROFILE_VECTORS

__all__ = ["CATEGORIES", "VECTORS", "Vector", "VectorContext", "baseline_repository", "build_context", "vectors_by_id"]

VECTORS: tuple[Vector, ...] = (
    *PARSE_VECTORS,
    *DOCUMENT_VECTORS,
    *WRAPPING_VECTORS,
    *CONTENT_VECTORS,
    *PROFILE_VECTORS,
    *MALLEABILITY_VECTORS,
    *CERTIFICATE_VECTORS,
    *POSITIVE_VECTORS,
)


def vectors_by_id() -> Mapping[str, Vector]:
    """The catalogue by id; raises ValueError if two vectors share an id."""
    by_id: dict[str, Vector] = {}
    for vector in VECTORS:
        if vector.id in by_id:
            raise ValueError(f"duplicate vector id {vector.id!r}")
        by_id[vector.id] = vector
    return MappingProxyType(by_id)
