#!/usr/bin/env bash
# Compares sclgate's built-in model with SpamAssassin 4 (Debian package, Bayes
# trained on the same TRAIN split, network tests off) on the TEST split, at
# equal ham false-positive rate. Run from anywhere inside a clone:
#
#   bench/sa-compare.sh
#
# Writes to bench/out/ (git-ignored):
#   bench/out/sa/                     private SA site config, Bayes DB, spamd log
#   bench/out/sa-scores.tsv           file, class, SA score (3 decimals), spamc's
#                                     rounded score, rules hit with their points
#   bench/out/sa-rules.tsv            SA rules hit: points, ham and spam hits
#   bench/out/sclgate-scan.jsonl      raw "sclgate scan -json" output
#   bench/out/sclgate-scores.tsv      file, class, spam probability, SCL
#   bench/out/timing.json             wall and CPU seconds of both runs
#   bench/out/table.md                the table also printed to stdout
#   bench/out/sa-compare-corpus/      frozen copy (hard links) of corpus/{train,test}
#   bench/out/sa-compare-src/         the sclgate source that was built
#   bench/out/sclgate                 the binary that was timed
#
# Environment:
#   SA_PORT=N               spamd port on 127.0.0.1 (default: a free one)
#   SA_MAX_CONN_PER_CHILD=N spamd --max-conn-per-child (default 200, spamd's
#                           own default; 1 forks a fresh child per message,
#                           same scores, about 1.8x the CPU per message)
#   LIMIT=N                 score only the first N ham and N spam (smoke test)
#   OUT=DIR                 write there instead of bench/out
#   SCLGATE_REV=REV         build sclgate from that commit (default HEAD, via
#                           git archive); "worktree" builds the work tree
#
# Needs bash, python3, go, and SpamAssassin 4 (spamassassin, spamc, spamd;
# installed with apt-get when missing). One spamd child: the machine may be
# shared, so only one heavy process runs at a time.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
out=${OUT:-$root/bench/out}
case "$out" in /*) ;; *) out=$root/$out ;; esac
sa=$out/sa
limit=${LIMIT:-0}
max_conn=${SA_MAX_CONN_PER_CHILD:-200}

log() { printf '%s sa-compare: %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "FAILED: $*"; exit 1; }
trap 'log "FAILED: line $LINENO: ${BASH_COMMAND%%$'\n'*} (exit $?)"' ERR

# --- prerequisites -----------------------------------------------------------
command -v python3 >/dev/null || die "python3 is needed"
command -v go >/dev/null || die "go is needed"
if [ ! -d corpus/test/ham ] || [ ! -d corpus/test/spam ] ||
   [ ! -d corpus/train/ham ] || [ ! -d corpus/train/spam ]; then
  log "corpus missing: scripts/corpus.sh"
  scripts/corpus.sh
fi
if ! command -v spamassassin >/dev/null || ! command -v spamc >/dev/null ||
   ! command -v sa-learn >/dev/null || ! { command -v spamd || [ -x /usr/sbin/spamd ]; } >/dev/null; then
  log "installing SpamAssassin with apt-get"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo=sudo
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -q
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q spamassassin spamc spamd ||
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q spamassassin spamc
fi
spamd_bin=$(command -v spamd || echo /usr/sbin/spamd)
[ -x "$spamd_bin" ] || die "spamd not found"
sa_version=$(spamassassin --version | sed -n 's/^SpamAssassin version //p')
case "$sa_version" in
  4.*) ;;
  *) die "SpamAssassin 4 needed, found '$sa_version'" ;;
esac

# --- a private snapshot of the corpus --------------------------------------
# scripts/corpus.sh re-lays corpus/{train,test} out from scratch (rm -rf, then
# symlinks), so a run elsewhere on the machine can pull files from under a
# 5-minute benchmark. Both systems read a frozen copy instead: hard links to
# the messages (a copy where links are not possible), checked against the
# counts corpus.sh promises.
mkdir -p "$out"
snap=$out/sa-compare-corpus
want=$(sed -n 's/^want="\(.*\)"$/\1/p' scripts/corpus.sh 2>/dev/null || true)
count() { find "$snap/$1" -type f | wc -l | tr -d ' '; }
ok=0
for try in $(seq 1 60); do
  rm -rf "$snap"
  mkdir -p "$snap"
  if { cp -RL --link corpus/train corpus/test "$snap/" 2>/dev/null ||
       { rm -rf "$snap" && mkdir -p "$snap" && cp -RL corpus/train corpus/test "$snap/"; }; } 2>/dev/null; then
    got="$(count train/ham) $(count train/spam) $(count test/ham) $(count test/spam)"
    if [ -z "$want" ] || [ "$got" = "$want" ]; then ok=1; break; fi
  fi
  log "corpus is being re-laid out (try $try): waiting"
  sleep 5
done
[ "$ok" = 1 ] || die "could not snapshot corpus/{train,test} (want $want)"

# --- the TEST files ----------------------------------------------------------
# Explicit file names, not directories: "sclgate scan DIR" only takes regular
# files (the corpus layout is symlinks; it would scan nothing there).
shopt -s nullglob
ham=("$snap"/test/ham/*)
spam=("$snap"/test/spam/*)
shopt -u nullglob
if [ "$limit" -gt 0 ]; then
  ham=("${ham[@]:0:$limit}")
  spam=("${spam[@]:0:$limit}")
fi
[ "${#ham[@]}" -gt 0 ] && [ "${#spam[@]}" -gt 0 ] || die "no TEST messages"
files=("${ham[@]}" "${spam[@]}")
n=${#files[@]}
log "TEST: ${#ham[@]} ham + ${#spam[@]} spam"

chmod -R u+w "$sa" 2>/dev/null || true
rm -rf "$sa"
# SA creates ~/.spamassassin/user_prefs: its commands get a HOME in here
# (only they do: go must keep its own module and build caches).
mkdir -p "$sa/site" "$sa/bayes" "$sa/home"

# CPU seconds (user+sys, own and reaped children) of a process.
clk=$(getconf CLK_TCK)
ticks() {
  local a
  read -r -a a <<<"$(sed 's/^.*) //' "/proc/$1/stat")"
  echo $((a[11] + a[12] + a[13] + a[14]))
}
# ... plus the live children of that process (spamd's preforked child).
tree_ticks() {
  local t c
  t=$(ticks "$1")
  for c in $(ps -o pid= --ppid "$1" 2>/dev/null); do
    t=$((t + $(ticks "$c" 2>/dev/null || echo 0)))
  done
  echo "$t"
}
now() { date +%s.%N; }

# --- SpamAssassin site config ------------------------------------------------
# --siteconfigpath replaces /etc/spamassassin: take Debian's plugin loads
# (*.pre) and its packaged 65_debian.cf, not its local.cf.
cp /etc/spamassassin/*.pre "$sa/site/"
[ -f /etc/spamassassin/65_debian.cf ] && cp /etc/spamassassin/65_debian.cf "$sa/site/"
cat >"$sa/site/local.cf" <<EOF
# bench/sa-compare.sh: SpamAssassin as deployed with network tests off.
required_score 5.0

use_bayes 1
bayes_auto_learn 0
bayes_auto_expire 0
bayes_path $sa/bayes/bayes

# Network tests off: no DNSBL/URIBL, Razor, Pyzor, no DNS at all (SPF,
# DKIM, DMARC, AskDNS, HashBL have nothing to look up).
skip_rbl_checks 1
use_razor2 0
use_pyzor 0
dns_available no

# What "spamc -R" prints after "score/required": the rules hit with their
# unrounded points (spamc rounds the score to 0.1). Scoring is unaffected.
clear_report_template
report tests=_TESTSSCORES(,)_
EOF

# spamd refuses to run its children as root: run it as nobody, with the work
# dir readable and the Bayes DB writable by nobody.
as_user=()
spamd_user=()
if [ "$(id -u)" -eq 0 ]; then
  spamd_user=(-u nobody)
  if command -v runuser >/dev/null; then as_user=(runuser -u nobody --); fi
  chmod -R a+rX "$sa"
  chown -R nobody:nogroup "$sa/bayes" "$sa/home"
fi

"${as_user[@]}" env HOME="$sa/home" spamassassin --siteconfigpath "$sa/site" --lint -L >"$sa/lint.log" 2>&1 ||
  { cat "$sa/lint.log" >&2; die "spamassassin --lint"; }

# --- train Bayes on TRAIN ----------------------------------------------------
log "sa-learn: Bayes on corpus/train (2 passes: ham, spam; then sync)"
t0=$(now)
"${as_user[@]}" env HOME="$sa/home" sa-learn --siteconfigpath "$sa/site" --dbpath "$sa/bayes" --no-sync \
  --ham "$snap/train/ham" >"$sa/learn-ham.log" 2>&1 || { cat "$sa/learn-ham.log" >&2; die "sa-learn --ham"; }
"${as_user[@]}" env HOME="$sa/home" sa-learn --siteconfigpath "$sa/site" --dbpath "$sa/bayes" --no-sync \
  --spam "$snap/train/spam" >"$sa/learn-spam.log" 2>&1 || { cat "$sa/learn-spam.log" >&2; die "sa-learn --spam"; }
"${as_user[@]}" env HOME="$sa/home" sa-learn --siteconfigpath "$sa/site" --dbpath "$sa/bayes" --sync >/dev/null 2>&1 || die "sa-learn --sync"
"${as_user[@]}" env HOME="$sa/home" sa-learn --siteconfigpath "$sa/site" --dbpath "$sa/bayes" --dump magic >"$sa/bayes-magic.txt" 2>/dev/null ||
  die "sa-learn --dump magic"
learn_s=$(python3 -c "print(round($(now) - $t0, 1))")
cat "$sa/learn-ham.log" "$sa/learn-spam.log" >&2
nham=$(awk '/non-token data: nham/ {print $3}' "$sa/bayes-magic.txt")
nspam=$(awk '/non-token data: nspam/ {print $3}' "$sa/bayes-magic.txt")
ntok=$(awk '/non-token data: ntokens/ {print $3}' "$sa/bayes-magic.txt")
log "Bayes: $nham ham, $nspam spam, $ntok tokens, ${learn_s}s"
want_ham=$(count train/ham)
want_spam=$(count train/spam)
[ "$nham" = "$want_ham" ] && [ "$nspam" = "$want_spam" ] ||
  die "Bayes learned $nham ham + $nspam spam, TRAIN has $want_ham + $want_spam"

# --- spamd on loopback -------------------------------------------------------
port=${SA_PORT:-$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')}
spamd_pid=""
cleanup() {
  if [ -n "$spamd_pid" ] && kill -0 "$spamd_pid" 2>/dev/null; then
    kill "$spamd_pid" 2>/dev/null || true
    wait "$spamd_pid" 2>/dev/null || true
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log "spamd on 127.0.0.1:$port (1 child, max-conn-per-child $max_conn)"
env HOME="$sa/home" "$spamd_bin" -L --listen="127.0.0.1:$port" --max-children=1 --min-children=1 \
  --max-conn-per-child="$max_conn" --siteconfigpath "$sa/site" --nouser-config \
  "${spamd_user[@]}" --syslog=stderr >"$sa/spamd.log" 2>&1 &
spamd_pid=$!
ready=0
for _ in $(seq 1 240); do
  kill -0 "$spamd_pid" 2>/dev/null || { cat "$sa/spamd.log" >&2; die "spamd exited"; }
  if spamc -d 127.0.0.1 -p "$port" -K >/dev/null 2>&1; then ready=1; break; fi
  sleep 0.5
done
[ "$ready" = 1 ] || { cat "$sa/spamd.log" >&2; die "spamd not ready"; }
# Check that Bayes is live: a TRAIN spam must come back with a BAYES_ rule.
warm=$(ls "$snap"/train/spam/* | sed -n 1p)
spamc -d 127.0.0.1 -p "$port" -R <"$warm" >"$sa/warmup.txt" || true
grep -q 'BAYES_' "$sa/warmup.txt" || { cat "$sa/warmup.txt" "$sa/spamd.log" >&2; die "no BAYES_ rule in spamd's report"; }
sleep 1 # let spamd reap/refork the warm-up child

# --- score TEST with spamc ---------------------------------------------------
load0=$(cut -d' ' -f1-3 /proc/loadavg)
log "spamc: scoring $n messages (load average $load0)"
raw=$sa/spamc-raw.txt
: >"$raw"
sa_cpu0=$(tree_ticks "$spamd_pid")
cli_cpu0=$(ticks "$$")
t0=$(now)
for f in "${files[@]}"; do
  rc=0
  printf '=== %s\n' "$f" >>"$raw"
  spamc -d 127.0.0.1 -p "$port" -R -x <"$f" >>"$raw" || rc=$?
  printf '\n=== rc %s\n' "$rc" >>"$raw"
  # spamc -R exits 0 for ham and spam alike; with -x, a failure to get a
  # report is an error exit (not a silent pass-through).
  [ "$rc" -eq 0 ] || die "spamc failed ($rc) on $f"
done
t1=$(now)
sleep 1 # the last child exits after its connection: let spamd reap it
sa_cpu1=$(tree_ticks "$spamd_pid")
cli_cpu1=$(ticks "$$")
cleanup
spamd_pid=""
sa_wall=$(python3 -c "print(round($t1 - $t0, 3))")
sa_cpu=$(python3 -c "print(($sa_cpu1 - $sa_cpu0) / $clk)")
sa_cli_cpu=$(python3 -c "print(($cli_cpu1 - $cli_cpu0) / $clk)")
log "spamc: ${sa_wall}s wall, spamd ${sa_cpu}s CPU, spamc+shell ${sa_cli_cpu}s CPU"

# --- sclgate -----------------------------------------------------------------
# "go run ./cmd/sclgate scan" without the compile time: build, then time the
# run. Built from a commit (default HEAD, via git archive), so the figures
# belong to a known revision even when the work tree has edits in progress;
# SCLGATE_REV=worktree builds the work tree as it is.
rev=${SCLGATE_REV:-HEAD}
if [ "$rev" != worktree ] && git rev-parse -q --verify "$rev^{commit}" >/dev/null 2>&1; then
  sclgate_commit=$(git rev-parse --short "$rev^{commit}")
  if [ -n "$(git status --porcelain --untracked-files=no 2>/dev/null)" ]; then
    log "note: the work tree has uncommitted changes; sclgate is built from $sclgate_commit"
  fi
  src=$out/sa-compare-src
  rm -rf "$src"
  mkdir -p "$src"
  git archive "$sclgate_commit" | tar -x -C "$src"
  log "sclgate: go build ./cmd/sclgate at $sclgate_commit"
  (cd "$src" && go build -o "$out/sclgate" ./cmd/sclgate) || die "go build"
else
  sclgate_commit="work tree ($(git rev-parse --short HEAD 2>/dev/null || echo no git)$([ -n "$(git status --porcelain --untracked-files=no 2>/dev/null)" ] && echo ', with uncommitted changes'))"
  log "sclgate: go build ./cmd/sclgate (work tree)"
  go build -o "$out/sclgate" ./cmd/sclgate || die "go build"
fi
log "sclgate scan -json: $n messages"
cpu0=$(ticks "$$")
t0=$(now)
"$out/sclgate" scan -json "${files[@]}" >"$out/sclgate-scan.jsonl" 2>"$out/sclgate-scan.err" ||
  { cat "$out/sclgate-scan.err" >&2; die "sclgate scan"; }
t1=$(now)
cpu1=$(ticks "$$")
# Start-up alone (loading the built-in definitions), for reference.
cpu2=$(ticks "$$")
t2=$(now)
"$out/sclgate" scan -json "${files[0]}" >/dev/null 2>&1 || die "sclgate scan (start-up)"
t3=$(now)
cpu3=$(ticks "$$")
sc_wall=$(python3 -c "print(round($t1 - $t0, 3))")
sc_cpu=$(python3 -c "print(($cpu1 - $cpu0) / $clk)")
sc_start_wall=$(python3 -c "print(round($t3 - $t2, 3))")
sc_start_cpu=$(python3 -c "print(($cpu3 - $cpu2) / $clk)")
log "sclgate: ${sc_wall}s wall, ${sc_cpu}s CPU (start-up alone: ${sc_start_wall}s wall, ${sc_start_cpu}s CPU)"

cat >"$out/timing.json" <<EOF
{"messages": $n, "sa_version": "$sa_version", "spamd_max_conn_per_child": $max_conn,
 "sa_learn_wall_s": $learn_s, "bayes_nham": $nham, "bayes_nspam": $nspam, "bayes_ntokens": $ntok,
 "sa_wall_s": $sa_wall, "sa_spamd_cpu_s": $sa_cpu, "sa_client_cpu_s": $sa_cli_cpu,
 "sclgate_wall_s": $sc_wall, "sclgate_cpu_s": $sc_cpu,
 "sclgate_startup_wall_s": $sc_start_wall, "sclgate_startup_cpu_s": $sc_start_cpu,
 "sclgate_commit": "$sclgate_commit",
 "loadavg_before": "$load0", "loadavg_after": "$(cut -d' ' -f1-3 /proc/loadavg)"}
EOF

# --- the table ---------------------------------------------------------------
python3 - "$out" "$raw" <<'PY'
import json, math, re, sys

out, raw = sys.argv[1], sys.argv[2]
cls = lambda f: "ham" if "/test/ham/" in f else "spam" if "/test/spam/" in f else None

# SpamAssassin: "=== FILE", "score/required", "tests=A=1.2,B=0.3", "=== rc N".
sa = {}
cur = None
for line in open(raw, encoding="utf-8", errors="replace"):
    line = line.rstrip("\n")
    if line.startswith("=== rc "):
        sa[cur]["rc"] = int(line[7:])
        cur = None
    elif line.startswith("=== "):
        cur = line[4:]
        sa[cur] = {"rounded": None, "required": None, "tests": {}, "rc": None}
    elif cur is not None and sa[cur]["rounded"] is None and re.match(r"^-?[0-9.]+/[0-9.]+$", line):
        sa[cur]["rounded"], sa[cur]["required"] = map(float, line.split("/"))
    elif cur is not None and line.startswith("tests="):
        body = line[6:]
        if body != "none":
            for kv in body.split(","):
                k, v = kv.split("=")
                sa[cur]["tests"][k] = float(v)
# "0/0" would be a message spamc did not send (over its size limit).
bad = [f for f, r in sa.items() if r["rounded"] is None or r["rc"] is None or r["required"] != 5.0]
if bad:
    sys.exit("sa-compare: unparsable spamc output for %d files, e.g. %s" % (len(bad), bad[0]))
for f, r in sa.items():
    # Unrounded score: the sum of the points of the rules hit (SA sums the
    # same numbers); must agree with spamc's rounded score.
    r["score"] = round(sum(r["tests"].values()), 3)
    if abs(r["score"] - r["rounded"]) > 0.051:
        sys.exit("sa-compare: %s: rules sum to %.3f, spamc said %.1f" % (f, r["score"], r["rounded"]))

with open(out + "/sa-scores.tsv", "w") as w:
    w.write("file\tclass\tsa_score\tspamc_rounded\trules\n")
    for f, r in sa.items():
        w.write("%s\t%s\t%.3f\t%.1f\t%s\n" % (f, cls(f), r["score"], r["rounded"],
                ",".join("%s=%g" % kv for kv in sorted(r["tests"].items()))))

sc = {}
for line in open(out + "/sclgate-scan.jsonl"):
    j = json.loads(line)
    sc[j["file"]] = (j["score"], j["scl"], j["classifier"])
if set(sc) != set(sa):
    sys.exit("sa-compare: sclgate scored %d files, SA %d; %d in common" % (len(sc), len(sa), len(set(sc) & set(sa))))
if {v[2] for v in sc.values()} != {"builtin"}:
    sys.exit("sa-compare: sclgate classifier was %s, want builtin" % {v[2] for v in sc.values()})
with open(out + "/sclgate-scores.tsv", "w") as w:
    w.write("file\tclass\tspam_probability\tscl\n")
    for f, (p, s, _) in sc.items():
        w.write("%s\t%s\t%.17g\t%d\n" % (f, cls(f), p, s))

files = list(sa)
H = [f for f in files if cls(f) == "ham"]
S = [f for f in files if cls(f) == "spam"]
nH, nS = len(H), len(S)

def auc(score):
    """P(spam scores above ham), ties count half (Mann-Whitney)."""
    allv = sorted([(score(f), 0) for f in H] + [(score(f), 1) for f in S])
    rank_sum, i = 0.0, 0
    while i < len(allv):
        j = i
        while j < len(allv) and allv[j][0] == allv[i][0]:
            j += 1
        mid = (i + 1 + j) / 2.0  # ranks i+1..j
        rank_sum += mid * sum(1 for k in range(i, j) if allv[k][1] == 1)
        i = j
    return (rank_sum - nS * (nS + 1) / 2.0) / (nH * nS)

def at_budget(score, k):
    """Spam caught with threshold just above the (k+1)-th highest ham score."""
    hs = sorted((score(f) for f in H), reverse=True)
    cut = hs[k] if k < len(hs) else -math.inf
    fp = sum(1 for f in H if score(f) > cut)
    tp = sum(1 for f in S if score(f) > cut)
    return cut, fp, tp

sa_score = lambda f: sa[f]["score"]
sc_prob = lambda f: sc[f][0]
sc_scl = lambda f: sc[f][1]

def scl_at_budget(k):
    """Lowest SCL threshold (most spam caught) with at most k ham FPs."""
    best = None
    for t in range(1, 10):
        fp = sum(1 for f in H if sc_scl(f) >= t)
        tp = sum(1 for f in S if sc_scl(f) >= t)
        if fp <= k:
            best = (t, fp, tp)
            break
    return best

pct = lambda a, b: "%.2f%%" % (100.0 * a / b)
def prob(p):
    """A probability threshold, readable near 1."""
    return "1 − %.2g" % (1.0 - p) if p > 0.999 else "%.3g" % p
tim = json.load(open(out + "/timing.json"))
L = []
L.append("| Ham FP budget | SpamAssassin 4 + Bayes: threshold → ham FP / spam caught | sclgate built-in: SCL threshold → ham FP / spam caught | sclgate built-in: probability threshold (same procedure as SA) → ham FP / spam caught |")
L.append("|---|---|---|---|")
for k in (0, 1, 3, 8):
    cut, fp, tp = at_budget(sa_score, k)
    t, sfp, stp = scl_at_budget(k)
    pcut, pfp, ptp = at_budget(sc_prob, k)
    L.append("| ≤ %d/%d (%s) | score > %.3f → %d / **%d/%d (%s)** | SCL ≥ %d → %d / **%d/%d (%s)** | p > %s → %d / %d/%d (%s) |" % (
        k, nH, pct(k, nH), cut, fp, tp, nS, pct(tp, nS), t, sfp, stp, nS, pct(stp, nS),
        prob(pcut), pfp, ptp, nS, pct(ptp, nS)))
L.append("")
d_fp = sum(1 for f in H if sa_score(f) >= 5.0)
d_tp = sum(1 for f in S if sa_score(f) >= 5.0)
L.append("| | SpamAssassin 4 + Bayes | sclgate built-in |")
L.append("|---|---|---|")
L.append("| AUC (ties count half) | %.5f | %.5f |" % (auc(sa_score), auc(sc_prob)))
per = {}
for t in (5, 6, 7):
    per[t] = (sum(1 for f in H if sc_scl(f) >= t), sum(1 for f in S if sc_scl(f) >= t))
L.append("| Default verdict | score ≥ 5.0: ham FP %d/%d (%s), spam caught %d/%d (%s) | SCL ≥ 5: ham FP %d/%d (%s), spam caught %d/%d (%s) |" % (
    d_fp, nH, pct(d_fp, nH), d_tp, nS, pct(d_tp, nS), per[5][0], nH, pct(per[5][0], nH), per[5][1], nS, pct(per[5][1], nS)))
n = tim["messages"]
L.append("| Messages/s (wall, one at a time) | %.1f | %.0f |" % (n / tim["sa_wall_s"], n / tim["sclgate_wall_s"]))
L.append("| CPU ms per message | %.1f (spamd) + %.1f (spamc and the shell loop) | %.2f (whole process, incl. %.0f ms start-up; %.2f without it) |" % (
    1000 * tim["sa_spamd_cpu_s"] / n, 1000 * tim["sa_client_cpu_s"] / n,
    1000 * tim["sclgate_cpu_s"] / n, 1000 * tim["sclgate_startup_cpu_s"],
    1000 * max(0.0, tim["sclgate_cpu_s"] - tim["sclgate_startup_cpu_s"]) / n))
L.append("| Wall / CPU seconds for %d messages | %.1f s / %.1f s | %.2f s / %.2f s |" % (
    n, tim["sa_wall_s"], tim["sa_spamd_cpu_s"] + tim["sa_client_cpu_s"], tim["sclgate_wall_s"], tim["sclgate_cpu_s"]))
L.append("")
L.append("TEST: %d ham + %d spam. SpamAssassin %s (spamd --max-children=1 --max-conn-per-child=%d, -L, Bayes: %d ham + %d spam, %d tokens); sclgate %s. Load average before/after: %s / %s." % (
    nH, nS, tim["sa_version"], tim["spamd_max_conn_per_child"], tim["bayes_nham"], tim["bayes_nspam"], tim["bayes_ntokens"], tim["sclgate_commit"],
    tim["loadavg_before"], tim["loadavg_after"]))

# Which SA rules fire, for the write-up.
from collections import Counter
hits = {"ham": Counter(), "spam": Counter()}
for f, r in sa.items():
    hits[cls(f)].update(r["tests"].keys())
pts = {}
for r in sa.values():
    pts.update(r["tests"])
with open(out + "/sa-rules.tsv", "w") as w:
    w.write("rule\tpoints\tham_hits\tspam_hits\n")
    for rule in sorted(set(hits["ham"]) | set(hits["spam"]), key=lambda x: -(hits["ham"][x] + hits["spam"][x])):
        w.write("%s\t%g\t%d\t%d\n" % (rule, pts[rule], hits["ham"][rule], hits["spam"][rule]))

text = "\n".join(L) + "\n"
open(out + "/table.md", "w").write(text)
sys.stdout.write(text)
PY
log "done: $out/{table.md,sa-scores.tsv,sclgate-scores.tsv,sa-rules.tsv,timing.json}"
