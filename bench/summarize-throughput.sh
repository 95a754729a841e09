#!/usr/bin/env bash
# Turns a bench/throughput.sh TSV into a Markdown table: per cell and run,
# direct and sclgate msgs/s, the ratio against its target, and per-message
# CPU. "CPU ratio" is (source+sink CPU per message, direct) / (source+sink+
# sclgate CPU per message, through sclgate): the throughput ratio a
# CPU-bound 2-core machine with nothing else running would show, which is
# robust to the other jobs on a shared machine.
# Usage: bench/summarize-throughput.sh RESULTS.tsv
set -euo pipefail
awk -F'\t' '
NR == 1 { next }
$5 == "direct" { key = $1 FS $2 FS $3; d[key, ++nd[key]] = $0; next }
$5 == "sclgate" {
  key = $1 FS $2 FS $3; i = ++ns[key]
  split(d[key, i], x, FS)
  target = ($1 == "100k") ? 0.4 : (($2 == 10 && $3 == "new") ? 0.6 : 0.5)
  ratio = $7 / x[7]
  cpud = x[8] + x[9]; cpuv = $8 + $9 + $10
  rows[++n] = sprintf("| %s | %s | %s | %s | %.0f | %.0f | **%.2f** | ≥ %.1f | %s | %.0f | %.0f | %.0f | %.0f | %.2f | %.2f | %s%% / %s%% | %s / %s |",
    $1, $2, $3, $4, x[7], $7, ratio, target, (ratio >= target ? "holds" : "**missed**"),
    cpud, $10, $8 + $9, cpuv, cpud / cpuv, $12 / $4, x[11], $11, x[13], $13)
}
END {
  print "| size | sessions | connection | msgs | direct msgs/s | via sclgate msgs/s | ratio | target | | direct CPU µs/msg (source+sink) | sclgate CPU µs/msg | source+sink CPU µs/msg via sclgate | total CPU µs/msg via | CPU ratio | sink sessions/msg via | other users CPU direct/via | load1 before direct / via |"
  print "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
  for (i = 1; i <= n; i++) print rows[i]
}' "$1"
