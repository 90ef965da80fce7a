"""The catalogue: every vector, in category order, with unique ids."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from gateway.vectors.certificate_vectors import CERTIFICATE_VECTORS
from gateway.vectors.document_vectors import CONTENT_VECTORS, DOCUMENT_VECTORS, WRAPPING_VECTORS
from gateway.vectors.parse_vectors import PARSE_VECTORS
from gateway.vectors.positive_vectors import POSITIVE_VECTORS
from gateway.vectors.profile_vectors import MALLEABILITY_VECTORS, PROFILE_VECTORS
from gateway.vectors.signature_vectors import Vector

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
