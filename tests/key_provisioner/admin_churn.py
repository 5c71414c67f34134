"""Visits to a real lock that time out, are cancelled, or use a wrong secret, many times over.

Run in a subprocess by ``test_lock_admin_churn.py``: what it guards against is
a native abort (tinydtls double free), which would take pytest down with it.
Usage: ``python -m tests.key_provisioner.admin_churn PORT SECRET_FILE ROUNDS``.
"""

from __future__ import annotations

import asyncio
import random
import sys
from pathlib import Path

from elock_common import LockSecret
from key_provisioner.lock_admin import AdminSession, LockAdminError

DEAD_PORT = 9  # discard: nothing answers CoAP there


async def visit(port: int, secret: LockSecret) -> None:
    async with AdminSession("127.0.0.1", port, secret, timeout=0.3) as lock:
        await lock.push_revocations(1, [])
        await lock.audit(0)


async def churn(port: int, secret: LockSecret, rounds: int) -> None:
    rng = random.Random(7)
    for _ in range(rounds):
        tasks = [
            asyncio.create_task(
                visit(
                    rng.choice([port, port, DEAD_PORT]),
                    LockSecret.generate() if rng.random() < 0.3 else secret,
                )
            )
            for _ in range(3)
        ]
        await asyncio.sleep(rng.uniform(0, 0.05))
        if rng.random() < 0.5:
            for task in tasks:
                task.cancel()
        for task in tasks:
            try:
                await task
            except (asyncio.CancelledError, LockAdminError):
                pass
    print("churn done", flush=True)


if __name__ == "__main__":
    port, secret_file, rounds = int(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
    asyncio.run(churn(port, LockSecret.from_text(secret_file.read_text().strip()), rounds))
