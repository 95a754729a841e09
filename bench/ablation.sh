#!/usr/bin/env bash
# What each part of the serve path costs, measured end to end: the same
# smtp-source load through sclgate with parts switched off by configuration
# (no Go code changed), variants interleaved so drifting background load
# hits them alike. Reports sclgate's CPU per message (robust on a shared
# machine) and msgs/s.
#
#   full        built-in classifier + 1,000-entry weight list (the benchmark setup)
#   gogc400     full, with GOGC=400 in sclgate's environment
#   none        classifier none, weight list on      (full - none = the model)
#   noweights   built-in classifier, no weight list  (full - noweights = weight matching)
#   unfiltered  client in trusted_networks: relayed unparsed and unscored
#               (= SMTP in + relay out; full - unfiltered = parse + score + report)
#   bin:LABEL=PATH  full, with another sclgate binary (e.g. a prototype build)
#
# Usage: bench/ablation.sh [VARIANT...]   env: CELLS="10k:10:new 10k:10:reused 100k:10:new"
#        REPEAT=2 M_10K=20000 M_100K=4000
set -euo pipefail
source "$(dirname "$0")/lib.sh"

variants=("$@"); ((${#variants[@]})) || variants=(full unfiltered none noweights gogc400)
CELLS=${CELLS:-10k:10:new 10k:10:reused 100k:10:new}
REPEAT=${REPEAT:-2}
M_10K=${M_10K:-20000}
M_100K=${M_100K:-4000}

build_sclgate
[[ -f $OUT/weights-1000.xml ]] || "$ROOT/bench/gen-weights.sh" "$OUT/weights-1000.xml" 1000
stamp=$(date +%Y%m%dT%H%M%S)
RES=$OUT/ablation-$stamp.tsv
RUNDIR=$OUT/ablation-$stamp
mkdir -p "$RUNDIR"
machine_info | tee "$RUNDIR/machine.txt" >&2
print_header

label_of() { local l=${1%%=*}; echo "${l#bin:}"; }
for v in "${variants[@]}"; do
  f=$RUNDIR/$(label_of "$v").yaml
  case $v in
  full | gogc400 | bin:*) write_config "$f" ;;
  none) CLASSIFIER=none write_config "$f" ;;
  noweights) WEIGHTS_OFF=1 write_config "$f" ;;
  unfiltered) TRUSTED=127.0.0.1/32 write_config "$f" ;;
  *) log "unknown variant $v"; exit 2 ;;
  esac
done

for cell in $CELLS; do
  IFS=: read -r sz sess mode <<<"$cell"
  size=${sz%k}
  m=$M_10K; ((size == 100)) && m=$M_100K
  for ((r = 1; r <= REPEAT; r++)); do
    for v in "${variants[@]}"; do
      label=$(label_of "$v")
      env_=""; bin_=""
      [[ $v == gogc400 ]] && env_="GOGC=400"
      [[ $v == bin:* ]] && bin_=${v#*=}
      log "cell $cell run $r variant $label, load $(loadavg)"
      GW_ENV=$env_ GW_BIN=$bin_ run_cell "$label" "$RUNDIR/$label.yaml" "$size" "$sess" "$mode" "$m" "$r"
      sleep 1
    done
  done
done

echo
echo "results: $RES"
# Median over runs of sclgate CPU µs/msg and msgs/s, per cell and variant.
awk -F'\t' 'NR > 1 { k = $1 " " $2 " " $3 "\t" $5; if (!(k in seen)) { seen[k] = 1; order[++n] = k }
  c[k] = c[k] " " $10; r[k] = r[k] " " $7; o[k] = o[k] " " $11 }
function med(s,   a, m, i, j, t) { m = split(s, a, " "); for (i = 1; i <= m; i++) for (j = i + 1; j <= m; j++) if (a[j] + 0 < a[i] + 0) { t = a[i]; a[i] = a[j]; a[j] = t }
  return (m % 2) ? a[(m + 1) / 2] : (a[m / 2] + a[m / 2 + 1]) / 2 }
END { print "| cell | variant | sclgate CPU µs/msg (median) | runs | msgs/s (median) | other users CPU (runs) |"; print "|---|---|---|---|---|---|"
  for (i = 1; i <= n; i++) { split(order[i], p, "\t"); printf "| %s | %s | %.0f | %s | %.0f | %s |\n", p[1], p[2], med(c[order[i]]), c[order[i]], med(r[order[i]]), o[order[i]] } }' "$RES"
