"""``GET /console``: the simulated world live in a browser, read-only.

``routes``      the routes, the loopback gate, where each view reads from
``fleet``       every device, its meter now, when it would lose supply, its sparkline
``solr_event``  each supplier failure as its state machine: directives in force, what comes next
``traffic``     recent exchanges and deliveries, ADT windows and quarantine, the audit head
``static/``     the page: one HTML file, one script, one style sheet (no build step, no framework)
"""

from __future__ import annotations

from gateway.console.routes import add_console_routes

__all__ = ["add_console_routes"]
