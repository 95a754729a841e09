#!/usr/bin/env bash
# Every benchmark of BENCHMARKS.md except the soak run, one after the other
# (never two at once: they would measure each other), pinned to one commit.
# With BEFORE=<commit>, the CPU profiles are also taken of that commit, for
# the before/after comparison.
#
# Usage: [COMMIT=<sha>] [BEFORE=<sha>] bench/run-all.sh      output: bench/out/perf/all-<time>.log
# The soak run is separate: bench/soak.sh (30 minutes).
set -euo pipefail
cd "$(dirname "$0")/.."
export COMMIT=$(git rev-parse --short "${COMMIT:-HEAD}")
log=bench/out/perf/all-$(date +%Y%m%dT%H%M%S).log
mkdir -p bench/out/perf
exec > >(tee "$log") 2>&1
step() { "$@" || echo "== FAILED ($?): $*"; }
echo "== run-all: commit $COMMIT, $(date -u), load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "== throughput (the 8 cells, direct vs sclgate)"; step bench/throughput.sh
echo "== latency"; step bench/latency.sh
echo "== memory"; step bench/memory.sh
profiles() {
  step bench/pprof.sh 10240 10 new 30000
  step bench/pprof.sh 10240 10 reused 60000
  step bench/pprof.sh 102400 10 reused 10000
}
echo "== profiles ($COMMIT)"; profiles
if [[ -n ${BEFORE:-} ]]; then
  echo "== profiles (before: $BEFORE)"; COMMIT=$(git rev-parse --short "$BEFORE") profiles
fi
echo "== peers"; step bench/peers.sh
echo "== run-all done, load $(cut -d' ' -f1-3 /proc/loadavg)"
