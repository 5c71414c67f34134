"""The shipped key-server deployment, run for real in a throwaway directory.

``deploy/systemd/elock-keyserver.service``, ``deploy/config/keyserver.toml`` and
``deploy/config/nginx-elock-keyserver.conf`` are read, not copied: only what
is specific to a machine changes (the database socket and port, the master key
path, the ports, the certificate paths, nginx's pid/log/temp paths), so a key
the shipped files get wrong fails here.
"""

from __future__ import annotations

import json
import os
import pwd
import re
import shlex
import signal
import subprocess
import sys
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from psycopg import sql
from sqlalchemy.engine import make_url

from elock_common import pki
from elock_testkit.pgcluster import PgCluster
from key_provisioner.core.config import CONFIG_ENV

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "deploy" / "systemd" / "elock-keyserver.service"
KEYSERVER_TOML = ROOT / "deploy" / "config" / "keyserver.toml"
NGINX_SITE = ROOT / "deploy" / "config" / "nginx-elock-keyserver.conf"
UNIT_BIN = Path("/opt/elock/venv/bin")  # where the unit expects the virtualenv
SYSTEMD_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


# -- the systemd unit -------------------------------------------------------------------


@dataclass(frozen=True)
class ServiceUnit:
    user: str
    environment: dict[str, str]
    exec_start_pre: list[list[str]]
    exec_start: list[str]
    options: dict[str, list[str]]  # every [Service] line, by key


def read_unit(path: Path = UNIT) -> ServiceUnit:
    section = ""
    values: dict[str, list[str]] = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if line.startswith("["):
            section = line
        elif line and not line.startswith(("#", ";")) and section == "[Service]":
            key, _, value = line.partition("=")
            values.setdefault(key, []).append(value)
    environment = dict(
        item.split("=", 1) for value in values.get("Environment", []) for item in shlex.split(value)
    )
    return ServiceUnit(
        values["User"][-1],
        environment,
        [shlex.split(value) for value in values.get("ExecStartPre", [])],
        shlex.split(values["ExecStart"][-1]),
        values,
    )


def local_command(argv: list[str]) -> list[str]:
    """A unit's command line, its program taken from this virtualenv instead."""
    program = Path(argv[0])
    assert program.parent == UNIT_BIN, f"{argv}: not a program of {UNIT_BIN}"
    local = Path(sys.executable).parent / program.name
    assert local.is_file(), f"{local} is not installed (pip install -e .)"
    return [str(local), *argv[1:]]


def service_env(unit: ServiceUnit, config: Path) -> dict[str, str]:
    """What systemd gives the service: its PATH, the unit's Environment= and nothing else."""
    env = {"PATH": SYSTEMD_PATH, "LANG": "C.UTF-8", **unit.environment}
    assert env.get(CONFIG_ENV) == "/etc/elock/keyserver.toml", unit.environment
    return env | {CONFIG_ENV: str(config)}


def run(argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    # systemd starts a system service in / unless WorkingDirectory= says otherwise.
    return subprocess.run(argv, env=env, cwd="/", capture_output=True, text=True, timeout=60)


# -- the key server's configuration and database -----------------------------------------


def write_keyserver_config(
    directory: Path, cluster: PgCluster, port: int
) -> tuple[Path, dict[str, Any]]:
    """The shipped TOML with the machine-specific values of this test; every other key kept."""
    config = tomllib.loads(KEYSERVER_TOML.read_text())
    server = config["keyserver"]
    url = make_url(server["database_url"])
    local = {"host": str(cluster.directory), "port": str(cluster.port)}
    server["database_url"] = url.update_query_dict(local).render_as_string(hide_password=False)
    server["master_key_file"] = str(directory / "master.key")
    server["port"] = port
    path = directory / "keyserver.toml"
    path.write_text(to_toml(config))
    return path, config


def to_toml(document: dict[str, dict[str, Any]]) -> str:
    """Tables of strings, numbers and booleans: all a key-server config holds."""

    def value(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, int | float):
            return repr(v)
        assert isinstance(v, str), v
        return json.dumps(v)  # a JSON string is a TOML basic string

    return "".join(
        f"[{name}]\n" + "".join(f"{k} = {value(v)}\n" for k, v in table.items()) + "\n"
        for name, table in document.items()
    )


def create_role_and_database(cluster: PgCluster, database_url: str) -> None:
    """What the URL expects: its role, owning its database; no password, no superuser."""
    url = make_url(database_url)
    assert url.username and url.database and url.password is None, database_url
    role, database = sql.Identifier(url.username), sql.Identifier(url.database)
    with cluster.admin() as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(role))
        conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(database, role))


