"""``aikit dashboard``: a small local web app over the span store and the run records.

Recent runs (cells, scripts, agents, workflows, missions) with status, duration, tokens and cost,
errors first; a run's trace as a waterfall (:mod:`aikit_components.telemetry.waterfall`); live
updates over server-sent events. Modules: ``access`` (loopback, Host and token checks), ``runs``
(what the list shows), ``feed`` (polling the store for changes), ``server`` (HTTP), ``static/``
(the page).
"""

from .access import AccessError, AccessPolicy, is_loopback, new_token
from .server import DashboardServer, serve_in_thread

__all__ = ["AccessError", "AccessPolicy", "DashboardServer", "is_loopback", "new_token", "serve_in_thread"]
