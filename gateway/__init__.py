"""A simulated DCC access-control gateway for GB smart metering.

The request pipeline reads off the package tree:
``ingress`` (limits, hardened parse) -> ``verify`` (XML signature, SMKI
certificates) -> ``policy`` (roles, SoLR Contingency) -> ``store`` ->
``devices`` -> ``respond`` (signed DUIS responses).
"""

__version__ = "0.1.0"
