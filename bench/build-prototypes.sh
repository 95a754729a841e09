#!/usr/bin/env bash
# Builds measurement prototypes of the proposals in bench/proposals/ on top
# of $COMMIT (default HEAD), in bench/out/perf/ only: the repository's Go
# code is not changed. They exist to measure expected gains (bench/ablation.sh
# bin:LABEL=PATH, bench/throughput.sh with SCLGATE_BIN, bench/pprof.sh with
# PPROF_SRC); they are not reviewed changes (P1 in particular changes what
# proxy's tests assert: a downstream session now outlives a transaction).
#
#   sclgate-<commit>-p1    P1 one downstream session per client session
#   sclgate-<commit>-p12   P1 + P2 (allocations, byte loops in sclgate's own code)
#   sclgate-<commit>-p123  P1 + P2 + P3 (go-smtp's DATA reader, line-limit reader
#                          and the client's dot-writer in chunks; replace directive)
#   sclgate-<commit>-p2, -p23   without P1, for tests: go test ./proxy passes on them
#
# Usage: bench/build-prototypes.sh [test]   ("test" also runs go test ./proxy ./scorer on p2 and p23)
set -euo pipefail
source "$(dirname "$0")/lib.sh"
PROP=$ROOT/bench/proposals

tree() { # NAME PATCH...: fresh source tree with the patches applied
  local d=$OUT/proto-$COMMIT-$1; shift
  rm -rf "$d" && mkdir -p "$d"
  git -C "$ROOT" archive "$COMMIT" | tar -x -C "$d"
  local p
  # GNU patch, not git apply: under the repository's work tree git apply
  # would silently skip paths outside the current directory.
  for p in "$@"; do patch -s -p1 -d "$d" <"$PROP/$p"; done
  echo "$d"
}

# go-smtp with P3, next to the trees (replace ../go-smtp-p3).
gosmtp=$OUT/go-smtp-p3
ver=$(cd "$ROOT" && go list -m -f '{{.Version}}' github.com/emersion/go-smtp)
[[ $ver == v0.25.1 ]] || log "warning: go-smtp is $ver, P3 was written against v0.25.1"
rm -rf "$gosmtp"
cp -r "$(cd "$ROOT" && go env GOMODCACHE)/github.com/emersion/go-smtp@$ver" "$gosmtp"
chmod -R u+w "$gosmtp"
patch -s -p1 -d "$gosmtp" <"$PROP/p3-go-smtp-v0.25.1-chunked-data.patch"

build() { # TREE OUTNAME [p3]
  (cd "$1" && { [[ ${3:-} == p3 ]] && go mod edit -replace "github.com/emersion/go-smtp=$gosmtp" || true; } &&
    go build -o "$OUT/sclgate-$COMMIT-$2" ./cmd/sclgate)
  log "built $OUT/sclgate-$COMMIT-$2"
}

P1=p1-downstream-session-per-client-session.patch
P2=p2-allocations-and-byte-loops.patch
build "$(tree p1 $P1)" p1
build "$(tree p12 $P1 $P2)" p12
build "$(tree p123 $P1 $P2)" p123 p3
t2=$(tree p2 $P2); build "$t2" p2
t23=$(tree p23 $P2); build "$t23" p23 p3

if [[ ${1:-} == test ]]; then
  log "go test ./proxy ./scorer with P2 (and P2+P3): the prototypes keep sclgate's own tests green"
  (cd "$t2" && go test -count=1 ./proxy/ ./scorer/)
  (cd "$t23" && go test -count=1 ./proxy/ ./scorer/)
  (cd "$gosmtp" && go test -count=1 .)
fi
