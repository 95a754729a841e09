#!/usr/bin/env bash
# Splits a bench/pprof.sh CPU profile into the parts of the serve path
# (pprof -focus/-ignore on the call stacks; a sample counts in every
# bucket whose frames it has, so nested rows are "of which").
# Usage: bench/pprof-buckets.sh bench/out/perf/pprof-<time> [µs/msg]
#   with µs/msg (sclgate CPU per message from summary.txt by default), each
#   share is also given in µs per message.
set -euo pipefail
P=${1:?usage: pprof-buckets.sh PROFILE_DIR}
B=$P/sclgate-pprof
us=${2:-$(sed -n 's/.* = \([0-9]*\) µs\/msg.*/\1/p' "$P/summary.txt")}
total=$(go tool pprof -top -nodecount=1 "$B" "$P/cpu.pprof" 2>/dev/null | sed -n 's/.*Total samples = \([0-9.]*m*s\).*/\1/p')
share() { # focus [ignore]
  go tool pprof -top -nodefraction=0 -nodecount=100000 -focus="$1" ${2:+-ignore="$2"} "$B" "$P/cpu.pprof" 2>/dev/null |
    sed -n 's/^Showing nodes accounting for [^,]*, \([0-9.]*\)% of.*/\1/p'
}
row() { # label focus [ignore]
  local s
  s=$(share "$2" "${3:-}")
  s=${s:-0}
  printf '| %s | %s%% | %s |\n' "$1" "$s" "$(awk -v s="$s" -v u="$us" 'BEGIN { printf "%.0f", s * u / 100 }')"
}
echo "profile $P: $(cat "$P/summary.txt" | head -1)"
echo "pprof samples: $total"
echo
echo "| part of the serve path (pprof stack filter) | share of sclgate CPU | ≈ µs/msg |"
echo "|---|---|---|"
row "**receive DATA** (go-smtp dataReader + line-limit reader + sclgate's readData/line-end filter/spool)" 'session\).data$|readData|dataReader|lineLimitReader' 'session\).verdict|session\).relay|session\).archive'
row "  of which go-smtp's byte-wise DATA reader (dataReader, lineLimitReader, bufio.ReadByte)" 'dataReader\).Read|lineLimitReader' 'session\).verdict|session\).relay'
row "  of which sclgate's line-end filter (dataFilter.write)" 'dataFilter\).write'
row "  of which line-at-a-time reads and smuggling scan on the raw connection (limitConn.Read)" 'limitConn\).Read'
row "**parse + score** (session.verdict)" 'session\).verdict'
row "  of which MIME parse (scorer.Parse/ParseReader)" 'scorer\.Parse'
row "  of which built-in model (Model.Classify: feature extraction + lookups)" 'Model\).Classify'
row "  of which weight list (weights Match, 1,000 entries)" 'weights\..*Match'
row "**relay**: stamp + DATA to downstream + its 250 (session.relay)" 'session\).relay'
row "  of which go-smtp client dot-writer (net/textproto dotWriter)" 'dotWriter\).Write|fastDotWriter\).Write'
row "  of which QUIT after each message (smtpTxn.quit)" 'smtpTxn\).quit'
row "**downstream connect + greeting + EHLO + MAIL** (smtpDownstream.Begin)" 'smtpDownstream\).Begin'
row "  of which TCP connect (net.Dialer)" 'Dialer\).DialContext'
row "downstream RCPT" 'smtpTxn\).Rcpt'
row "downstream MAIL on a kept connection (dsConn.mail)" 'dsConn\).mail'
row "**client side SMTP**: replies written (go-smtp Conn.writeResponse)" 'Conn\).writeResponse'
row "client side SMTP: commands read (go-smtp Conn.readLine)" 'Conn\).readLine|textproto.*ReadLine'
row "accept + connection limits + PROXY/HTTP checks (limitListener)" 'acceptLoop|limitListener|admit'
row "logging (log/slog)" 'log/slog'
row "metrics (prometheus)" 'prometheus'
row "**GC** (background mark/sweep, assists)" 'gcBgMarkWorker|gcAssist|bgsweep|bgscavenge|markroot'
row "allocation (mallocgc, all callers)" 'mallocgc'
row "scheduler, netpoll, idle (runtime.mcall/schedule/findRunnable)" 'runtime\.mcall|runtime\.schedule|findRunnable'
row "all syscalls (read/write/connect/close/epoll; includes loopback TCP done in them)" 'syscall\.Syscall|syscall\.RawSyscall|Syscall6'
