#!/usr/bin/env bash
# sclgate against its peers on the same messages: one fixed subset of the
# TEST split (the first N ham + N spam by sorted file name) goes through six
# paths, one after the other, and one table gives for each path the wall
# time, msgs/s and the server side's CPU seconds per message (utime+stime of
# every process of the server side, children and reaped children included,
# read from /proc/PID/stat before and after):
#
#   1. sclgate scan FILES...                     (built-in classifier)
#   2. spamc → spamd                             (SpamAssassin 4 + Bayes)
#   3. rspamc → rspamd                           (one normal worker)
#   4. SMTP → sclgate serve (builtin)            → smtp-sink
#   5. SMTP → sclgate serve (spamd://…)  → spamd, → smtp-sink
#   6. SMTP → sclgate serve (rspamd://…) → rspamd, → smtp-sink
#
# Server side: 1 sclgate; 2 spamd (parent + its preforked child); 3 rspamd
# (main + workers); 4 sclgate; 5 sclgate + spamd; 6 sclgate + rspamd. The
# clients (spamc, rspamc, bench/corpussend) and smtp-sink are not counted;
# the sink's CPU is shown apart. For 4–6 every message must reach the sink,
# sclgate must count every one relayed and scanned, and
# sclgate_classifier_errors_total must stay 0 (no silent fallback to the
# built-in model); for 5, spamd must log one result per message.
#
# Engines as in scorer/spamd_test.go and scorer/rspamd_test.go, on 127.0.0.1
# with nothing looked up on the network: spamd -L, one child (children run as
# nobody), network tests off, Bayes trained on corpus/train as in
# bench/sa-compare.sh (its bench/out/sa Bayes DB is copied when it holds the
# whole TRAIN split); rspamd with the stock configuration, one normal worker,
# the DNS-using and Redis-needing modules off (so no Bayes: it needs Redis).
# sclgate serve: gateway_action none, no weight list, classifier_timeout 30s.
#
# Messages: corpus/test/{ham,spam} (scripts/corpus.sh is run when corpus/ is
# missing), sorted by name; files with a bare CR or a NUL are skipped (an
# SMTP gateway refuses them: SMTP smuggling), and the leading mbox "From "
# line is removed (it is not part of the message; over SMTP it would be
# sent as a header line). The resulting copies, in $OUT/msgs/, are what
# every path reads.
#
# Usage: bench/peers.sh
#   env: N=300 (ham and spam each), CONC=4 (parallel SMTP connections of
#        bench/corpussend and rspamc -n), RUN_TIMEOUT=900 (per path),
#        OUT=bench/out/peers, SCLGATE_BIN (default: built from HEAD via git
#        archive into $OUT), ports SINK_PORT=37025 GW_PORT=37125
#        METRICS_PORT=37225 SPAMD_PORT=37325 RSPAMD_PORT=37425 and
#        DNS_PORT=37525 (a UDP port nothing listens on: rspamd's resolver).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
export OUT=${OUT:-$here/out/peers}
SINK_PORT=${SINK_PORT:-37025}
GW_PORT=${GW_PORT:-37125}
METRICS_PORT=${METRICS_PORT:-37225}
SPAMD_PORT=${SPAMD_PORT:-37325}
RSPAMD_PORT=${RSPAMD_PORT:-37425}
DNS_PORT=${DNS_PORT:-37525}
RUN_TIMEOUT=${RUN_TIMEOUT:-900}
SINK_LIFETIME=${SINK_LIFETIME:-1200}
ENGINE_LIFETIME=${ENGINE_LIFETIME:-3600}
N=${N:-300}
CONC=${CONC:-4}
source "$here/lib.sh"
cd "$ROOT"

die() { log "FAILED: $*"; exit 1; }
trap 'log "FAILED: line $LINENO: ${BASH_COMMAND%%$'\n'*} (exit $?)"' ERR

# --- CPU of a process tree ----------------------------------------------------
# Ticks (utime+stime+cutime+cstime) of one process: its own CPU and that of
# its children it has reaped (spamd's children exit after 200 connections).
ticks1() { sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null | awk '{ print $12 + $13 + $14 + $15 }' || echo 0; }
tree_pids() {
  local c
  echo "$1"
  for c in $(ps -o pid= --ppid "$1" 2>/dev/null); do tree_pids "$c"; done
}
# Seconds of CPU of a process and all its live descendants.
tree_cpu() {
  local p t=0 v
  for p in $(tree_pids "$1"); do v=$(ticks1 "$p"); t=$((t + ${v:-0})); done
  awk -v t="$t" -v h="$CLK_TCK" 'BEGIN { printf "%.2f", t / h }'
}
fsub() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a - b }'; }
now() { date +%s.%N; }

