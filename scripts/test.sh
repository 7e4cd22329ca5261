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

# A throwaway PostgreSQL cluster for the PostgreSQL store's tests (issue
# 19), on a free port, removed when this script ends. A cluster named by
# TURRET_TEST_POSTGRES_URL already is used as it is.
if [ -z "${TURRET_TEST_POSTGRES_URL:-}" ]; then
  pgbin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
  pgdir=$(mktemp -d /tmp/turret-test-pg.XXXXXX)
  as_postgres=(runuser -u postgres --)
  if [ "$(id -u)" -ne 0 ]; then as_postgres=(sudo -u postgres); fi
  "${sudo_cmd[@]}" chown postgres: "$pgdir"
  pgport=""
  for p in $(seq 55432 55532); do
    if ! (echo > "/dev/tcp/127.0.0.1/$p") 2>/dev/null; then pgport=$p; break; fi
  done
  echo "==> starting a throwaway PostgreSQL cluster on 127.0.0.1:$pgport"
  "${as_postgres[@]}" "$pgbin/initdb" -D "$pgdir" -A trust -U postgres >/dev/null
  "${as_postgres[@]}" "$pgbin/pg_ctl" -D "$pgdir" \
    -o "-p $pgport -k $pgdir -c listen_addresses=127.0.0.1 -c max_connections=300 -c fsync=off" \
    -l "$pgdir/server.log" -w start >/dev/null
  trap '"${as_postgres[@]}" "$pgbin/pg_ctl" -D "$pgdir" -m immediate stop >/dev/null 2>&1; "${sudo_cmd[@]}" rm -rf "$pgdir"' EXIT
  export TURRET_TEST_POSTGRES_URL="postgres://postgres@127.0.0.1:$pgport/postgres"
  # Ours to change: a test turns TLS on in it (verify-full to PostgreSQL).
  export TURRET_TEST_POSTGRES_THROWAWAY=1
fi

# A CI run builds once from nothing: incremental compilation's caches
# would only cost time and disk there.
if [ -n "${CI:-}" ]; then export CARGO_INCREMENTAL=0; fi
echo "==> building (warnings are errors)"
RUSTFLAGS="${RUSTFLAGS:-} -D warnings" cargo build --workspace --all-targets --locked

# The System Manager's tests run a second time with their servers on
# PostgreSQL (issue 19), but for those of what PostgreSQL does not do yet
# (backups and restores), those that inspect SQLite's own files, and the
# migration from SQLite (whose source must be SQLite).
sqlite_only=(backup restore migrate the_database_and_its_wal_hold_no_clear_text_password
  an_erased_profile_leaves_no_trace_in_the_database_its_wal)
# The tests of several nodes (tests/cluster.rs) are on PostgreSQL in the
# first pass already; their names speak of nodes.
sqlite_only+=(one_node two_nodes killed_node)

status=0
echo "==> running every test (SQLite; the store's suites also on PostgreSQL)"
if cargo nextest --version >/dev/null 2>&1; then
  RUSTFLAGS="${RUSTFLAGS:-} -D warnings" cargo nextest run --workspace --no-fail-fast --locked || status=$?
  filter="not ($(printf 'test(%s) | ' "${sqlite_only[@]}" | sed 's/ | $//'))"
  echo "==> running the System Manager's tests on PostgreSQL"
  # (A test that fails here is run again, at most twice, and reported as
  # FLAKY when it then passes: each such failure so far was a race that
  # PostgreSQL's timing brought out, fixed since; see the session notes.
  # The first pass has no retries.)
  TURRET_TEST_BACKEND=postgres RUSTFLAGS="${RUSTFLAGS:-} -D warnings" \
    cargo nextest run -p openturret-server --no-fail-fast --locked --retries 2 -E "$filter" || status=$?
else
  RUSTFLAGS="${RUSTFLAGS:-} -D warnings" cargo test --workspace --no-fail-fast --locked || status=$?
  skips=()
  for t in "${sqlite_only[@]}"; do skips+=(--skip "$t"); done
  echo "==> running the System Manager's tests on PostgreSQL"
  TURRET_TEST_BACKEND=postgres RUSTFLAGS="${RUSTFLAGS:-} -D warnings" \
    cargo test -p openturret-server --no-fail-fast --locked -- "${skips[@]}" || status=$?
fi
exit "$status"
