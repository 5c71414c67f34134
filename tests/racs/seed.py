"""The seed's example RACS request block ("RACS Commands" slide) and the answer eLock gives it.

RESET carries no APPEND, so the APDU's line replaces its line (docs/racs.md).
"""

SEED_REQUEST = (
    "BEGIN MyLabel\n"
    "GET-VERSION APPEND\n"
    "LIST APPEND\n"
    "POWERON MySEID APPEND\n"
    "RESET MySEID\n"
    "APDU MySEID\n"
    "00A40400074A544553543030\n"
    "END\n"
)
SEED_ANSWER = [
    "BEGIN MyLabel",
    "+002 001 0.2",
    "+004 002 MySEID OtherSEID",
    "+008 003 MySEID is powered on",
    "+006 005 9000",
    "END",
]
