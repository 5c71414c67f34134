"""Fixtures of the host-sync tests: processes stopped on every exit path, a PKI, a key server."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import pytest

from elock_common import pki
from elock_testkit.liveserver import env
from elock_testkit.ports import free_tcp_port
from tests.netns import stop_group
from tests.sync.stack import KeyServer, Place, start_keyserver

HERE = Place([])


class Procs:
    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []

    def spawn(self, place: Place, args: list[str], log: IO[bytes]) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(place.args(args), stdout=log, stderr=subprocess.STDOUT,
                                env=env(), start_new_session=True)  # fmt: skip
        self.procs.append(proc)
        return proc

    def __enter__(self) -> Procs:
        return self

    def __exit__(self, *exc: object) -> None:
        """Every process spawned, with its group, on every exit path."""
        for proc in self.procs:
            stop_group(proc)


@pytest.fixture
def procs() -> Iterator[Procs]:
    with Procs() as p:
        yield p


@pytest.fixture
def paths(tmp_path: Path) -> pki.PkiPaths:
    return pki.init_pki(tmp_path / "pki")


@pytest.fixture
def api(procs: Procs, paths: pki.PkiPaths, tmp_path: Path) -> KeyServer:
    return start_keyserver(procs.spawn, HERE, tmp_path / "ks", paths, listen="127.0.0.1",
                           port=free_tcp_port())  # fmt: skip
