"""The stateful vectors: the SoLR story as one ordered run against a live gateway.

:func:`build_policy_vectors` tells the story (:mod:`vectors.scenario.story`) for
the actors and meters of a world (:class:`ScenarioWorld`), as steps
(:class:`StatefulVector`) whose counters come from one :class:`CounterSource`;
:func:`plan_errors` checks independently that a run order can meet every
expected I99/I0/E40.
"""

from vectors.scenario.replay_plan import CounterSource, PlannedRequest, plan_errors, read_planned
from vectors.scenario.steps import (
    ACCEPTED,
    ADMIN,
    COUNTER_START,
    DIRECTIVE,
    ENABLEMENT_DAYS,
    POLICY,
    POLICY_CATEGORIES,
    REPLAY,
    SERVICE_D,
    SERVICE_S,
    SERVICE_T,
    StatefulVector,
)
from vectors.scenario.story import build_policy_vectors
from vectors.scenario.world import SRP_ARO, SRP_SC, ScenarioUnavailable, ScenarioWorld

__all__ = [
    "ACCEPTED",
    "ADMIN",
    "COUNTER_START",
    "DIRECTIVE",
    "ENABLEMENT_DAYS",
    "POLICY",
    "POLICY_CATEGORIES",
    "REPLAY",
    "SERVICE_D",
    "SERVICE_S",
    "SERVICE_T",
    "SRP_ARO",
    "SRP_SC",
    "CounterSource",
    "PlannedRequest",
    "ScenarioUnavailable",
    "ScenarioWorld",
    "StatefulVector",
    "build_policy_vectors",
    "plan_errors",
    "read_planned",
]
