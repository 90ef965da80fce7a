"""How the console's JSON writes what it shows: instants, and users by their manifest names."""

from __future__ import annotations

import datetime as dt

from gateway.eui64 import Eui64
from gateway.manifest import Manifest


def iso(moment: dt.datetime) -> str:
    """UTC, ISO 8601 with a ``Z`` (the form directives and ``gateway.toml`` take)."""
    return moment.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def actor_name(manifest: Manifest, user_id: Eui64 | str) -> str:
    """The manifest's name for a User ID; the ID itself for one a directive registered (or not an EUI-64)."""
    try:
        return manifest.actor_by_user_id(user_id if isinstance(user_id, Eui64) else Eui64.parse(user_id)).name
    except (KeyError, ValueError):
        return str(user_id)
