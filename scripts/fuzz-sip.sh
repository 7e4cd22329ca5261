#!/usr/bin/env bash
# Long fuzz run of the MLC's SIP receive path: mutated RFC 4475 messages
# over UDP into a running MLC, then a check that it still answers OPTIONS.
# Usage: scripts/fuzz-sip.sh [ROUNDS] [SEED]   (defaults: 2,000,000, random)
# The test suite runs the same test with 3,000 rounds.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds="${1:-2000000}"
seed="${2:-$RANDOM$RANDOM}"
echo "==> fuzzing the SIP receive path: $rounds messages, seed $seed"
SIP_FUZZ_ROUNDS="$rounds" SIP_FUZZ_SEED="$seed" \
  cargo nextest run --release -p openturret-server --test sip_torture --no-capture fuzz
