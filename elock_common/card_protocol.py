"""The eLock applet's wire constants: AID, classes, instructions, tags.

The one list the applet, the key host and the key server share (a Java Card
port copies it); docs/apdu.md explains each value.
"""

from __future__ import annotations

AID = bytes.fromhex("A000000620454C4F434B01")


def _with_tck(atr: bytes) -> bytes:
    """Append TCK, the XOR of every byte after TS (ISO 7816-3 8.2.5)."""
    tck = 0
    for byte in atr[1:]:
        tck ^= byte
    return atr + bytes([tck])


# A T=1 ATR: TS, T0 (TD1 present, 5 historical bytes), TD1 (TD2 present,
# T=0), TD2 (T=1), the historical bytes "eLock", TCK.
ATR = _with_tck(bytes.fromhex("3B858001") + b"eLock")

CLA_ISO = 0x00
CLA_PROPRIETARY = 0x80
CLA_SEALED = 0x84  # proprietary class with the secure-messaging indication

INS_SELECT = 0xA4
INS_GET_RESPONSE = 0xC0
INS_VERIFY = 0x20
INS_GET_CHALLENGE = 0x84
INS_LIST = 0x30
INS_OPEN = 0x32
INS_DATAGRAMS = 0x34
INS_TIMER = 0x36
INS_CLOSE = 0x38
INS_TLS_RECORDS = 0xD8  # TLS#2 records (docs/tls-endpoint.md)
INS_GET_DATA = 0xCA
INS_KEY_SERVER = 0x3A  # the key server's URL, public (docs/apdu.md)
INS_PUT_CONTAINER = 0xE2
INS_DELETE_CONTAINER = 0xE4
INS_SET_PIN = 0xE8

P1_SELECT_BY_NAME = 0x04
P2_PIN_CARD = 0x81  # VERIFY reference: the card-level PIN
P1_VERIFY_RESET = 0xFF  # VERIFY with P1 FF: drop the verified state

# KeyContainer fields (also the LIST entries, which never carry TAG_PSK).
TAG_ID = 0x80
TAG_LABEL = 0x81
TAG_URI = 0x82
TAG_IDENTITY = 0x83
TAG_PSK = 0x84
TAG_NOT_BEFORE = 0x85
TAG_NOT_AFTER = 0x86
TAG_FLAGS = 0x87
TAG_LIST_ENTRY = 0xE1

# SET PIN (sealed) fields.
TAG_PIN = 0x88
TAG_PIN_TRIES = 0x89

# OPEN / DATAGRAMS / TIMER exchange.
TAG_NOW = 0x90  # 8 bytes, Unix time in milliseconds, from the host
TAG_CONTAINER = 0x91  # 1 byte, container id (OPEN only)
TAG_DATAGRAM_IN = 0x92  # repeated: a datagram the host received
TAG_STATE = 0x93  # 1 byte, OpenState
TAG_DATAGRAM_OUT = 0x94  # repeated: a datagram for the host to send
TAG_TIMER = 0x95  # 4 bytes, milliseconds until the host should send TIMER
TAG_COAP_CODE = 0x96  # 1 byte, CoAP code class << 5 | detail
TAG_COAP_PAYLOAD = 0x97
TAG_REASON = 0x98  # ASCII, why an Open failed
TAG_ALERT = 0x99  # 1 byte, the DTLS alert description that ended the Open, if any
TAG_RETRANSMIT_MS = 0x9A  # 2 bytes (OPEN, optional): the first DTLS retransmission timeout, ms
TAG_PROGRESS = 0x9B  # 1 byte, every Open step: PROGRESS_*
TAG_FAILURE = 0x9C  # 1 byte, when failed: FAILURE_*

MAX_KEY_SERVER_URL = 200  # bytes of the URL KEY SERVER returns

MAX_COMMAND_DATA = 4096  # bytes of data in one command APDU (docs/apdu.md, Lengths)

# Limits of the Open exchange (docs/apdu.md, DATAGRAMS).
MAX_DATAGRAMS_IN = 8
MAX_DATAGRAM = 2048
_NOW_ITEM = 10  # TAG_NOW: tag, length, 8 bytes
_DATAGRAM_ITEM = 4  # the most a TAG_DATAGRAM_IN header takes (82 xxxx length)


def datagrams_in_one_exchange(datagrams: list[bytes]) -> int:
    """How many of ``datagrams``, from the first, one DATAGRAMS command can carry.

    At most ``MAX_DATAGRAMS_IN`` and ``MAX_COMMAND_DATA`` bytes in all: three
    datagrams of 1.5 kB do not fit, and the card would refuse the whole command
    (6700). Each datagram must be at most ``MAX_DATAGRAM`` bytes, so one always fits.
    """
    used, count = _NOW_ITEM, 0
    for datagram in datagrams[:MAX_DATAGRAMS_IN]:
        used += _DATAGRAM_ITEM + len(datagram)
        if used > MAX_COMMAND_DATA:
            break
        count += 1
    return count


STATE_RUNNING = 0x01
STATE_DONE = 0x02
STATE_FAILED = 0x03

# How far an Open got (TAG_PROGRESS): only a request that went out can have opened the door.
PROGRESS_NO_ANSWER = 0x00  # nothing from the lock yet
PROGRESS_ANSWERED = 0x01  # the lock answered a handshake flight
PROGRESS_REQUEST_SENT = 0x02  # the handshake finished and the request went out

# Why an Open failed (TAG_FAILURE).
FAILURE_TIMEOUT = 0x01  # no (further) answer within the card's retransmissions
FAILURE_PEER_ALERT = 0x02  # the lock ended the session with a fatal alert
FAILURE_PEER_ERROR = 0x03  # the lock broke the protocol; the card ended the session
FAILURE_RESET = 0x04  # the lock answered the request with a CoAP RST
FAILURE_CARD = 0x05  # the card gave up (exchange limit, internal error)
