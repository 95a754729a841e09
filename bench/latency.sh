#!/usr/bin/env bash
# Added latency of sclgate at a fixed rate well below saturation: the same
# open-loop client (bench/latency, message i starts at t0 + i/rate) sends to
# smtp-sink directly, then through sclgate (built-in classifier, 1,000-entry
# weight list, gateway_action none). Per message it times the final "." of
# DATA to the 250 (sclgate answers only after the downstream's 250, so this
# is parse + score + relay + the downstream's own answer), and the whole
# transaction. Prints p50/p90/p99 for both paths and the difference.
#
# Usage: bench/latency.sh        env: RATE_10K=200 RATE_100K=50 N_10K=4000 N_100K=1000
set -euo pipefail
source "$(dirname "$0")/lib.sh"

RATE_10K=${RATE_10K:-200}
RATE_100K=${RATE_100K:-50}
N_10K=${N_10K:-4000}
N_100K=${N_100K:-1000}

build_sclgate
go build -o "$OUT/latency" "$ROOT/bench/latency"
[[ -f $OUT/weights-1000.xml ]] || "$ROOT/bench/gen-weights.sh" "$OUT/weights-1000.xml" 1000
stamp=$(date +%Y%m%dT%H%M%S)
RUNDIR=$OUT/latency-$stamp
mkdir -p "$RUNDIR"
RES=$RUNDIR/results.txt
write_config "$RUNDIR/sclgate.yaml"
machine_info | tee "$RUNDIR/machine.txt" >&2

# run PATH SIZE RATE N REUSE
run() {
  local path=$1 size=$2 rate=$3 n=$4 reuse=$5 port=$SINK_PORT
  start_sink "$RUNDIR/sink-$path-$size-$reuse.counters"
  if [[ $path == sclgate ]]; then
    start_sclgate "$RUNDIR/sclgate.yaml" "$RUNDIR/sclgate-$size-$reuse.log"
    port=$GW_PORT
  fi
  sleep 0.5
  local l0 line
  l0=$(loadavg)
  line=$(timeout 300 "$OUT/latency" -addr "127.0.0.1:$port" -rate "$rate" -n "$n" -size "$size" -reuse "$reuse" \
    -from "$FROM" -to "$TO" -label "$path")
  echo "$line load_before=\"$l0\" load_after=\"$(loadavg)\"" | tee -a "$RES" >&2
  [[ $path == sclgate ]] && stop_pid "$GW_PID"
  stop_pid "$SINK_PID"
  sleep 1
}

for spec in "10240 $RATE_10K $N_10K 0" "10240 $RATE_10K $N_10K 10" "102400 $RATE_100K $N_100K 0" "102400 $RATE_100K $N_100K 10"; do
  read -r size rate n reuse <<<"$spec"
  run direct "$size" "$rate" "$n" "$reuse"
  run sclgate "$size" "$rate" "$n" "$reuse"
done

echo
echo "results: $RES"
# Table: per size/mode, direct vs sclgate and the added latency.
awk '
{ for (i = 1; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] } ; gsub(/"/, "", $0) }
{ key = v["size"] " " v["mode"] " " v["rate"]
  if (v["label"] == "direct") { d50[key] = v["dot_p50_us"]; d99[key] = v["dot_p99_us"]; t50[key] = v["txn_p50_us"]; t99[key] = v["txn_p99_us"] }
  else { order[++n] = key; s50[key] = v["dot_p50_us"]; s99[key] = v["dot_p99_us"]; u50[key] = v["txn_p50_us"]; u99[key] = v["txn_p99_us"]; lo[key] = v["load_before"] } }
END {
  print "| size | connection | rate msgs/s | dot→250 p50 direct | p50 sclgate | added p50 | dot→250 p99 direct | p99 sclgate | added p99 | transaction p50 direct / sclgate | transaction p99 direct / sclgate |"
  print "|---|---|---|---|---|---|---|---|---|---|---|"
  for (i = 1; i <= n; i++) { k = order[i]; split(k, f, " ")
    printf "| %d KB | %s | %s | %.2f ms | %.2f ms | **+%.2f ms** | %.2f ms | %.2f ms | **+%.2f ms** | %.2f / %.2f ms | %.2f / %.2f ms |\n",
      f[1] / 1024, f[2], f[3], d50[k] / 1000, s50[k] / 1000, (s50[k] - d50[k]) / 1000, d99[k] / 1000, s99[k] / 1000, (s99[k] - d99[k]) / 1000,
      t50[k] / 1000, u50[k] / 1000, t99[k] / 1000, u99[k] / 1000 }
}' "$RES"
