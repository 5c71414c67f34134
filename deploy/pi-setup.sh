#!/usr/bin/env bash
# Install the eLock lock on a Raspberry Pi (Raspberry Pi OS / Debian): the lock
# and its optional GPIO dependency only, a hardened systemd unit, the config
# for the relay, and the lock secret and key-server address from a bundle.
# The lock dials its key server (the bundle's sync_url) and keeps that
# connection: nothing here opens, forwards or asks for an inbound port. Its
# CoAP port is for key holders on the same network.
#
#   sudo deploy/pi-setup.sh --bundle front-door.json [--host 192.0.2.10] [--pin 17]
#        [--active-low] [--open-seconds 5] [--timezone Europe/Paris]
#
# --root DIR   install the files under DIR instead of /, and only print the
#              system commands (apt-get, useradd, pip, systemctl): for tests
#              and for reviewing what the script does.
# --dry-run    change nothing at all; print every action.
set -euo pipefail

SRC=$(cd "$(dirname "$0")/.." && pwd)
ROOT=""
DRY=0
BUNDLE=""
HOST=""
PIN=17
ACTIVE_HIGH=true
OPEN_SECONDS=5
TZ_NAME=$(cat /etc/timezone 2>/dev/null || echo UTC)

die() { echo "pi-setup: $*" >&2; exit 2; }
while [ $# -gt 0 ]; do
  case "$1" in
    --bundle) BUNDLE=${2:?}; shift 2 ;;
    --host) HOST=${2:?}; shift 2 ;;
    --pin) PIN=${2:?}; shift 2 ;;
    --active-low) ACTIVE_HIGH=false; shift ;;
    --open-seconds) OPEN_SECONDS=${2:?}; shift 2 ;;
    --timezone) TZ_NAME=${2:?}; shift 2 ;;
    --root) ROOT=${2:?}; shift 2 ;;
    --dry-run) DRY=1; shift ;;
    -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
    *) die "unknown option $1 (see --help)" ;;
  esac
done

[ -n "$BUNDLE" ] || die "--bundle FILE is required (the lock bundle from the key server)"
[ -r "$BUNDLE" ] || die "cannot read bundle $BUNDLE"
[[ "$PIN" =~ ^[0-9]+$ ]] && [ "$PIN" -ge 2 ] && [ "$PIN" -le 27 ] || die "--pin must be a BCM GPIO number 2..27"
[[ "$OPEN_SECONDS" =~ ^[0-9]+(\.[0-9]+)?$ ]] || die "--open-seconds must be a number"
if [ -z "$HOST" ]; then
  HOST=$(hostname -I 2>/dev/null | awk '{print $1}')
  [ -n "$HOST" ] || die "cannot find this machine's address; pass --host"
fi
# Read the bundle with the system Python: nothing of ours is installed yet. It prints
# the fields, or why the bundle is refused and fails; die then says so with status 2
# (a failed process substitution feeding `read` would end the script by set -e, status 1).
FIELDS=$(python3 - "$BUNDLE" <<'PY'
import json, re, sys, uuid
from urllib.parse import urlsplit


class Refused(Exception):
    pass


def check(ok, what):
    if not ok:
        raise Refused(what)


def sync_url_ok(url):
    """ws:// or wss://, a host, a port None or 1..65535; only characters TOML and the
    lock's config take as they are. The regex alone took wss://[abc, wss://:/ and :99999."""
    try:
        parts = urlsplit(url)
        port = parts.port  # ValueError when not a number in 0..65535
    except ValueError:  # also wss://[abc
        return False
    return (re.fullmatch(r"wss?://[A-Za-z0-9.\-\[\]:]+(/[\w./-]*)?", url) is not None
            and parts.scheme in ("ws", "wss") and bool(parts.hostname)
            and (port is None or 0 < port < 65536))


try:
    b = json.load(open(sys.argv[1], encoding="utf-8"))
    check(b["format"] == "elock-lock-bundle/1", "format")
    name, secret, port = b["name"], b["secret"], b.get("port", 5684)
    check(0 < len(name) <= 64 and name.isprintable() and '"' not in name and "\\" not in name, "name")
    check(secret.replace("-", "").replace("_", "").isalnum(), "secret")
    check(type(port) is int and 0 < port < 65536, "port")  # not true (1), "5684" or 5684.5
    url, lock_id = b.get("sync_url") or "-", str(uuid.UUID(str(b["lock_id"])))
    check(url == "-" or sync_url_ok(url), "sync_url")
    ca = b.get("sync_ca") or ""  # PEM CA certificate(s) the lock trusts for a wss:// url
    pem = r"(-----BEGIN CERTIFICATE-----\n[A-Za-z0-9+/=\n]+-----END CERTIFICATE-----\n?)+"
    check(not ca or (url.startswith("wss://") and len(ca) <= 65536 and re.fullmatch(pem, ca)), "sync_ca")
except Exception as exc:
    print(f"bad {exc}" if isinstance(exc, Refused) else exc.__class__.__name__)
    sys.exit(1)
print(name, secret, port, url, lock_id, int(bool(ca)), sep="\t")
PY
) || die "$BUNDLE is not a valid lock bundle${FIELDS:+ ($FIELDS)}"
IFS=$'\t' read -r NAME SECRET PORT SYNC_URL LOCK_ID HAS_CA <<<"$FIELDS"
SYNC_TABLE=""
if [ "$SYNC_URL" != "-" ]; then
  SYNC_TABLE=$(printf '\n[sync]\n# the lock dials its key server; no inbound port is opened for it\nurl = "%s"\nlock_id = "%s"\n' "$SYNC_URL" "$LOCK_ID")
  if [ "$HAS_CA" = 1 ]; then  # the key server's private CA: trusted for url, and nothing else
    SYNC_TABLE+=$'\nca_file = "/etc/elock/sync-ca.pem"'
  fi
