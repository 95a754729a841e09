#!/usr/bin/env bash
# Every benchmark of BENCHMARKS.md, one after the other (never two at
# once: they would measure each other), pinned to one commit.
#
# Usage: COMMIT=<sha> bench/run-all.sh      (default HEAD); output: bench/out/perf/all-<time>.log
set -euo pipefail
cd "$(dirname "$0")/.."
export COMMIT=$(git rev-parse --short "${COMMIT:-HEAD}")
log=bench/out/perf/all-$(date +%Y%m%dT%H%M%S).log
mkdir -p bench/out/perf
exec > >(tee "$log") 2>&1
step() { "$@" || echo "== FAILED ($?): $*"; }
echo "== run-all: commit $COMMIT, $(date -u), load $(cut -d' ' -f1-3 /proc/loadavg)"
step bench/build-prototypes.sh test
P=bench/out/perf/sclgate-$COMMIT
echo "== throughput (the 8 cells, direct vs sclgate)"; step bench/throughput.sh
echo "== latency"; step bench/latency.sh
echo "== memory"; step bench/memory.sh
echo "== profiles (baseline)"
step bench/pprof.sh 10240 10 new 30000
step bench/pprof.sh 10240 10 reused 60000
step bench/pprof.sh 102400 10 new 8000
echo "== profile (prototype P1+P2+P3)"
PPROF_SRC=bench/out/perf/proto-$COMMIT-p123 step bench/pprof.sh 10240 10 new 30000
echo "== ablation and prototypes"
step bench/ablation.sh full unfiltered none noweights gogc400 "bin:p1=$P-p1" "bin:p12=$P-p12" "bin:p123=$P-p123"
echo "== throughput with the P1+P2+P3 prototype"; SCLGATE_BIN=$P-p123 step bench/throughput.sh
echo "== run-all done, load $(cut -d' ' -f1-3 /proc/loadavg)"
