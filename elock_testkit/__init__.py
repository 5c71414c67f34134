"""What the tests and the benchmarks share: real processes (lock, key server, RACS, pcscd and a
virtual card, PostgreSQL), a lossy UDP relay, waiting on events, free ports.

Not shipped in the wheel: it exists for ``tests/`` and ``bench/``, which both run from the
repository. A peer that is missing raises ``MissingPeerError``; under pytest that fails the
test (never skips it).
"""