else
  echo "pi-setup: the bundle names no key server (its sync.url is unset): this lock will sync with nothing" >&2
fi

system() {  # a command that changes the system outside $ROOT
  if [ "$DRY" = 1 ] || [ -n "$ROOT" ]; then echo "would run: $*"; else echo "+ $*"; "$@"; fi
}
put() {  # put MODE OWNER:GROUP PATH < content
  local mode=$1 owner=$2 path=$ROOT$3
  if [ "$DRY" = 1 ]; then echo "would write $path (mode $mode, $owner)"; cat >/dev/null; return; fi
  # 0755 whatever root's umask: the service user must reach its files, which keep their own modes
  install -d -m 0755 "$(dirname "$path")"
  local tmp; tmp=$(mktemp "$(dirname "$path")/.pi-setup.XXXXXX")
  cat >"$tmp"; chmod "$mode" "$tmp"
  [ -n "$ROOT" ] || chown "$owner" "$tmp"
  mv -f "$tmp" "$path"; echo "wrote $path"
}

echo "== eLock lock '$NAME' on $HOST:$PORT, relay on BCM $PIN (active_high=$ACTIVE_HIGH)"
system env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
  python3-venv python3-dev build-essential autoconf automake libtool pkg-config
system sh -c 'getent group gpio >/dev/null || groupadd --system gpio'
system sh -c 'id elock-lock >/dev/null 2>&1 || useradd --system --no-create-home --home-dir /var/lib/elock-lock --shell /usr/sbin/nologin --user-group --groups gpio elock-lock'
system python3 -m venv /opt/elock/venv
system /opt/elock/venv/bin/pip install --quiet "$SRC[lock,pi]"

put 0640 root:elock-lock /etc/elock/lock.secret <<<"$SECRET"
if [ "$HAS_CA" = 1 ]; then
  python3 -c 'import json, sys; sys.stdout.write(json.load(open(sys.argv[1], encoding="utf-8"))["sync_ca"])' "$BUNDLE" \
    | put 0644 root:root /etc/elock/sync-ca.pem
fi
put 0640 root:elock-lock /etc/elock/lock.toml <<EOF2
# Written by deploy/pi-setup.sh; see docs/lock.md.
[lock]
name = "$NAME"
secret_file = "/etc/elock/lock.secret"
data_dir = "/var/lib/elock-lock"
host = "$HOST"
port = $PORT
open_seconds = $OPEN_SECONDS
timezone = "$TZ_NAME"

[relay]
backend = "rpi"
pin = $PIN
active_high = $ACTIVE_HIGH
$SYNC_TABLE
EOF2
put 0644 root:root /etc/systemd/system/elock-lock.service <"$SRC/deploy/systemd/elock-lock.service"

if [ "$DRY" = 0 ] && [ -z "$ROOT" ]; then
  echo "+ checking the config with the installed lock"
  # as the service user, who reads the 0640 root:elock-lock secret through its group
  runuser -u elock-lock -- /opt/elock/venv/bin/python -c 'from pathlib import Path; from lock_server.config import load_config; c = load_config(Path("/etc/elock/lock.toml")); c.load_secret()'
fi
system systemctl daemon-reload
system systemctl enable --now elock-lock.service
echo "== done. Check it: systemctl status elock-lock; journalctl -u elock-lock -f"
