#!/usr/bin/env bash
# Build the release `ferry` and run a soak: `scripts/soak.sh [SECONDS] [SEED]`
# (defaults: 600 s, a seed from the clock). The report goes to stdout and,
# with the seed, to target/soak/soak-<seed>.txt; a failing run also writes
# target/soak/soak-<seed>.log (mismatches and the fuzz batches' hypercall
# streams). Exits with ferry's status: non-zero if any invariant broke.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

seconds="${1:-600}"
seed="${2:-$(date +%s%N)}"
mkdir -p target/soak
cargo build --release --bin ferry
set +e
target/release/ferry soak --seconds "$seconds" --seed "$seed" \
    --log "target/soak/soak-$seed.log" | tee "target/soak/soak-$seed.txt"
status="${PIPESTATUS[0]}"
set -e
echo "report: target/soak/soak-$seed.txt"
exit "$status"
