"""The HTTP API's routes, one router per resource; :func:`optiq_engine.service.api.create_app` includes
:data:`ROUTERS` in this order (the order in which requests are matched and OpenAPI lists the paths)."""

from __future__ import annotations

from . import alert_rules, alerts, health, metrics

__all__ = ["ROUTERS"]

ROUTERS = (health.router, metrics.router, alerts.router, alert_rules.router)
