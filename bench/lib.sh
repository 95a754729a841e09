# Shared helpers for bench/*.sh (sourced, not run). Everything listens on
# 127.0.0.1; every process started here is remembered by PID and stopped by
# PID (never by name), and every client run is wrapped in `timeout`.

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT=${OUT:-$ROOT/bench/out/perf}
mkdir -p "$OUT"

SINK_PORT=${SINK_PORT:-35025}      # smtp-sink
GW_PORT=${GW_PORT:-35125}          # sclgate serve
METRICS_PORT=${METRICS_PORT:-35225} # sclgate /metrics
FROM=${FROM:-bench@example.org}    # smtp-source -f (its default is foo@<hostname>)
TO=${TO:-rcpt@example.com}         # smtp-source -t; example.com is in accepted_domains
SUBJECT=${SUBJECT:-sclgate bench special offer}
SINK_USER=${SINK_USER:-nobody}     # smtp-sink must drop root (-u)

CLK_TCK=$(getconf CLK_TCK)
RUN_TIMEOUT=${RUN_TIMEOUT:-300}
STARTED_PIDS=()

log() { printf '%s %s\n' "$(date +%T)" "$*" >&2; }
load1() { cut -d' ' -f1 /proc/loadavg; }
loadavg() { cut -d' ' -f1-3 /proc/loadavg; }

# sclgate binary: SCLGATE_BIN, or built from commit $COMMIT (default HEAD)
# via git archive, so uncommitted edits in the work tree (other people's
# work in progress) do not leak into the figures.
COMMIT=$(git -C "$ROOT" rev-parse --short "${COMMIT:-HEAD}")
build_sclgate() {
  if [[ -n "${SCLGATE_BIN:-}" ]]; then BIN=$SCLGATE_BIN; return; fi
  BIN=$OUT/sclgate-$COMMIT
  local src=$OUT/src-$COMMIT
  if [[ ! -x $BIN ]]; then
    rm -rf "$src" && mkdir -p "$src"
    git -C "$ROOT" archive "$COMMIT" | tar -x -C "$src"
    (cd "$src" && go build -o "$BIN" ./cmd/sclgate)
  fi
  log "sclgate: $BIN (commit $COMMIT)"
}

# CPU time (user+system) of a live process, in seconds.
proc_cpu() { awk -v t="$CLK_TCK" '{ printf "%.2f", ($14 + $15) / t }' "/proc/$1/stat" 2>/dev/null || echo 0; }

# Whole-machine jiffies (all CPUs): "busy total irq+softirq steal". Busy
# includes irq+softirq: loopback TCP is processed in softirq context and
# that time is not charged to any process.
sys_cpu() { awk '/^cpu / { b = $2+$3+$4+$7+$8+$9; print b, b+$5+$6, $7+$8, $9 }' /proc/stat; }

# Peak RSS (VmHWM) in kB.
proc_hwm() { awk '/^VmHWM/ { print $2 }' "/proc/$1/status" 2>/dev/null; }
proc_rss() { awk '/^VmRSS/ { print $2 }' "/proc/$1/status" 2>/dev/null; }

port_free() { ! ss -Hltn "sport = :$1" | grep -q .; }

wait_port() { # port timeout_s
  local i
  for ((i = 0; i < $2 * 20; i++)); do
    ss -Hltn "sport = :$1" | grep -q . && return 0
    sleep 0.05
  done
  return 1
}

# start_sink COUNTERFILE [extra smtp-sink options...]: sets SINK_PID.
start_sink() {
  local counters=$1; shift
  port_free "$SINK_PORT" || { log "port $SINK_PORT busy"; return 1; }
  # -c: running counters (sess/quit/mesg), -m 1000 concurrent connections.
  timeout "${SINK_LIFETIME:-1800}" smtp-sink -c "$@" -u "$SINK_USER" -m 1000 "127.0.0.1:$SINK_PORT" 1024 >"$counters" 2>&1 &
  SINK_PID=$!
  STARTED_PIDS+=("$SINK_PID")
  wait_port "$SINK_PORT" 5 || { log "smtp-sink did not start"; return 1; }
  # The PID of smtp-sink itself (timeout is its parent).
  SINK_REAL=$(pgrep -P "$SINK_PID" -x smtp-sink || echo "$SINK_PID")
}

