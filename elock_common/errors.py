"""Errors of the shared formats.

Each carries a reason a person can act on and never the secret it was given.
"""


class FormatError(ValueError):
    """Input in one of the shared formats is malformed."""


class IdentityFormatError(FormatError):
    """A key identity does not parse or breaks the format's rules."""


class LockSecretError(FormatError):
    """A lock secret is not 32 bytes of base64url."""


class TlvFormatError(FormatError):
    """A TLV data field is malformed (the applet answers 6A80)."""


class ContainerFormatError(FormatError):
    """A KeyContainer field breaks the format's rules (the applet answers 6A80)."""
