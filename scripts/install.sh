#!/usr/bin/env bash
# Install everything eLock needs on a Debian machine: system packages listed in
# scripts/system-packages/*.txt, then a virtualenv in .venv with every part.
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

packages=$(sed -e 's/#.*//' scripts/system-packages/*.txt | tr -s ' \n' '\n' | sort -u | grep -v '^$')
missing=$(for p in $packages; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || echo "$p"; done)
if [ -n "$missing" ]; then
  echo "== installing system packages: $(echo $missing | tr '\n' ' ')"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  # shellcheck disable=SC2086
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing
fi
# Debian starts pcscd by socket activation; the tests and the demo start their own.
as_root systemctl disable --now pcscd.socket pcscd.service >/dev/null 2>&1 || true

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "== creating .venv with $($PYTHON --version)"
  "$PYTHON" -m venv .venv
fi
echo "== installing eLock and its Python dependencies into .venv"
.venv/bin/pip install -q --upgrade pip
.venv/bin/pip install -q -e '.[all]'
echo "== installed: $(.venv/bin/python -c 'import importlib.metadata as m; print("elock", m.version("elock"))')"
