#!/usr/bin/env bash
# Throughput vs the physical limit: for each cell (message size × parallel
# sessions × new connection per message or reused), Postfix's smtp-source →
# smtp-sink directly, then smtp-source → sclgate serve (built-in classifier,
# a 1,000-entry weight list, gateway_action none) → smtp-sink, back to back
# with the same message count. Prints msgs/s for both, the ratio and the
# target, plus the CPU each process spent per message and the CPU other
# users of the machine took meanwhile (it is shared).
#
# Usage: bench/throughput.sh [CELL...]     CELL = SIZE:SESSIONS:MODE, e.g. 10k:10:new
#   env: REPEAT=1 (runs per cell, all reported), M_10K_NEW=40000,
#        M_10K_REUSED=80000, M_100K=10000 (total messages per run),
#        SCLGATE_BIN (default: built from HEAD), ports SINK_PORT GW_PORT METRICS_PORT.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

M_10K_NEW=${M_10K_NEW:-40000}
M_10K_REUSED=${M_10K_REUSED:-80000}
M_100K=${M_100K:-10000}
REPEAT=${REPEAT:-1}
RUN_TIMEOUT=${RUN_TIMEOUT:-300}

cells=("$@")
if ((${#cells[@]} == 0)); then
  cells=(10k:10:new 10k:10:reused 10k:100:new 10k:100:reused 100k:10:new 100k:10:reused 100k:100:new 100k:100:reused)
fi

build_sclgate
[[ -f $OUT/weights-1000.xml ]] || "$ROOT/bench/gen-weights.sh" "$OUT/weights-1000.xml" 1000
stamp=$(date +%Y%m%dT%H%M%S)
RES=$OUT/throughput-$stamp.tsv
RUNDIR=$OUT/throughput-$stamp
mkdir -p "$RUNDIR"
write_config "$RUNDIR/sclgate.yaml"
"$BIN" serve -config "$RUNDIR/sclgate.yaml" -check >&2

machine_info | tee "$RUNDIR/machine.txt" >&2
print_header

for cell in "${cells[@]}"; do
  IFS=: read -r sz sess mode <<<"$cell"
  size=${sz%k}
  if ((size == 10)); then
    m=$([[ $mode == new ]] && echo "$M_10K_NEW" || echo "$M_10K_REUSED")
  else
    m=$M_100K
  fi
  for ((r = 1; r <= REPEAT; r++)); do
    log "cell $cell run $r: $m messages, load $(loadavg)"
    run_cell direct - "$size" "$sess" "$mode" "$m" "$r"
    sleep 1
    run_cell sclgate "$RUNDIR/sclgate.yaml" "$size" "$sess" "$mode" "$m" "$r"
    sleep 1
  done
done

# Summary: one line per cell and run, ratio = sclgate / direct.
echo
echo "results: $RES"
"$ROOT/bench/summarize-throughput.sh" "$RES"
