"""racs-server as a real subprocess, read by OpenSSL's s_client; and config errors."""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
from pathlib import Path

import pytest

from elock_testkit.racs_pki import Pki
from racs.backends import InProcessCard
from racs.cli import main
from racs.config import build_registry, load_config
from racs.errors import ConfigError
from tests.conftest import require_tool
from tests.racs.seed import SEED_ANSWER, SEED_REQUEST

REPO = Path(__file__).resolve().parents[2]


def write_config(directory: Path, pki: Pki, extra: str = "") -> Path:
    (directory / "users.txt").write_text(
        "// CN  count  SEIDs\nalice 2 MySEID OtherSEID\nbob 1 OtherSEID\n"
    )
    (directory / "seid").mkdir(exist_ok=True)
    (directory / "seid" / "MySEID.txt").write_text(
        "// AID or default  no=white list  count CNs\n4A544553543030 no 1 alice\ndefault no 0\n"
    )
    (directory / "filters.txt").write_text("deny FFFF 80E6   // no INSTALL for anyone\n")
    config = directory / "racs.toml"
    config.write_text(
        f"""
[server]
host = "127.0.0.1"
port = 0
cert = "{pki.server.cert}"
key = "{pki.server.key}"
client_ca = "{pki.ca}"
idle_timeout = 20

[access]
users = "users.txt"
seid_dir = "seid"
filters = "filters.txt"

[[se]]
seid = "MySEID"
applet = "elock_testkit.racs_applets:factory"

[[se]]
seid = "OtherSEID"
applet = "elock_testkit.racs_applets:factory"
{extra}
"""
    )
    return config


def server_command() -> list[str]:
    script = shutil.which("racs-server", path=str(Path(sys.executable).parent))
    return [script] if script else [sys.executable, "-m", "racs.cli"]


async def start_server(config: Path) -> tuple[asyncio.subprocess.Process, int]:
    proc = await asyncio.create_subprocess_exec(
        *server_command(), "--config", str(config), "--ready-line", "READY {port}",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )  # fmt: skip
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), 20)
    if not line.startswith(b"READY"):
        assert proc.stderr is not None
        pytest.fail(f"racs-server did not start: {line!r} {await proc.stderr.read()!r}")
    return proc, int(line.split()[1])


async def lines_until_end(stream: asyncio.StreamReader) -> list[str]:
    """What s_client printed, line by line, up to RACS's END (or its end of output)."""
    lines: list[str] = []
    while not lines or lines[-1] != "END":
        raw = await asyncio.wait_for(stream.readline(), 10)
        if not raw:
            break
        lines.append(raw.decode(errors="replace").rstrip("\r\n"))
    return lines


