"""The key server seen from outside: Prometheus metrics, health checks, request ids.

``install(app)`` is the one call ``create_app`` makes; the worker calls the
hooks in :mod:`.metrics` where events happen. See docs/operations.md
("Monitoring") for what each metric means and which alerts use it.
"""

from key_provisioner.observability.collector import FLEET, PER_LOCK
from key_provisioner.observability.http import install
from key_provisioner.observability.metrics import metric_names as _own_names


def metric_names() -> set[str]:
    """Every metric the key server exports: its own and the fleet gauges."""
    return _own_names() | set(FLEET) | set(PER_LOCK)


__all__ = ["install", "metric_names"]
