"""Fixtures shared by tests/firmware; the TLS endpoint's PKI lives in ``tls_fixtures``."""

from tests.firmware.tls_fixtures import card_pki

__all__ = ["card_pki"]