# -- nginx ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Certificates:
    ca: Path
    cert: Path
    key: Path


def make_certificates(directory: Path, name: str) -> Certificates:
    now = time.time()
    ca, ca_key = pki.make_ca("eLock test CA", now=now)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = pki.issue_tls_certificate(
        ca, ca_key, key.public_key(), name, now=now, server=True, dns_names=(name,),
        ip_addresses=("127.0.0.1",),
    )  # fmt: skip
    certs = Certificates(
        directory / "ca.crt", directory / "keyserver.crt", directory / "server.key"
    )
    certs.ca.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    certs.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    certs.key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    certs.key.chmod(0o600)
    return certs


def shipped_upstream() -> tuple[str, int]:
    match = re.search(
        r"upstream elock_keyserver \{\s*server ([\d.]+):(\d+);", NGINX_SITE.read_text()
    )
    assert match, "no upstream elock_keyserver in the shipped site"
    return match[1], int(match[2])


def nginx_site(listen_port: int, upstream_port: int, certs: Certificates) -> str:
    """The shipped site, with only the listen port, certificates and upstream port changed."""
    text = NGINX_SITE.read_text()
    for pattern, new in [
        (r"(?m)^(\s*listen\s+)443\b", rf"\g<1>127.0.0.1:{listen_port}"),
        (r"(?m)^(\s*ssl_certificate\s+)\S+;", rf"\g<1>{certs.cert};"),
        (r"(?m)^(\s*ssl_certificate_key\s+)\S+;", rf"\g<1>{certs.key};"),
        (r"(upstream elock_keyserver \{\s*server [\d.]+:)\d+;", rf"\g<1>{upstream_port};"),
    ]:
        text, count = re.subn(pattern, new, text)
        assert count == 1, f"{pattern!r} matched {count} times in {NGINX_SITE.name}"
    return text


def nginx_conf(prefix: Path, site: str) -> str:
    """A main configuration of our own around the site: nothing from /etc/nginx."""
    # As root, nginx's workers would run as nobody, who cannot enter pytest's 0700 tmp_path.
    user = f"user {pwd.getpwuid(os.getuid()).pw_name};\n" if os.geteuid() == 0 else ""
    temp = "".join(
        f"    {kind}_temp_path {prefix}/temp/{kind};\n"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    indented = "".join(f"    {line}\n" if line else "\n" for line in site.splitlines())
    return (
        f"{user}daemon off;\nworker_processes 1;\npid {prefix}/nginx.pid;\n"
        f"error_log {prefix}/error.log info;\nevents {{ worker_connections 256; }}\n\n"
        f"http {{\n    access_log {prefix}/access.log;\n{temp}\n{indented}}}\n"
    )


def body_limit(site: str) -> int:
    match = re.search(r"client_max_body_size\s+(\d+)([km]?);", site)
    assert match, "no client_max_body_size in the site"
    return int(match[1]) * {"": 1, "k": 1024, "m": 1024 * 1024}[match[2]]


# -- processes --------------------------------------------------------------------------


@dataclass
class Service:
    """A long-running process in its own session; stopped by its id, then its group."""

    argv: list[str]
    log: Path
    env: dict[str, str] | None = None
    stop_signal: signal.Signals = signal.SIGTERM
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def start(self) -> None:
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                self.argv, stdout=out, stderr=subprocess.STDOUT, env=self.env, cwd="/",
                start_new_session=True,
            )  # fmt: skip

    def running(self) -> bool:
        assert self.proc is not None and self.proc.poll() is None, self.log.read_text()
        return True

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(self.stop_signal)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)  # the group we started, by its id
                proc.wait(10)


def children(pid: int) -> set[int]:
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # gone meanwhile
        if int(fields[1]) == pid:
            found.add(int(stat.parent.name))
    return found


def connection_owners(port: int, pids: set[int]) -> set[int]:
    """Which of ``pids`` hold an established TCP connection on local port ``port``."""
    inodes: dict[int, int] = {}
    for pid in pids:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            target = os.readlink(fd)
            if target.startswith("socket:["):
                inodes[int(target[8:-1])] = pid
    owners = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            cols = line.split()
            local_port, state, inode = int(cols[1].rsplit(":", 1)[1], 16), cols[3], int(cols[9])
            if state == "01" and local_port == port and inode in inodes:
                owners.add(inodes[inode])
    return owners
