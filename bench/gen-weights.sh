#!/usr/bin/env bash
# Writes a deterministic custom weight list (Exchange IMF
# MSExchange.UceContentFilter.xml format, UTF-8) with N entries (default
# 1000): phrases of 1-3 words from a mixed ASCII/accented/Cyrillic
# vocabulary plus a serial number, Types BODY/SUBJECT/BOTH in turn,
# Changes -3..+3. One extra-realistic entry ("special offer", BOTH, +1)
# matches the benchmark's Subject so the report/stamping path carries a
# rule. Usage: bench/gen-weights.sh OUT.xml [N]
set -euo pipefail
out=${1:?usage: gen-weights.sh OUT.xml [N]}
n=${2:-1000}
awk -v n="$n" 'BEGIN {
  split("offer special free money click here now limited time order today viagra casino lottery winner account verify password bank transfer invoice payment meeting lunch project report schedule attached document review please thanks regards best team update security urgent important notice delivery package shipping tracking number customer Verlängertes Angebot spéciale größte Straße café naïve résumé скидка цена лучшая", w, " ")
  nw = length(w); split("BODY SUBJECT BOTH", ty, " ")
  seed = 12345
  print "<?xml version=\"1.0\" encoding=\"UTF-8\"?>"
  print "<CustomWeightEntries xmlns=\"http://schemas.microsoft.com/2005/CustomWeight\">"
  print "  <CustomWeightEntry Type=\"BOTH\" Change=\"1\" Text=\"special offer\"/>"
  for (i = 1; i < n; i++) {
    seed = (seed * 1103515245 + 12345) % 2147483648; k = 1 + int(seed / 65536) % 3
    p = ""
    for (j = 0; j < k; j++) {
      seed = (seed * 1103515245 + 12345) % 2147483648
      p = p (j ? " " : "") w[1 + int(seed / 65536) % nw]
    }
    seed = (seed * 1103515245 + 12345) % 2147483648; c = int(seed / 65536) % 7 - 3
    printf "  <CustomWeightEntry Type=\"%s\" Change=\"%d\" Text=\"%s %d\"/>\n", ty[1 + i % 3], c, p, i
  }
  print "</CustomWeightEntries>"
}' > "$out"
