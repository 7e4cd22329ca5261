#!/usr/bin/env bash
# Installs what the tests need (Debian packages listed in
# scripts/test-packages.txt) and runs every test of the workspace.
# Usage: scripts/test.sh            (from anywhere; as root or with sudo)
set -euo pipefail
cd "$(dirname "$0")/.."

sudo_cmd=()
if [ "$(id -u)" -ne 0 ]; then sudo_cmd=(sudo); fi

missing=()
while read -r pkg probe _; do
  case "$pkg" in ''|'#'*) continue ;; esac
  if [ -n "$probe" ]; then
    command -v "$probe" >/dev/null 2>&1 || missing+=("$pkg")
  elif ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$pkg")
  fi
done < scripts/test-packages.txt
if [ ${#missing[@]} -gt 0 ]; then
  echo "==> installing test peers: ${missing[*]}"
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

echo "==> building (warnings are errors)"
RUSTFLAGS="${RUSTFLAGS:-} -D warnings" cargo build --workspace --all-targets --locked

echo "==> running every test"
if cargo nextest --version >/dev/null 2>&1; then
  RUSTFLAGS="${RUSTFLAGS:-} -D warnings" cargo nextest run --workspace --no-fail-fast --locked
else
  RUSTFLAGS="${RUSTFLAGS:-} -D warnings" cargo test --workspace --no-fail-fast --locked
fi
