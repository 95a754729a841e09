#!/usr/bin/env bash
# Soak run: sclgate serve (built-in classifier, 1,000-entry weight list,
# relaying to smtp-sink) under a steady load for a long stretch, sampling
# its resident memory, goroutines and open descriptors every 10 s. A leak
# shows as a climb from the first minutes to the last; the summary compares
# the two and checks every message arrived.
#
# Load (open loop, bench/latency): 10 KB messages at RATE_NEW/s with a new
# connection each, plus 100 KB messages at RATE_REUSED/s over 4 reused
# connections.
#
# Usage: bench/soak.sh     env: MINUTES=30 RATE_NEW=80 RATE_REUSED=20
set -euo pipefail
source "$(dirname "$0")/lib.sh"

MINUTES=${MINUTES:-30}
RATE_NEW=${RATE_NEW:-80}
RATE_REUSED=${RATE_REUSED:-20}
SINK_LIFETIME=$((MINUTES * 60 + 600))

build_sclgate
go build -o "$OUT/latency" "$ROOT/bench/latency"
[[ -f $OUT/weights-1000.xml ]] || "$ROOT/bench/gen-weights.sh" "$OUT/weights-1000.xml" 1000
stamp=$(date +%Y%m%dT%H%M%S)
RUNDIR=$OUT/soak-$stamp
mkdir -p "$RUNDIR"
write_config "$RUNDIR/sclgate.yaml"
machine_info | tee "$RUNDIR/machine.txt" >&2

start_sink "$RUNDIR/sink.counters"
start_sclgate "$RUNDIR/sclgate.yaml" "$RUNDIR/sclgate.log"
n_new=$((RATE_NEW * MINUTES * 60))
n_reused=$((RATE_REUSED * MINUTES * 60))
log "soak: $MINUTES min, $RATE_NEW/s new connections (10 KB) + $RATE_REUSED/s reused (100 KB); $((n_new + n_reused)) messages"

# One sample: seconds since start, VmRSS kB, goroutines, open fds, relayed.
sample() {
  printf '%s\t%s\t%s\t%s\t%s\n' "$(($(date +%s) - T0))" "$(proc_rss "$GW_PID")" \
    "$(metric go_goroutines)" "$(metric process_open_fds)" "$(metric sclgate_messages_relayed_total)"
}
T0=$(date +%s)
printf 'secs\trss_kb\tgoroutines\tfds\trelayed\n' >"$RUNDIR/samples.tsv"
(while kill -0 "$GW_PID" 2>/dev/null; do sample >>"$RUNDIR/samples.tsv"; sleep 10; done) &
sampler=$!
STARTED_PIDS+=("$sampler")

rc=0
timeout $((MINUTES * 60 + 300)) "$OUT/latency" -addr "127.0.0.1:$GW_PORT" -rate "$RATE_NEW" -n "$n_new" -size 10240 \
  -label soak-new >"$RUNDIR/load-new.out" 2>&1 &
p1=$!
timeout $((MINUTES * 60 + 300)) "$OUT/latency" -addr "127.0.0.1:$GW_PORT" -rate "$RATE_REUSED" -n "$n_reused" -size 102400 \
  -reuse 4 -label soak-reused >"$RUNDIR/load-reused.out" 2>&1 &
p2=$!
wait "$p1" || rc=$?
wait "$p2" || rc=$?
sleep 12 # idle: one more sample after the load, downstream connections expired
sample >>"$RUNDIR/samples.tsv"
kill "$sampler" 2>/dev/null || true
relayed=$(metric sclgate_messages_relayed_total)
stop_pid "$GW_PID"
sleep 0.3
got=$(sink_mesg "$RUNDIR/sink.counters")
stop_pid "$SINK_PID"
cat "$RUNDIR/load-new.out" "$RUNDIR/load-reused.out"

# Summary: medians of the first 5 minutes after a 1-minute warm-up against
# the last 5 minutes of load.
summary=$(awk -F'\t' -v end=$((MINUTES * 60)) '
  NR == 1 { next }
  $1 >= 60 && $1 < 360 { a[++na] = $2; g[++ng] = $3; f[++nf] = $4 }
  $1 >= end - 300 && $1 < end { b[++nb] = $2; h[++nh] = $3; k[++nk] = $4 }
  function med(x, n,   i, j, t) { for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (x[j] < x[i]) { t = x[i]; x[i] = x[j]; x[j] = t } return n ? x[int((n + 1) / 2)] : 0 }
  END {
    printf "RSS median: minutes 1-6 %.1f MB, last 5 minutes %.1f MB\n", med(a, na) / 1024, med(b, nb) / 1024
    printf "goroutines median: %d -> %d; open fds median: %d -> %d\n", med(g, ng), med(h, nh), med(f, nf), med(k, nk)
  }' "$RUNDIR/samples.tsv")
{
  echo "soak: commit $COMMIT, $MINUTES min, sent $((n_new + n_reused)), relayed $relayed, at the sink $got, load client exit $rc"
  echo "$summary"
  echo "after the load (idle): $(tail -1 "$RUNDIR/samples.tsv" | awk -F'\t' '{ printf "RSS %.1f MB, %d goroutines, %d fds", $2 / 1024, $3, $4 }')"
  echo "samples: $RUNDIR/samples.tsv"
} | tee "$RUNDIR/summary.txt"
[[ $rc == 0 && $got == "$relayed" && $relayed == $((n_new + n_reused)) ]]
