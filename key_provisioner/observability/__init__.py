"""The key server seen from outside: Prometheus metrics, health checks, request ids.

``install(app)`` is the one call ``create_app`` makes; the worker calls the
hooks in :mod:`.metrics` where events happen. See docs/operations.md
("Monitoring") for what each metric means and which alerts use it.
"""

from key_provisioner.observability.http import install

__all__ = ["install"]
