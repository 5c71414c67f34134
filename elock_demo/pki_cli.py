"""``elock pki init``: the certificate authorities and certificates a deployment needs.

A thin shell over ``elock_common.pki.init_pki``: the profile (lifetimes, key
usages, names) lives there so that tests, the demo and operators make the
same PKI. It prints where each file went and which part reads it, because the
next thing an operator does is copy those files to the right machines.
"""

from __future__ import annotations

import argparse
import ipaddress
import sys
from pathlib import Path

from elock_common import pki


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser("pki", help="make the PKI of a deployment")
    pki_sub = parser.add_subparsers(required=True, metavar="ACTION")
    init = pki_sub.add_parser(
        "init", help="make the CAs and certificates into a directory (private keys mode 0600)"
    )
    init.add_argument("--dir", type=Path, required=True, help="directory to write into")
    init.add_argument("--force", action="store_true", help="overwrite existing files")
    init.add_argument("--key-server-name", default="keyserver",
                      help="the key server's name in its TLS#2 certificate")  # fmt: skip
    init.add_argument("--racs-user", action="append", dest="racs_users", metavar="NAME",
                      help="a RACS client certificate to make (default: keyserver)")  # fmt: skip
    init.add_argument("--racs-host", action="append", dest="racs_hosts", metavar="NAME_OR_IP",
                      help="a name or IP address of the RACS server "
                      "(default: localhost, 127.0.0.1, ::1)")  # fmt: skip
    init.set_defaults(func=run_init)


def _split_hosts(hosts: list[str]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    names, ips = [], []
    for host in hosts:
        try:
            ips.append(str(ipaddress.ip_address(host)))
        except ValueError:
            names.append(host)
    return tuple(names), tuple(ips)


def run_init(args: argparse.Namespace) -> int:
    users = tuple(args.racs_users or ("keyserver",))
    if "keyserver" not in users:
        users = ("keyserver", *users)  # the key server's own RACS session needs one
    names, ips = _split_hosts(args.racs_hosts or ["localhost", "127.0.0.1", "::1"])
    try:
        paths = pki.init_pki(
            args.dir,
            overwrite=args.force,
            key_server_name=args.key_server_name,
            racs_users=users,
            racs_server_names=names,
            racs_server_ips=ips,
        )
    except pki.PkiError as exc:
        print(f"elock pki init: {exc} (use --force to replace them)", file=sys.stderr)
        return 1
    rows = [
        (paths.key_server_ca, "key-server CA: trust anchor personalized into each card"),
        (paths.key_server, "key server's TLS#2 client certificate ([push] tls2_cert/tls2_key)"),
        (paths.racs_ca, "RACS CA: racs.toml client_ca, keyserver.toml [push] racs_ca"),
        (paths.racs_server, "RACS server's certificate (racs.toml cert/key)"),
        *(
            (ck, f"RACS client '{user}' ([push] racs_client_cert/key)")
            for user, ck in paths.racs_users.items()
        ),
        (paths.se_issuer_ca, "secure-element issuer CA: signs cards (elock-se personalize)"),
    ]
    print(f"PKI made in {paths.directory}:")
    for ck, role in rows:
        print(f"  {ck.cert.name:32} {role}")
    print("Private keys (*.key) are mode 0600; keep the CA keys offline once cards are made.")
    return 0