# Engines run under `timeout` (bounded lifetime), which puts itself at the
# head of a new process group: stopping is SIGTERM to that PID (timeout
# passes it to the group), then SIGKILL to the group (PGID = that PID).
ENGINE_PIDS=()
stop_engine() {
  local p=$1 i
  kill -TERM "$p" 2>/dev/null || return 0
  for ((i = 0; i < 150; i++)); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
  kill -KILL -- "-$p" 2>/dev/null || true
  wait "$p" 2>/dev/null || true
}
peers_cleanup() {
  local p
  for p in "${ENGINE_PIDS[@]}"; do stop_engine "$p"; done
  ENGINE_PIDS=()
  cleanup
}
trap peers_cleanup EXIT
trap 'exit 130' INT TERM

for p in "$SINK_PORT" "$GW_PORT" "$METRICS_PORT" "$SPAMD_PORT" "$RSPAMD_PORT"; do
  port_free "$p" || die "port $p is in use"
done
for c in python3 go curl smtp-sink spamc rspamc rspamd sa-learn; do
  command -v "$c" >/dev/null || [[ -x /usr/sbin/$c ]] || die "$c is needed"
done
SPAMD=$(command -v spamd || echo /usr/sbin/spamd)
[[ -x $SPAMD ]] || die "spamd is needed (Debian packages spamassassin spamc)"
[[ -f /etc/rspamd/rspamd.conf ]] || die "rspamd's stock configuration is missing"

stamp=$(date +%Y%m%dT%H%M%S)
RUN=$OUT/run-$stamp
mkdir -p "$RUN"
RES=$RUN/results.tsv
: >"$RES"

# --- messages ------------------------------------------------------------------
if [[ ! -d corpus/test/ham || ! -d corpus/test/spam || ! -d corpus/train/ham || ! -d corpus/train/spam ]]; then
  log "corpus missing: scripts/corpus.sh"
  scripts/corpus.sh
fi
MSGS=$OUT/msgs
# scripts/corpus.sh re-lays corpus/{train,test} out from scratch: retry
# (bounded) when the directories are momentarily short.
ok=0
for try in $(seq 1 30); do
  if python3 - "$N" "$MSGS" <<'PY'
import os, shutil, sys
n, dst = int(sys.argv[1]), sys.argv[2]
shutil.rmtree(dst, ignore_errors=True)
skipped = []
for cls in ("ham", "spam"):
    src = os.path.join("corpus/test", cls)
    os.makedirs(os.path.join(dst, cls))
    names = sorted(os.listdir(src))
    if len(names) < n:
        sys.exit(1)
    took = 0
    for name in names:
        if took == n:
            break
        b = open(os.path.join(src, name), "rb").read()
        if b"\0" in b or b.replace(b"\r\n", b"").count(b"\r"):
            skipped.append(cls + "/" + name)
            continue
        if b.startswith(b"From "):
            b = b[b.index(b"\n") + 1:] if b"\n" in b else b""
        open(os.path.join(dst, cls, name), "wb").write(b)
        took += 1
    if took < n:
        sys.exit(1)
with open(os.path.join(dst, "skipped.txt"), "w") as w:
    w.write("".join(s + "\n" for s in skipped))
PY
  then ok=1; break; fi
  log "corpus/test is short or being re-laid out (try $try): waiting"
  sleep 5