async def s_client(
    pki: Pki, port: int, tls: str, cn: str | None, request: str
) -> tuple[list[str], str]:
    """Send *request* with ``openssl s_client -quiet``; the lines up to END, and stderr."""
    cmd = [require_tool("openssl"), "s_client", f"-{tls}", "-CAfile", str(pki.ca)]
    if cn is not None:
        cmd += ["-cert", str(pki.users[cn].cert), "-key", str(pki.users[cn].key)]
    cmd += ["-connect", f"127.0.0.1:{port}", "-quiet"]
    proc = await asyncio.create_subprocess_exec(
        *cmd, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdin and proc.stdout and proc.stderr
    proc.stdin.write(request.encode())
    try:
        await proc.stdin.drain()
    except (ConnectionResetError, BrokenPipeError):
        pass  # s_client already gave up: the server refused the handshake; stderr says how
    try:
        lines = await lines_until_end(proc.stdout)
    finally:
        if proc.returncode is None:
            proc.kill()
        err = (await proc.communicate())[1].decode(errors="replace")
    return lines, err


@pytest.fixture
async def racs_process(pki: Pki, tmp_path: Path):  # type: ignore[no-untyped-def]
    proc, port = await start_server(write_config(tmp_path, pki))
    yield port
    proc.terminate()
    assert await asyncio.wait_for(proc.wait(), 10) == 0


@pytest.mark.peer
async def test_openssl_tls13_sends_the_seed_request(pki: Pki, racs_process: int) -> None:
    lines, _ = await s_client(pki, racs_process, "tls1_3", "alice", SEED_REQUEST)
    assert lines == SEED_ANSWER


@pytest.mark.peer
async def test_openssl_tls12_and_refusals(pki: Pki, racs_process: int) -> None:
    request = (
        "BEGIN r\nLIST APPEND\nPOWERON MySEID APPEND\nAPDU MySEID 00A4040007A0000000041010\nEND\n"
    )
    lines, _ = await s_client(pki, racs_process, "tls1_2", "alice", request)
    assert lines == [
        "BEGIN r",
        "-606 003 user alice may not select AID A0000000041010 on MySEID",
        "END",
    ]
    lines, _ = await s_client(pki, racs_process, "tls1_2", "bob", "BEGIN\nPOWERON MySEID\nEND\n")
    assert lines == ["BEGIN", "-608 001 user bob may not use SEID MySEID", "END"]


@pytest.mark.peer
async def test_openssl_without_client_certificate_gets_no_session(
    pki: Pki, racs_process: int
) -> None:
    for tls in ("tls1_3", "tls1_2"):
        lines, err = await s_client(pki, racs_process, tls, None, "BEGIN\nLIST\nEND\n")
        assert lines == [], lines
        # TLS 1.2 ends with a handshake alert; TLS 1.3 with an alert or a reset after it.
        assert any(word in err.lower() for word in ("alert", "errno", "error")), err


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda t: t + "\n[server2]\n", "unknown section [server2]"),
        (
            lambda t: t.replace("idle_timeout = 20", "idle_timout = 20"),
            "unknown key(s) in [server]: idle_timout",
        ),
        (lambda t: t.replace("port = 0", 'port = "eighty"'), "'port' must be int"),
        (lambda t: t.replace("port = 0", "port = 70000"), "'port' must be between 0 and 65535"),
        (lambda t: t.replace("idle_timeout = 20", "idle_timeout = 0"), "'idle_timeout' must be"),
        (lambda t: t.replace("[server]", "[server]\nmax_sessions = -1"), "'max_sessions' must"),
        (lambda t: t + "\n[limits]\nmax_line = 0\n", "'max_line' must be between 1"),
        (
            lambda t: t.replace('users = "users.txt"', 'users = "nope.txt"'),
            "nope.txt does not exist",
        ),
        (lambda t: t + "\n[[se]]\nseid = 'x'\napplet = 'no.such.module:f'\n", "cannot load applet"),
        (
            lambda t: (
                t + "\n[[se]]\nseid = 'MySEID'\napplet = 'elock_testkit.racs_applets:factory'\n"
            ),
            "duplicate SEID",
        ),
        (lambda t: t + "\n[[se]]\napplet = 'elock_testkit.racs_applets:factory'\n", "no 'seid'"),
        (lambda t: t.replace("[server]", "[server"), "not valid TOML"),
    ],
)
def test_bad_config_gives_one_clear_line(
    pki: Pki, tmp_path: Path, capsys: pytest.CaptureFixture[str], edit: object, message: str
) -> None:
    config = write_config(tmp_path, pki)
    config.write_text(edit(config.read_text()))  # type: ignore[operator]
    assert main(["--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("racs-server: ") and message in err, err
    assert str(config) in err or message in err


def test_bad_access_file_names_file_and_line(
    pki: Pki, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path, pki)
    (tmp_path / "users.txt").write_text("alice 3 MySEID\n")
    assert main(["--config", str(config)]) == 2
    assert f"{tmp_path / 'users.txt'}:1: count '3' does not match 1" in capsys.readouterr().err


def test_missing_config_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--config", str(tmp_path / "racs.toml")]) == 2
    assert "cannot read" in capsys.readouterr().err


async def test_seids_from_reader_and_card_serial_files(pki: Pki, tmp_path: Path) -> None:
    """The seed's SEID allocation: ReaderSN.txt, then ATR.txt + cardsn.txt (CPLC)."""
    (tmp_path / "readersn.txt").write_text("21120548219311 obelix\n")
    (tmp_path / "atr.txt").write_text("// our in-process ATR\n3B88 A0000000041010\n")
    (tmp_path / "cardsn.txt").write_text("479011223344 asterix\n")
    extra = (
        '[[se]]\napplet = "elock_testkit.racs_applets:factory"\nserial = "21120548219311"\n'
        '[[se]]\napplet = "elock_testkit.racs_applets:factory"\n'
        '[seids]\nreadersn = "readersn.txt"\ncardsn = "cardsn.txt"\natr = "atr.txt"\n'
    )
    cfg = load_config(write_config(tmp_path, pki, extra))
    registry = await build_registry(cfg)
    assert registry.seids() == ["MySEID", "OtherSEID", "asterix", "obelix"]
    assert isinstance(registry.slots["asterix"].se, InProcessCard)
    with pytest.raises(ConfigError, match=r"cardsn\.txt does not exist"):
        (tmp_path / "cardsn.txt").unlink()
        load_config(cfg.path)


def _small_config(
    tmp_path: Path, pki: Pki, server: str = "", access: str = "", tail: str = ""
) -> Path:
    """racs.toml with *server* and *access* lines added to those sections, *tail* after."""
    (tmp_path / "users.txt").write_text("alice 1 MySEID\n")
    config = tmp_path / "racs.toml"
    config.write_text(
        f'[server]\nhost = "127.0.0.1"\nport = 0\ncert = "{pki.server.cert}"\n'
        f'key = "{pki.server.key}"\nclient_ca = "{pki.ca}"\n{server}'
        f'[access]\nusers = "users.txt"\n{access}{tail}'
    )
    return config


def _one_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    assert err.startswith("racs-server: ") and err.count("\n") == 1, err[:300]
    assert len(err) < 400, err[:300]  # a 5000-digit value is not echoed whole
    return err


@pytest.mark.parametrize(
    ("server", "access", "files", "message"),
    [
        ("idle_timeout = " + "9" * 400 + "\n", "", {}, "'idle_timeout'"),
        ("idle_timeout = -" + "9" * 400 + "\n", "", {}, "'idle_timeout'"),
        ("idle_timeout = " + "9" * 5000 + "\n", "", {}, "racs.toml:7: an integer has more"),
        ("max_sessions = " + "9" * 5000 + "\n", "", {}, "racs.toml:7: an integer has more"),
        ("max_sessions = " + "9" * 4000 + "\n", "", {}, "'max_sessions' must be between"),
        ('log_apdus = "a\\u0000b"\n', "", {}, "'log_apdus' contains a NUL"),
        ("", 'seid_dir = "a\\u0000b"\n', {}, "'seid_dir' contains a NUL"),
        ("", f'seid_dir = "{"a" * 5000}"\n', {}, "seid_dir = '"),
        ("", 'filters = "a\\u0000b"\n', {}, "'filters' contains a NUL"),
        ("", "", {"users.txt": b"alice 1 MySEID\nal\xffice 1 MySEID\n"}, "users.txt:2: not UTF-8"),
        ("", "", {"users.txt": "alice \u00b2 A\n".encode()}, "users.txt:1: count '\u00b2'"),
        ("", "", {"users.txt": b"alice " + b"9" * 5000 + b" A\n"}, "users.txt:1: count '999"),
        (
            "",
            'seid_dir = "seid"\n',
            {"seid/MySEID.txt": "default no \u00b2 a b\n".encode()},
            "MySEID.txt:1: expected",
        ),
        (
            "",
            'seid_dir = "seid"\n',
            {"seid/MySEID.txt": b"default no " + b"9" * 5000 + b" a\n"},
            "MySEID.txt:1: expected",
        ),
        ("", 'seid_dir = "seid"\n', {"seid/MySEID.txt": b"default no 1 \xff\n"}, "not UTF-8"),
        (
            "",
            'filters = "filters.txt"\n',
            {"filters.txt": b"deny FFFF 80E6 user=\xff\n"},
            "filters.txt:1: not UTF-8",
        ),
        (
            "",
            'filters = "filters.txt"\n',
            {"filters.txt": b"deny " + b"F" * 5001 + b" 00\n"},
            "hex",
        ),
    ],
)
def test_hostile_files_are_one_line_and_status_2(
    tmp_path: Path,
    pki: Pki,
    capsys: pytest.CaptureFixture[str],
    server: str,
    access: str,
    files: dict[str, bytes],
    message: str,
) -> None:
    config = _small_config(tmp_path, pki, server, access)
    for name, data in files.items():
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_bytes(data)
    assert main(["--config", str(config)]) == 2
    assert message in _one_line(capsys)
    assert not (tmp_path / "a").exists()  # no log_apdus file, not even up to the NUL


def test_racs_toml_that_is_not_utf8(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "racs.toml"
    config.write_bytes(b'[server]\nhost = "\xff"\n')
    assert main(["--config", str(config)]) == 2
    assert f"{config}:2: not UTF-8" in _one_line(capsys)


def test_readersn_that_is_not_utf8(
    pki: Pki, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "readersn.txt").write_bytes(b"21120548219311 obel\xffix\n")
    tail = (
        '[seids]\nreadersn = "readersn.txt"\n'
        '[[se]]\napplet = "elock_testkit.racs_applets:factory"\nserial = "21120548219311"\n'
    )
    assert main(["--config", str(_small_config(tmp_path, pki, tail=tail))]) == 2
    assert "readersn.txt:1: not UTF-8" in _one_line(capsys)
