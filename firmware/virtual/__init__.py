"""What only emulates a card: the card file, the vpcd card side, the host-side tools.

A port of the applet to a real card takes ``firmware/`` without this package; nothing in
the applet imports it (``tests/test_boundaries.py`` checks).
"""

from firmware.virtual.cardfile import CardFileError
from firmware.virtual.virtual_card import InProcessCard

__all__ = ["CardFileError", "InProcessCard"]
