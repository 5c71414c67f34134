"""``racs-server`` in a subprocess, serving the vpcd reader of pcscd, logging every APDU."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from elock_common import pki
from elock_demo import setup
from elock_testkit.cardproc import env
from elock_testkit.pcsc import READER
from elock_testkit.procs import terminate


class RacsProcess:
    """``metrics_port``: its opt-in Prometheus listener on that port (off by default)."""

    def __init__(
        self, paths: pki.PkiPaths, directory: Path, seid: str, *, metrics_port: int | None = None
    ) -> None:
        config = setup.racs_config(directory, paths.directory, seid, READER, port=0)
        if metrics_port is not None:
            with config.open("a") as f:
                f.write(f"\n[metrics]\nenabled = true\nport = {metrics_port}\n")
        self.log = directory / "apdus.log"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "racs.cli", "--config", str(config), "--log-apdus",
             str(self.log), "--ready-line", "ready {port}"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env(),
        )  # fmt: skip
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line.startswith("ready "):
            self.stop()
            raise AssertionError(f"racs-server did not start: {line!r}")
        self.port = int(line.split()[1])

    def stop(self) -> None:
        try:
            terminate(self.proc)
        finally:
            if self.proc.stdout is not None:
                self.proc.stdout.close()
