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
#   HEAP_PROFILE=1: run the pprof build of bench/pprof.sh instead (GW_BIN=that
#   binary) and save a heap profile every second while the load runs; the
#   largest (inuse_space) is summarised.
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
echo "sclgate environment: ${GW_ENV:-(none)}; binary ${GW_BIN:-$BIN}" | tee -a "$RUNDIR/machine.txt" >&2

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
  local heaper=""
  if [[ -n ${HEAP_PROFILE:-} ]]; then
    (i=0; while kill -0 "$GW_PID" 2>/dev/null; do curl -s -o "$RUNDIR/heap-$name-$((i++)).pprof" "http://127.0.0.1:${PPROF_PORT:-35325}/debug/pprof/heap"; sleep 1; done) &
    heaper=$!
    STARTED_PIDS+=("$heaper")
  fi
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
  [[ -n $heaper ]] && kill "$heaper" 2>/dev/null || true
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
if [[ -n ${HEAP_PROFILE:-} ]]; then
  for s in "$RUNDIR"/heap-*-0.pprof; do
    name=${s%-0.pprof}; name=${name##*/heap-}
    best=$(for f in "$RUNDIR"/heap-"$name"-*.pprof; do
      printf '%s %s\n' "$(go tool pprof -top -sample_index=inuse_space -nodecount=1 "$f" 2>/dev/null | sed -n 's/.*accounting for [^,]*, [^ ]* of \([0-9.]*\)\([kKMG]B\) total.*/\1 \2/p' | awk '{ m = ($2 == "GB") ? 1024 : ($2 == "MB") ? 1 : 1/1024; print $1 * m }')" "$f"
    done | sort -n | tail -1 | cut -d' ' -f2)
    echo "== $name: largest heap profile $best"
    go tool pprof -top -sample_index=inuse_space -nodecount=15 "$best" 2>/dev/null | sed -n '/^Showing nodes/,$p'
  done
fi
