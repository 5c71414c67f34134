"""Errors of the lock: each says what an installer has to fix."""


class LockError(Exception):
    """Base of everything the lock raises on purpose."""


class LockConfigError(LockError):
    """The config file is missing, malformed, or asks for something impossible."""


class RelayError(LockError):
    """The relay backend could not be driven."""
