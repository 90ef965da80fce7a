"""Opens a world directory: configuration, manifest, SMKI repository, schemas.

The CLI and the service both build their verifier here, so ``dcc-gateway
verify`` runs exactly the checks the gateway runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from gateway.clock import Clock, SystemClock
from gateway.config import GatewayConfig, load_config
from gateway.gbcs.readdress import VectorAnswers
from gateway.gbcs.rtds import CatalogueError, RtdsCatalogue
from gateway.manifest import Manifest, load_manifest
from gateway.parse import Limits
from gateway.policy.authorise import PolicyConfig
from gateway.policy.eligibility import Eligibility
from gateway.schema import DocumentSchemas, load_schemas
from gateway.smki.repository import SmkiRepository
from gateway.verify.verifier import RevocationDelay, Verifier


@dataclass(frozen=True)
class World:
    directory: Path
    config: GatewayConfig
    manifest: Manifest
    repository: SmkiRepository
    schemas: DocumentSchemas
    official_xsd: Path | None = None
    vectors: VectorAnswers | None = None
    """The RTDS vectors the devices answer from (``[simulation] gbcs_vectors``); None: not configured."""

    def limits(self) -> Limits:
        limits = self.config.limits
        return Limits(
            max_body_bytes=limits.max_body_bytes,
            max_depth=limits.max_depth,
            max_elements=limits.max_elements,
            max_attributes_per_element=limits.max_attributes_per_element,
            max_namespace_declarations=limits.max_namespace_declarations,
        )

    def policy_config(self, eligibility: Eligibility | None = None) -> PolicyConfig:
        """The policy settings of gateway.toml; the eligibility matrix is loaded unless given."""
        policy = self.config.policy
        if eligibility is None:
            if policy.eligibility_matrix is None:
                raise SystemExit(
                    "dcc-gateway: no SRV eligibility matrix configured ([policy] eligibility_matrix in "
                    "gateway.toml); point it at shared/duis/srv-eligibility-matrix.json"
                )
            eligibility = Eligibility.load(Path(policy.eligibility_matrix), policy.sc_allowed_srvs)
            if self.vectors is not None:
                eligibility = eligibility.with_device_types(self.vectors.catalogue.device_types_by_srv())
        return PolicyConfig(
            eligibility=eligibility,
            contingency_max_days=policy.contingency_max_days,
            adt_default_window_seconds=self.config.adt.default_window_seconds,
            adt_default_thresholds=dict(self.config.adt.default_thresholds),
        )

    def verifier(
        self, clock: Clock | None = None, revocation_delay: RevocationDelay | None = None, *, own_schemas: bool = False
    ) -> Verifier:
        """``own_schemas``: compile a private copy (lxml schemas keep their error log: one per thread)."""
        return Verifier(
            self.repository,
            clock or SystemClock(),
            schemas=load_schemas(self.official_xsd) if own_schemas else self.schemas,
            limits=self.limits(),
            dsp_user_id=self.manifest.gateway.dsp_user_id,
            revocation_delay=revocation_delay,
        )


def open_world(directory: Path) -> World:
    """Loads everything a verifier needs from a world directory written by ``dcc-gateway init``."""
    config = load_config(directory / "gateway.toml")
    official = Path(config.schema.duis_xsd) if config.schema.duis_xsd else None
    if official is not None and not official.is_file():
        # A configured check must not vanish quietly because of a typo or a moved world.
        raise ValueError(f'[schema] duis_xsd names {official}, which does not exist: fix the path or set it to ""')
    vectors = config.simulation.gbcs_vectors
    try:
        answers = None if vectors is None else VectorAnswers(RtdsCatalogue.load(Path(vectors)))
    except CatalogueError as exc:
        raise ValueError(f'[simulation] gbcs_vectors: {exc}: fix the path or set it to ""') from exc
    return World(
        directory=directory,
        config=config,
        manifest=load_manifest(directory),
        repository=SmkiRepository.load_world(directory),
        schemas=load_schemas(official),
        official_xsd=official,
        vectors=answers,
    )
