"""The containers in the store: one cell per container, ``c.<id>``.

Installs are idempotent because the key server retries: putting the same key
(same identity and URI) again updates that container in place and returns its
id, and an unchanged container costs no write at all. Each put or delete is
one store transaction, so a power cut leaves the old container or the new one.
"""

from __future__ import annotations

from elock_common.container import MAX_CONTAINERS, KeyContainer
from firmware.errors import NotEnoughMemoryError, NotFoundError
from firmware.store import Store

PREFIX = "c."


class Keyring:
    def __init__(self, store: Store) -> None:
        self.store = store

    def all(self) -> list[KeyContainer]:
        found = [self._load(name) for name in self.store.names(PREFIX)]
        return sorted(found, key=lambda k: k.container_id)

    def get(self, container_id: int) -> KeyContainer:
        raw = self.store.get(_cell(container_id)) if 0 < container_id <= MAX_CONTAINERS else None
        if raw is None:
            raise NotFoundError(f"no container {container_id}")
        return KeyContainer.from_tlv(raw)

    def put(self, container: KeyContainer) -> int:
        """Store *container*; id 0 means "the same key's id, or the lowest free one"."""
        existing = self.all()
        target = container.container_id
        if target == 0:
            same = [k.container_id for k in existing if k.same_key(container)]
            used = {k.container_id for k in existing}
            free = [i for i in range(1, MAX_CONTAINERS + 1) if i not in used]
            if same:
                target = same[0]
            elif free:
                target = free[0]
            else:
                raise NotEnoughMemoryError(f"all {MAX_CONTAINERS} containers are in use")
        encoded = container.with_id(target).to_tlv()
        # The same key under another id moves here, so a key is never held twice.
        stale = [
            k.container_id for k in existing if k.same_key(container) and k.container_id != target
        ]
        if self.store.get(_cell(target)) != encoded or stale:
            with self.store.transaction() as tx:
                for other in stale:
                    tx.delete(_cell(other))
                tx.put(_cell(target), encoded)
        return target

    def delete(self, container_id: int) -> None:
        self.get(container_id)  # 6A82 when absent
        with self.store.transaction() as tx:
            tx.delete(_cell(container_id))

    def _load(self, name: str) -> KeyContainer:
        raw = self.store.get(name)
        assert raw is not None
        return KeyContainer.from_tlv(raw)


def _cell(container_id: int) -> str:
    return f"{PREFIX}{container_id}"
