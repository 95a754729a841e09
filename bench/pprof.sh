#!/usr/bin/env bash
# Where sclgate's CPU per message goes in the serve path.
#
# 1. Builds a bench-only sclgate from $COMMIT (default HEAD) with bench/pprof/pprof_overlay.go
#    added at build time (go build -overlay -tags sclgatepprof): the same
#    code plus net/http/pprof on 127.0.0.1:$PPROF_PORT. No repository Go file
#    is changed.
# 2. Runs smtp-source → sclgate → smtp-sink for one cell (default 10 KB, 10
#    sessions, new connection per message) and meanwhile takes a CPU profile
#    (pprof, PROFILE_SECONDS) and an allocation profile, and, when `perf` is
#    installed, a system-wide-for-this-PID perf profile with call graphs
#    (kernel time included: TCP over loopback, syscalls).
# 3. Prints pprof -top for flat and cumulative time, and the perf summary.
#
# Usage: bench/pprof.sh [SIZE_BYTES] [SESSIONS] [new|reused] [MSGS]
#   env: COMMIT (default HEAD), PPROF_SRC (a source tree to build instead),
#        PROFILE_SECONDS=10
set -euo pipefail
source "$(dirname "$0")/lib.sh"

BYTES=${1:-10240}
SESS=${2:-10}
MODE=${3:-new}
MSGS=${4:-30000}
PPROF_PORT=${PPROF_PORT:-35325}
PROFILE_SECONDS=${PROFILE_SECONDS:-10}

stamp=$(date +%Y%m%dT%H%M%S)
P=$OUT/pprof-$stamp
mkdir -p "$P"

# Bench build with the pprof overlay.
# PPROF_SRC: build from that source tree instead (e.g. a prototype).
if [[ -n ${PPROF_SRC:-} ]]; then
  src=$(cd "$PPROF_SRC" && pwd)
else
  src=$OUT/src-pprof-$COMMIT
  rm -rf "$src" && mkdir -p "$src"
  git -C "$ROOT" archive "$COMMIT" | tar -x -C "$src"
fi
printf '{"Replace":{"%s":"%s"}}\n' "$src/cmd/sclgate/zz_pprof_overlay.go" "$ROOT/bench/pprof/pprof_overlay.go" >"$P/overlay.json"
(cd "$src" && go build -tags sclgatepprof -overlay "$P/overlay.json" -o "$P/sclgate-pprof" ./cmd/sclgate)
BIN=$P/sclgate-pprof
{ machine_info; echo "source tree: $src"; } | tee "$P/machine.txt" >&2
[[ -f $OUT/weights-1000.xml ]] || "$ROOT/bench/gen-weights.sh" "$OUT/weights-1000.xml" 1000
write_config "$P/sclgate.yaml"

start_sink "$P/sink.counters"
SCLGATE_PPROF=127.0.0.1:$PPROF_PORT start_sclgate "$P/sclgate.yaml" "$P/sclgate.log"
dflag=(); [[ $MODE == reused ]] && dflag=(-d)
log "load before: $(loadavg)"
timeout 300 smtp-source "${dflag[@]}" -s "$SESS" -m "$MSGS" -l "$BYTES" -S "$SUBJECT" -f "$FROM" -t "$TO" "127.0.0.1:$GW_PORT" >"$P/source.out" 2>&1 &
SRC_PID=$!
STARTED_PIDS+=("$SRC_PID")
sleep 1 # past start-up
m0=$(metric sclgate_messages_relayed_total); c0=$(proc_cpu "$GW_PID")
curl -s -o "$P/allocs0.pprof" "http://127.0.0.1:$PPROF_PORT/debug/pprof/allocs"
curl -s -o "$P/cpu.pprof" "http://127.0.0.1:$PPROF_PORT/debug/pprof/profile?seconds=$PROFILE_SECONDS" &
CURL_PID=$!
if command -v perf >/dev/null; then
  timeout $((PROFILE_SECONDS + 20)) perf record -q -F 999 -g -p "$GW_PID" -o "$P/perf.data" -- sleep "$PROFILE_SECONDS" 2>"$P/perf.err" || true
fi
wait "$CURL_PID"
m1=$(metric sclgate_messages_relayed_total); c1=$(proc_cpu "$GW_PID")
curl -s -o "$P/allocs1.pprof" "http://127.0.0.1:$PPROF_PORT/debug/pprof/allocs"
log "load after: $(loadavg)"
wait "$SRC_PID" || log "smtp-source ended with $?"
msgs=$((m1 - m0))
echo "profiled window: $msgs messages relayed, sclgate CPU $(echo "$c1 - $c0" | bc) s = $(echo "($c1 - $c0) * 1000000 / $msgs" | bc) µs/msg (pprof and perf both attached: a few % overhead)" | tee "$P/summary.txt"

{
  echo "== pprof CPU, flat =="
  go tool pprof -top -nodecount=40 "$BIN" "$P/cpu.pprof" 2>/dev/null
  echo "== pprof CPU, cumulative =="
  go tool pprof -top -cum -nodecount=60 "$BIN" "$P/cpu.pprof" 2>/dev/null
  echo "== allocations during the window (alloc_space) =="
  go tool pprof -top -sample_index=alloc_space -base "$P/allocs0.pprof" -nodecount=25 "$BIN" "$P/allocs1.pprof" 2>/dev/null
  if [[ -f $P/perf.data ]]; then
    echo "== perf: by DSO (user vs kernel) =="
    perf report -i "$P/perf.data" --no-children --sort dso --stdio -g none 2>/dev/null | grep -v '^#' | grep -v '^$' | head -15 || true
    echo "== perf: top symbols, self =="
    perf report -i "$P/perf.data" --no-children --sort sym --stdio -g none 2>/dev/null | grep -v '^#' | grep -v '^$' | head -45 || true
  fi
} | tee "$P/report.txt"
echo "profile files: $P (go tool pprof -http=127.0.0.1:8080 $BIN $P/cpu.pprof)"
