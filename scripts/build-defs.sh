#!/usr/bin/env bash
# Rebuilds the built-in definitions (defs/builtin/sclgate-defs.tar.gz) from
# the TRAIN split of the SpamAssassin public corpus, then evaluates them on
# TEST. Training is deterministic: the same corpus and seed give the same
# model bytes (the bundle's manifest records the creation time).
#
#   scripts/build-defs.sh [VERSION]     # default version: from the UTC time
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/corpus.sh
version="${1:-$(date -u +%Y.%m.%d.%H%M)}"
out="corpus/sclgate-defs-$version.tar.gz"
go run ./cmd/sclgate defs train -ham corpus/train/ham -spam corpus/train/spam -seed 1 -version "$version" -o "$out"
cp "$out" defs/builtin/sclgate-defs.tar.gz
go run ./cmd/sclgate defs info defs/builtin/sclgate-defs.tar.gz
go run ./cmd/sclgate defs eval -ham corpus/test/ham -spam corpus/test/spam -plot corpus/eval-test.svg