done
((ok)) || die "could not copy $N ham + $N spam from corpus/test"
find "$MSGS/ham" "$MSGS/spam" -type f | sort >"$RUN/files.txt"
mapfile -t FILES <"$RUN/files.txt"
NMSG=${#FILES[@]}
NSKIP=$(wc -l <"$MSGS/skipped.txt")
BYTES=$(cat "${FILES[@]}" | wc -c)
log "messages: $NMSG ($N ham + $N spam, $BYTES bytes; skipped for a bare CR or NUL: $NSKIP)"
chmod -R a+rX "$MSGS"

# --- binaries --------------------------------------------------------------------
build_sclgate
SEND=$OUT/corpussend
(cd "$ROOT" && go build -o "$SEND" ./bench/corpussend) || die "go build ./bench/corpussend"

machine_info | tee "$RUN/machine.txt" >&2

# --- result rows -------------------------------------------------------------------
# row NUM PATH WALL SERVER_CPU BREAKDOWN L0 L1
row() {
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$NMSG" "$3" "$4" "$5" "$6" "$7" >>"$RES"
  log "row: $(tail -1 "$RES" | tr '\t' '|')"
}

# ============================================================================
# 1. sclgate scan
# ============================================================================
log "1. sclgate scan: $NMSG files (load $(loadavg))"
l0=$(load1)
t0=$(now)
/usr/bin/time -f '%U %S' -o "$RUN/scan.time" timeout "$RUN_TIMEOUT" "$BIN" scan -json "${FILES[@]}" \
  >"$RUN/scan.jsonl" 2>"$RUN/scan.err" || { cat "$RUN/scan.err" >&2; die "sclgate scan"; }
t1=$(now)
l1=$(load1)
got=$(grep -c '"classifier":"builtin"' "$RUN/scan.jsonl" || true)
[[ $got == "$NMSG" ]] || die "sclgate scan: $got builtin results for $NMSG files"
scan_cpu=$(awk '{ printf "%.2f", $1 + $2 }' "$RUN/scan.time")
# Start-up alone (loading the built-in definitions), for the notes.
/usr/bin/time -f '%U %S' -o "$RUN/scan1.time" timeout 60 "$BIN" scan -json "${FILES[0]}" >/dev/null 2>&1 || die "sclgate scan (1 file)"
SCAN_STARTUP=$(awk '{ printf "%.2f", $1 + $2 }' "$RUN/scan1.time")
row 1 "sclgate scan (built-in)" "$(fsub "$t1" "$t0")" "$scan_cpu" "sclgate $scan_cpu (incl. start-up)" "$l0" "$l1"

# ============================================================================
# sclgate serve paths (4, 5, 6)
# ============================================================================
# serve_path NUM LABEL CLASSIFIER ENGINE_PID ENGINE_NAME
serve_path() {
  local num=$1 label=$2 cls=$3 epid=${4:-} ename=${5:-} tag=path$1
  WEIGHTS_OFF=1 TRUSTED="" CLASSIFIER=$cls CLASSIFIER_TIMEOUT=30s write_config "$RUN/$tag.yaml"
  "$BIN" serve -config "$RUN/$tag.yaml" -check >&2 || die "$tag: config"
  start_sink "$RUN/$tag.sink" || die "$tag: smtp-sink"
  start_sclgate "$RUN/$tag.yaml" "$RUN/$tag.sclgate.log" || die "$tag: sclgate serve"
  sleep 0.5
  local spamd_lines0=0
  [[ $ename == spamd ]] && spamd_lines0=$(grep -c 'spamd: result:' "$SA/spamd.log" || true)
  local l0 l1 t0 t1 gw0 gw1 e0=0 e1=0 sk0 sk1 rc=0
  log "$num. $label: $NMSG messages over $CONC connections (load $(loadavg))"
  l0=$(load1)
  gw0=$(tree_cpu "$GW_PID")
  [[ -n $epid ]] && e0=$(tree_cpu "$epid")
  sk0=$(tree_cpu "$SINK_REAL")
  t0=$(now)
  timeout "$RUN_TIMEOUT" "$SEND" -addr "127.0.0.1:$GW_PORT" -c "$CONC" -list "$RUN/files.txt" \
    -from "$FROM" -to "$TO" -timeout 120s >"$RUN/$tag.send" 2>&1 || rc=$?
  t1=$(now)
  sleep 1 # spamd reaps its child after the last connection
  gw1=$(tree_cpu "$GW_PID")
  [[ -n $epid ]] && e1=$(tree_cpu "$epid")
  sk1=$(tree_cpu "$SINK_REAL")
  l1=$(load1)
  local relayed scanned errs got spamd_lines=-
  relayed=$(metric sclgate_messages_relayed_total)
  scanned=$(metric sclgate_messages_scanned_total)
  errs=$(metric sclgate_classifier_errors_total)
  got=$(sink_mesg "$RUN/$tag.sink")
  [[ $ename == spamd ]] && spamd_lines=$(($(grep -c 'spamd: result:' "$SA/spamd.log" || true) - spamd_lines0))
  stop_pid "$GW_PID"
  stop_pid "$SINK_PID"
  cat "$RUN/$tag.send" >&2
  log "$tag: corpussend rc=$rc, sink counted ${got:-0}, sclgate relayed $relayed scanned $scanned, classifier errors $errs, spamd results $spamd_lines"
  if ((rc != 0)) || [[ ${got:-0} != "$NMSG" || $relayed != "$NMSG" || $scanned != "$NMSG" || $errs != 0 ]] ||
     [[ $ename == spamd && $spamd_lines != "$NMSG" ]]; then
    die "$tag: not every message went through the $label path"
  fi
  local gw e srv brk
  gw=$(fsub "$gw1" "$gw0")
  e=$(fsub "$e1" "$e0")
  srv=$(awk -v a="$gw" -v b="$e" 'BEGIN { printf "%.2f", a + b }')
  brk="sclgate $gw"
  [[ -n $ename ]] && brk="$brk + $ename $e"
  brk="$brk (smtp-sink $(fsub "$sk1" "$sk0"))"
  row "$num" "$label" "$(fsub "$t1" "$t0")" "$srv" "$brk" "$l0" "$l1"
}

serve_path 4 "SMTP → sclgate serve (built-in) → smtp-sink" builtin

# ============================================================================
# spamd: 2 and 5
# ============================================================================
SA=$OUT/sa
chmod -R u+w "$SA" 2>/dev/null || true
rm -rf "$SA"
mkdir -p "$SA/site" "$SA/bayes" "$SA/home"
cp /etc/spamassassin/*.pre "$SA/site/"
[[ -f /etc/spamassassin/65_debian.cf ]] && cp /etc/spamassassin/65_debian.cf "$SA/site/"
cat >"$SA/site/local.cf" <<EOF
# bench/peers.sh: SpamAssassin with Bayes, network tests off (as bench/sa-compare.sh).
required_score 5.0
use_bayes 1
bayes_auto_learn 0
bayes_auto_expire 0
bayes_path $SA/bayes/bayes
skip_rbl_checks 1
use_razor2 0
use_pyzor 0
dns_available no
EOF
as_user=() spamd_user=()
if [[ $(id -u) == 0 ]]; then
  spamd_user=(--username=nobody)
  as_user=(runuser -u nobody --)
fi
want_ham=$(find -L corpus/train/ham -type f | wc -l)
want_spam=$(find -L corpus/train/spam -type f | wc -l)
bayes_counts() {
  "${as_user[@]}" env HOME="$SA/home" timeout 120 sa-learn --siteconfigpath "$SA/site" --dbpath "$SA/bayes" --dump magic 2>/dev/null |
    awk '/non-token data: nham/ { h = $3 } /non-token data: nspam/ { s = $3 } END { print h + 0, s + 0 }'
}
reused=no
if [[ -f $ROOT/bench/out/sa/bayes/bayes_toks ]]; then
  cp -a "$ROOT/bench/out/sa/bayes/." "$SA/bayes/"
  chmod -R a+rX "$SA"
  [[ $(id -u) == 0 ]] && chown -R nobody:nogroup "$SA/bayes" "$SA/home"
  if [[ "$(bayes_counts)" == "$want_ham $want_spam" ]]; then
    reused=yes
  else
    log "bench/out/sa Bayes DB is not the whole TRAIN split: training a new one"
    rm -rf "${SA:?}/bayes" && mkdir -p "$SA/bayes"
  fi
fi
chmod -R a+rX "$SA"
[[ $(id -u) == 0 ]] && chown -R nobody:nogroup "$SA/bayes" "$SA/home"
if [[ $reused == no ]]; then
  log "sa-learn: Bayes on corpus/train ($want_ham ham, $want_spam spam)"
  mkdir -p "$SA/train"
  cp -RL corpus/train/ham corpus/train/spam "$SA/train/"
  chmod -R a+rX "$SA/train"
  for cls in ham spam; do
    "${as_user[@]}" env HOME="$SA/home" timeout 1200 sa-learn --siteconfigpath "$SA/site" --dbpath "$SA/bayes" \
      --no-sync "--$cls" "$SA/train/$cls" >"$SA/learn-$cls.log" 2>&1 || { cat "$SA/learn-$cls.log" >&2; die "sa-learn --$cls"; }
  done
  "${as_user[@]}" env HOME="$SA/home" timeout 600 sa-learn --siteconfigpath "$SA/site" --dbpath "$SA/bayes" --sync >/dev/null 2>&1 ||
    die "sa-learn --sync"
  [[ "$(bayes_counts)" == "$want_ham $want_spam" ]] || die "Bayes does not hold the TRAIN split"
fi
log "Bayes: $(bayes_counts) (ham spam; reused bench/out/sa: $reused)"

log "spamd on 127.0.0.1:$SPAMD_PORT (1 child)"
timeout "$ENGINE_LIFETIME" env HOME="$SA/home" "$SPAMD" -L --listen="127.0.0.1:$SPAMD_PORT" --max-children=1 --min-children=1 \
  --max-conn-per-child=200 --siteconfigpath "$SA/site" --nouser-config "${spamd_user[@]}" \
  --syslog=stderr >"$SA/spamd.log" 2>&1 &
SPAMD_PID=$!
ENGINE_PIDS+=("$SPAMD_PID")
ready=0
for _ in $(seq 1 240); do
  kill -0 "$SPAMD_PID" 2>/dev/null || { cat "$SA/spamd.log" >&2; die "spamd exited"; }
  if timeout 10 spamc -d 127.0.0.1 -p "$SPAMD_PORT" -K >/dev/null 2>&1; then ready=1; break; fi
  sleep 0.5
done
((ready)) || { cat "$SA/spamd.log" >&2; die "spamd not ready"; }
# Warm-up (not timed) and a check that Bayes is live.
warm=$(find -L corpus/train/spam -type f -print -quit)
timeout 60 spamc -d 127.0.0.1 -p "$SPAMD_PORT" -y <"$warm" >"$SA/warmup.txt" || true
grep -q 'BAYES_' "$SA/warmup.txt" || { cat "$SA/warmup.txt" "$SA/spamd.log" >&2; die "no BAYES_ rule from spamd"; }
sleep 1

log "2. spamc → spamd: $NMSG messages, one at a time (load $(loadavg))"
l0=$(load1)
e0=$(tree_cpu "$SPAMD_PID")
: >"$RUN/spamc.out"
t0=$(now)
# SYMBOLS (-y), the command sclgate's spamd client sends; -x: no report is an error.
for f in "${FILES[@]}"; do
  timeout 120 spamc -d 127.0.0.1 -p "$SPAMD_PORT" -t 110 -x -y <"$f" >>"$RUN/spamc.out" || die "spamc failed on $f"
  echo >>"$RUN/spamc.out"
done
t1=$(now)
sleep 1
e1=$(tree_cpu "$SPAMD_PID")
l1=$(load1)
e=$(fsub "$e1" "$e0")
row 2 "spamc → spamd" "$(fsub "$t1" "$t0")" "$e" "spamd $e" "$l0" "$l1"

serve_path 5 "SMTP → sclgate serve (spamd://) → smtp-sink" "spamd://127.0.0.1:$SPAMD_PORT" "$SPAMD_PID" spamd
stop_engine "$SPAMD_PID"
ENGINE_PIDS=()

# ============================================================================
# rspamd: 3 and 6
# ============================================================================
RS=$OUT/rspamd
rm -rf "$RS"
mkdir -p "$RS/conf/local.d" "$RS/conf/override.d" "$RS/db" "$RS/run" "$RS/log"
HS=${RSPAMD_HS_CACHE:-$HOME/.cache/sclgate-test/rspamd-hs} # the tests' cache of compiled Hyperscan DBs
mkdir -p "$HS" 2>/dev/null || HS=$RS/db
printf 'bind_socket = "127.0.0.1:%s";\ncount = 1;\n' "$RSPAMD_PORT" >"$RS/conf/override.d/worker-normal.inc"
for w in controller proxy fuzzy; do echo 'count = -1;' >"$RS/conf/override.d/worker-$w.inc"; done
printf 'dns {\n  nameserver = ["127.0.0.1:%s"];\n  timeout = 200ms;\n  retransmits = 1;\n}\nhs_cache_dir = "%s";\n' \
  "$DNS_PORT" "$HS" >"$RS/conf/override.d/options.inc"
printf 'type = "console";\nlevel = "warning";\n' >"$RS/conf/override.d/logging.inc"
# The modules scorer/rspamd_test.go turns off (DNS, HTTP maps, Redis).
for m in rbl surbl emails dkim spf dmarc arc asn fuzzy_check once_received mx_check hfilter phishing \
  rspamd_update multimap whitelist mid mime_types url_redirector dkim_signing bimi reputation replies \
  neural ratelimit greylist history_redis; do
  echo 'enabled = false;' >"$RS/conf/override.d/$m.conf"
done
insecure=()
[[ $(id -u) == 0 ]] && insecure=(--insecure)
log "rspamd on 127.0.0.1:$RSPAMD_PORT (1 normal worker)"
timeout "$ENGINE_LIFETIME" rspamd -f -c /etc/rspamd/rspamd.conf --var=LOCAL_CONFDIR="$RS/conf" --var=DBDIR="$RS/db" \
  --var=RUNDIR="$RS/run" --var=LOGDIR="$RS/log" "${insecure[@]}" >"$RS/rspamd.log" 2>&1 &
RSPAMD_PID=$!
ENGINE_PIDS+=("$RSPAMD_PID")
ready=0
for _ in $(seq 1 600); do
  kill -0 "$RSPAMD_PID" 2>/dev/null || { cat "$RS/rspamd.log" >&2; die "rspamd exited"; }
  if [[ $(curl -s -m 5 "http://127.0.0.1:$RSPAMD_PORT/ping" 2>/dev/null) == pong* ]]; then ready=1; break; fi
  sleep 0.2
done
((ready)) || { cat "$RS/rspamd.log" >&2; die "rspamd not ready"; }
# Warm-up (not timed); then wait (bounded) until rspamd is idle: on a
# first run it compiles its Hyperscan databases in the background.
timeout 60 rspamc -h "127.0.0.1:$RSPAMD_PORT" -t 50 "${FILES[0]}" "${FILES[-1]}" >"$RS/warmup.txt" 2>&1 ||
  { cat "$RS/warmup.txt" >&2; die "rspamc warm-up"; }
for _ in $(seq 1 120); do
  a=$(tree_cpu "$RSPAMD_PID"); sleep 1; b=$(tree_cpu "$RSPAMD_PID")
  awk -v d="$(fsub "$b" "$a")" 'BEGIN { exit !(d < 0.05) }' && break
done

log "3. rspamc → rspamd: $NMSG messages, rspamc -n $CONC (load $(loadavg))"
l0=$(load1)
e0=$(tree_cpu "$RSPAMD_PID")
t0=$(now)
timeout "$RUN_TIMEOUT" rspamc -h "127.0.0.1:$RSPAMD_PORT" -n "$CONC" -t 110 "${FILES[@]}" >"$RUN/rspamc.out" 2>&1 ||
  { tail -20 "$RUN/rspamc.out" >&2; die "rspamc"; }
t1=$(now)
sleep 1
e1=$(tree_cpu "$RSPAMD_PID")
l1=$(load1)
got=$(grep -c '^Results for file:' "$RUN/rspamc.out" || true)
actions=$(grep -c '^Action:' "$RUN/rspamc.out" || true)
[[ $got == "$NMSG" && $actions == "$NMSG" ]] || { tail -20 "$RUN/rspamc.out" >&2; die "rspamc: $got results, $actions actions for $NMSG files"; }
e=$(fsub "$e1" "$e0")
row 3 "rspamc → rspamd" "$(fsub "$t1" "$t0")" "$e" "rspamd $e" "$l0" "$l1"

serve_path 6 "SMTP → sclgate serve (rspamd://) → smtp-sink" "rspamd://127.0.0.1:$RSPAMD_PORT" "$RSPAMD_PID" rspamd
stop_engine "$RSPAMD_PID"
ENGINE_PIDS=()

# ============================================================================
# the table
# ============================================================================
{
  echo "| # | path | messages | wall s | msgs/s | server CPU s | CPU ms/msg | server CPU by process, s | load1 before → after |"
  echo "|---|---|---|---|---|---|---|---|---|"
  sort -n "$RES" | awk -F'\t' '{ printf "| %s | %s | %d | %.2f | %.1f | %.2f | %.2f | %s | %s → %s |\n", $1, $2, $3, $4, $3 / $4, $5, 1000 * $5 / $3, $6, $7, $8 }'
  echo
  echo "Messages: the first $N ham + $N spam of corpus/test by file name ($BYTES bytes; $NSKIP skipped for a bare CR or NUL; mbox From_ line removed)."
  echo "Clients: 1 one process for all files; 2 one spamc per message, one at a time (SYMBOLS); 3 one rspamc, -n $CONC; 4–6 bench/corpussend, $CONC connections, reused."
  echo "sclgate scan start-up alone (one file): $SCAN_STARTUP s CPU, included in row 1. Engines: spamd 1 child (max-conn-per-child 200), Bayes $(bayes_counts | tr ' ' '/') ham/spam; rspamd 1 normal worker, no Bayes."
  echo
  cat "$RUN/machine.txt"
  echo "spamassassin: $("$SPAMD" --version | head -1 | sed 's/.*version //'); rspamd: $(rspamd --version 2>/dev/null | sed -n 's/.*version //p' | head -1)"
} | tee "$RUN/table.md"
log "done: $RUN"
