"""``racs-server`` in a subprocess, serving the vpcd reader of pcscd, logging every APDU."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from elock_common import pki
from elock_demo import setup
from elock_testkit.cardproc import env
from elock_testkit.pcsc import READER


class RacsProcess:
    def __init__(self, paths: pki.PkiPaths, directory: Path, seid: str) -> None:
        config = setup.racs_config(directory, paths.directory, seid, READER, port=0)
        self.log = directory / "apdus.log"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "racs.cli", "--config", str(config), "--log-apdus",
             str(self.log), "--ready-line", "ready {port}"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env(),
        )  # fmt: skip
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        assert line.startswith("ready "), line
        self.port = int(line.split()[1])

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
