#!/usr/bin/env bash
# Rebuilds the built-in definitions (defs/builtin/sclgate-defs.tar.gz) from
# the TRAIN split of the SpamAssassin public corpus, then evaluates them on
# TEST. Training is deterministic: the same corpus and seed give the same
# model bytes, and with SOURCE_DATE_EPOCH the same bundle.
#
#   scripts/build-defs.sh [VERSION]     # default version: from the UTC time
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/corpus.sh
# SOURCE_DATE_EPOCH, when set, is the bundle's creation time (and the
# default version): the same corpus, seed, version and time give the same
# bundle byte for byte.
if [ -n "${SOURCE_DATE_EPOCH:-}" ]; then
	version="${1:-$(date -u -d "@$SOURCE_DATE_EPOCH" +%Y.%m.%d.%H%M)}"
else
	version="${1:-$(date -u +%Y.%m.%d.%H%M)}"
fi
out="corpus/sclgate-defs-$version.tar.gz"
go run ./cmd/sclgate defs train -ham corpus/train/ham -spam corpus/train/spam -seed 1 -version "$version" -o "$out"
cp "$out" defs/builtin/sclgate-defs.tar.gz
go run ./cmd/sclgate defs info defs/builtin/sclgate-defs.tar.gz
go run ./cmd/sclgate defs eval -ham corpus/test/ham -spam corpus/test/spam -plot corpus/eval-test.svg
