"""``elock pki init``: the files it promises, and it never overwrites a PKI unasked."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography import x509

from elock_common import pki
from elock_demo.cli import main


def test_init_makes_every_file_and_refuses_to_overwrite(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["pki", "init", "--dir", str(tmp_path), "--racs-user", "alice",
                 "--racs-host", "racs.example", "--racs-host", "10.0.0.7"]) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert "racs-user-alice.pem" in out and "racs-user-keyserver.pem" in out
    names = sorted(p.name for p in tmp_path.iterdir())
    assert len(names) == 14 and all((tmp_path / n).stat().st_mode & 0o777 == 0o600
                                    for n in names if n.endswith(".key"))  # fmt: skip
    server = pki.load_certificate(tmp_path / "racs-server.pem")
    san = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["racs.example"]
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["10.0.0.7"]
    before = (tmp_path / "key-server-ca.key").read_bytes()

    assert main(["pki", "init", "--dir", str(tmp_path)]) == 1
    assert "--force" in capsys.readouterr().err
    assert (tmp_path / "key-server-ca.key").read_bytes() == before

    assert main(["pki", "init", "--dir", str(tmp_path), "--force"]) == 0
    assert (tmp_path / "key-server-ca.key").read_bytes() != before
