#!/usr/bin/env bash
# Peak memory of sclgate serve (built-in classifier, 1,000-entry weight
# list, relaying to smtp-sink):
#   A. 500 concurrent sessions: all connect and EHLO, stay idle IDLE seconds,
#      then all send a 10 KB message at once;
#   B. 100 concurrent 10 MB messages (limits.max_message_bytes 25 MiB).
# Reads VmHWM (peak RSS) from /proc/PID/status, a fresh sclgate per
# scenario, and samples VmRSS every 100 ms to show when the peak happens.
#
# Usage: bench/memory.sh [A|B ...]     env: IDLE=5s, plus GOGC/GOMEMLIMIT passed to sclgate as given
set -euo pipefail
source "$(dirname "$0")/lib.sh"

IDLE=${IDLE:-5s}
scen=("$@"); ((${#scen[@]})) || scen=(A B)

build_sclgate
go build -o "$OUT/memload" "$ROOT/bench/memload"
[[ -f $OUT/weights-1000.xml ]] || "$ROOT/bench/gen-weights.sh" "$OUT/weights-1000.xml" 1000
stamp=$(date +%Y%m%dT%H%M%S)
RUNDIR=$OUT/memory-$stamp
mkdir -p "$RUNDIR"
RES=$RUNDIR/results.txt
write_config "$RUNDIR/sclgate.yaml" "$OUT/weights-1000.xml" 26214400
machine_info | tee "$RUNDIR/machine.txt" >&2
echo "GOGC=${GOGC:-unset} GOMEMLIMIT=${GOMEMLIMIT:-unset}" | tee -a "$RUNDIR/machine.txt" >&2

# run NAME CONNS SIZE
run() {
  local name=$1 conns=$2 size=$3
  start_sink "$RUNDIR/sink-$name.counters"
  start_sclgate "$RUNDIR/sclgate.yaml" "$RUNDIR/sclgate-$name.log"
  sleep 1
  local base l0
  base=$(proc_rss "$GW_PID")
  l0=$(loadavg)
  # RSS samples every 100 ms while the load runs.
  (while kill -0 "$GW_PID" 2>/dev/null; do echo "$(date +%s.%N) $(proc_rss "$GW_PID")"; sleep 0.1; done) >"$RUNDIR/rss-$name.txt" &
  local sampler=$!
  STARTED_PIDS+=("$sampler")
  local idle_rss=- rc=0
  timeout 600 "$OUT/memload" -addr "127.0.0.1:$GW_PORT" -conns "$conns" -size "$size" -idle "$IDLE" -from "$FROM" -to "$TO" \
    >"$RUNDIR/memload-$name.out" 2>&1 &
  local lp=$!
  STARTED_PIDS+=("$lp")
  # RSS while every session is idle: wait for the "idle" line, then half the idle time.
  for ((i = 0; i < 600; i++)); do grep -q '^idle' "$RUNDIR/memload-$name.out" && break; sleep 0.1; done
  sleep "$(awk -v d="${IDLE%s}" 'BEGIN { print d / 2 }')"
  idle_rss=$(proc_rss "$GW_PID")
  local active
  active=$(metric sclgate_sessions_active)
  wait "$lp" || rc=$?
  local hwm relayed got
  hwm=$(proc_hwm "$GW_PID")
  relayed=$(metric sclgate_messages_relayed_total)
  sleep 0.3
  got=$(sink_mesg "$RUNDIR/sink-$name.counters")
  stop_pid "$GW_PID"
  kill "$sampler" 2>/dev/null || true
  stop_pid "$SINK_PID"
  local peak_t
  peak_t=$(sort -k2 -n "$RUNDIR/rss-$name.txt" | tail -1 | awk '{ print $2 }')
  printf 'scenario=%s conns=%s size=%s rc=%s relayed=%s sink=%s sessions_active_idle=%s rss_start_kB=%s rss_idle_kB=%s rss_sampled_max_kB=%s vmhwm_kB=%s load_before="%s" load_after="%s" %s\n' \
    "$name" "$conns" "$size" "$rc" "$relayed" "${got:-0}" "$active" "$base" "$idle_rss" "$peak_t" "$hwm" "$l0" "$(loadavg)" \
    "$(tr '\n' ' ' <"$RUNDIR/memload-$name.out")" | tee -a "$RES"
  sleep 1
}

for s in "${scen[@]}"; do
  case $s in
  A) run A-500-sessions 500 10240 ;;
  B) run B-100x10MB 100 10485760 ;;
  esac
done
echo "results: $RES"
