"""The card's DTLS 1.2 PSK client (RFC 6347, RFC 7925 profile): records, messages, flights.

Sans-I/O, like the rest of the applet: bytes and an explicit clock in, bytes and timers out.
"""