# Last "sess=N quit=N mesg=N" line smtp-sink -c printed.
sink_counters() { tr '\r' '\n' <"$1" | grep 'mesg=' | tail -1; }
sink_mesg() { sink_counters "$1" | sed -n 's/.*mesg=\([0-9]*\).*/\1/p'; }
sink_sess() { sink_counters "$1" | sed -n 's/.*sess=\([0-9]*\).*/\1/p'; }

# write_config FILE [weights_file] [max_message_bytes]; env CLASSIFIER
# (builtin), TRUSTED (a CIDR: its mail is relayed unfiltered, no parse or
# score), WEIGHTS_OFF=1 (no weight list), CLASSIFIER_TIMEOUT (10s).
write_config() {
  local f=$1 w=${2:-$OUT/weights-1000.xml} mmb=${3:-26214400}
  [[ -n ${WEIGHTS_OFF:-} ]] && w=""
  cat >"$f" <<EOF
listen: 127.0.0.1:$GW_PORT
hostname: bench.sclgate.test
accepted_domains: [${TO#*@}]
trusted_networks: [${TRUSTED:-}]
downstream: smtp://127.0.0.1:$SINK_PORT
limits:
  max_message_bytes: $mmb
  max_connections: 2000
  max_connections_per_ip: 1000
filter:
  classifier: ${CLASSIFIER:-builtin}
  classifier_timeout: ${CLASSIFIER_TIMEOUT:-10s}
  classifier_failure: fallback
  weights_file: "$w"
  gateway_action: none
archive:
  dir: ""
metrics:
  listen: 127.0.0.1:$METRICS_PORT
definitions:
  dir: $OUT/definitions-none
EOF
}

# start_sclgate CONFIG LOGFILE: sets GW_PID.
start_sclgate() {
  port_free "$GW_PORT" || { log "port $GW_PORT busy"; return 1; }
  env ${GW_ENV:-} "${GW_BIN:-$BIN}" serve -config "$1" 2>"$2" &
  GW_PID=$!
  STARTED_PIDS+=("$GW_PID")
  wait_port "$GW_PORT" 10 || { log "sclgate did not start:"; cat "$2" >&2; return 1; }
}

metric() { # name -> value summed over label sets
  curl -s "http://127.0.0.1:$METRICS_PORT/metrics" | awk -v n="$1" '$1 == n || index($1, n "{") == 1 { s += $2 } END { printf "%d", s }'
}

stop_pid() { # pid: SIGTERM, wait up to 10 s, then SIGKILL
  local p=$1 i
  kill -TERM "$p" 2>/dev/null || return 0
  for ((i = 0; i < 100; i++)); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$p" 2>/dev/null || true
  wait "$p" 2>/dev/null || true
}

print_header() {
  printf 'size\tsessions\tmode\tmsgs\tpath\tseconds\tmsgs_per_s\tsource_cpu_us\tsink_cpu_us\tsclgate_cpu_us\tother_cpu_pct\tsink_sessions\tload1_before\tload1_after\tsoftirq_pct\n' >"$RES"
}

# run_cell LABEL CONFIG SIZE_KB SESSIONS new|reused MSGS RUN: smtp-source
# straight to a fresh smtp-sink (CONFIG "-") or through a fresh sclgate
# started with CONFIG (binary GW_BIN or BIN, environment GW_ENV), then
# checks every message arrived and appends a row to $RES (in $RUNDIR).
run_cell() {
  local label=$1 cfg=$2 size=$3 sess=$4 mode=$5 m=$6 tag=$1-$3-$4-$5-$7
  local path=direct
  [[ $cfg != - ]] && path=sclgate
  local bytes=$((size == 10 ? 10240 : 102400)) dflag=() target port
  [[ $mode == reused ]] && dflag=(-d)
  start_sink "$RUNDIR/$tag.sink"
  port=$SINK_PORT
  local gw0=0
  if [[ $path == sclgate ]]; then
    start_sclgate "$cfg" "$RUNDIR/$tag.sclgate.log"
    port=$GW_PORT
    gw0=$(proc_cpu "$GW_PID")
  fi
  sleep 0.5
  local l0 sk0 sys0 t0 t1 sys1 sk1 gw1 l1 rc=0
  l0=$(load1)
  sk0=$(proc_cpu "$SINK_REAL")
  [[ $path == sclgate ]] && gw0=$(proc_cpu "$GW_PID")
  sys0=$(sys_cpu)
  t0=$(date +%s.%N)
  /usr/bin/time -f '%U %S' -o "$RUNDIR/$tag.time" \
    timeout "$RUN_TIMEOUT" smtp-source "${dflag[@]}" -s "$sess" -m "$m" -l "$bytes" -S "$SUBJECT" \
    -f "$FROM" -t "$TO" "127.0.0.1:$port" >"$RUNDIR/$tag.source" 2>&1 || rc=$?
  t1=$(date +%s.%N)
  sys1=$(sys_cpu)
  sk1=$(proc_cpu "$SINK_REAL")
  local gw1=$gw0 relayed=-
  if [[ $path == sclgate ]]; then
    gw1=$(proc_cpu "$GW_PID")
    relayed=$(metric sclgate_messages_relayed_total)
  fi
  l1=$(load1)
  sleep 0.3
  local got sinksess
  got=$(sink_mesg "$RUNDIR/$tag.sink"); sinksess=$(sink_sess "$RUNDIR/$tag.sink")
  [[ $path == sclgate ]] && stop_pid "$GW_PID"
  stop_pid "$SINK_PID"
  if ((rc != 0)) || [[ "$got" != "$m" ]] || [[ $path == sclgate && "$relayed" != "$m" ]]; then
    log "FAILED $tag: smtp-source rc=$rc, sink counted ${got:-0} of $m, sclgate relayed $relayed"
    tail -5 "$RUNDIR/$tag.source" >&2
    return 1
  fi
  local src_cpu secs
  src_cpu=$(awk '{ print $1 + $2 }' "$RUNDIR/$tag.time")
  secs=$(echo "$t1 - $t0" | bc -l)
  # Other users' CPU: machine busy time minus irq/softirq (mostly our own
  # loopback TCP) minus what source, sink and sclgate used, as a share of
  # the machine (all CPUs) over the run; and the irq/softirq share itself.
  local other softirq
  read -r other softirq < <(awk -v a="$sys0" -v b="$sys1" -v own="$(echo "$src_cpu + $sk1 - $sk0 + $gw1 - $gw0" | bc -l)" -v t="$CLK_TCK" 'BEGIN {
    split(a, x, " "); split(b, y, " "); busy = (y[1] - x[1]) / t; tot = (y[2] - x[2]) / t; si = (y[3] - x[3]) / t
    o = busy - si - own; if (o < 0) o = 0; printf "%.0f %.0f\n", 100 * o / tot, 100 * si / tot }')
  printf '%s\t%s\t%s\t%s\t%s\t%.2f\t%.0f\t%.0f\t%.0f\t%.0f\t%s\t%s\t%s\t%s\t%s\n' "${size}k" "$sess" "$mode" "$m" "$label" "$secs" \
    "$(echo "$m / $secs" | bc -l)" "$(echo "$src_cpu * 1000000 / $m" | bc -l)" "$(echo "($sk1 - $sk0) * 1000000 / $m" | bc -l)" \
    "$(echo "($gw1 - $gw0) * 1000000 / $m" | bc -l)" "$other" "$sinksess" "$l0" "$l1" "$softirq" >>"$RES"
  log "$(tail -1 "$RES" | tr '\t' ' ')"
  if awk -v s="$secs" 'BEGIN { exit !(s < 5) }'; then log "note: $tag ran ${secs}s (< 5 s); raise the message count"; fi
}

cleanup() {
  local p
  for p in "${STARTED_PIDS[@]}"; do stop_pid "$p"; done
  STARTED_PIDS=()
}
trap cleanup EXIT

machine_info() {
  echo "host: $(nproc) CPUs, $(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo), $(awk '/MemTotal/ { printf "%.0f GiB", $2/1048576 }' /proc/meminfo), $(uname -sr)"
  echo "go: $(go version | cut -d' ' -f3-)"
  echo "commit: $COMMIT ($(git -C "$ROOT" log -1 --format=%s "$COMMIT" | cut -c1-60))${SCLGATE_BIN:+, binary $SCLGATE_BIN}"
  echo "postfix smtp-sink/smtp-source: $(dpkg-query -W -f '${Version}' postfix 2>/dev/null)"
}
