#!/usr/bin/env bash
# Runs the README's five-minute walk-through for real: the shell block between
# `<!-- walkthrough:start -->` and `<!-- walkthrough:end -->`, from the
# repository root, in a scratch directory, then checks what the sink received:
# the forward reached the mailbox from a reverse alias, and the reply reached
# the outside sender from the alias without the mailbox address.
#
# Needs: cargo, python3 with aiosmtpd, swaks, curl; ports 2525, 2526 and 8080
# free on 127.0.0.1. Usable locally: `bash .ci/walkthrough.sh`.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
limit=${WALKTHROUGH_TIMEOUT:-600}   # seconds, the build included
readme=${WALKTHROUGH_README:-README.md}   # another file: for trying a changed walk-through

for tool in cargo python3 swaks curl setsid timeout; do
  command -v "$tool" >/dev/null || { echo "walkthrough: '$tool' is needed" >&2; exit 1; }
done
python3 -c "import aiosmtpd" 2>/dev/null || { echo "walkthrough: pip install aiosmtpd" >&2; exit 1; }
for port in 2525 2526 8080; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    echo "walkthrough: 127.0.0.1:$port is in use; the walk-through needs it free" >&2
    exit 1
  fi
done

work=$(mktemp -d)
block="$work/walkthrough.sh"
awk '/<!-- walkthrough:start -->/{on=1; next} /<!-- walkthrough:end -->/{on=0} on && !/^```/' "$readme" > "$block"
if [ ! -s "$block" ]; then
  echo "walkthrough: no block between the walkthrough markers in $readme" >&2
  exit 1
fi
echo "walkthrough: running $(grep -c . "$block") lines of $readme (scratch under $work)"

# Its own session (process group), so everything it starts in the background
# is stopped at the end, whatever happens.
export TMPDIR="$work"
setsid bash -euo pipefail -x "$block" > "$work/output.log" 2>&1 &
pgid=$!
cleanup() { kill -- "-$pgid" 2>/dev/null || true; }
trap cleanup EXIT

status=0
for _ in $(seq "$limit"); do
  kill -0 "$pgid" 2>/dev/null || break
  sleep 1
done
if kill -0 "$pgid" 2>/dev/null; then
  echo "walkthrough: still running after ${limit}s" >&2
  status=1
else
  wait "$pgid" || status=$?
fi

show() {
  echo "--- output of the walk-through"; tail -n 60 "$work/output.log"
  for f in "$work"/tmp.*/server.log "$work"/tmp.*/sink.log; do
    [ -f "$f" ] && { echo "--- $f"; tail -n 40 "$f"; }
  done
  return 0
}
if [ "$status" -ne 0 ]; then
  echo "walkthrough: the README block failed (exit $status)" >&2
  show >&2
  exit 1
fi

sink=$(ls "$work"/tmp.*/sink.log 2>/dev/null | head -n 1)
[ -n "$sink" ] || { echo "walkthrough: no sink.log in the scratch directory" >&2; show >&2; exit 1; }
# The messages the sink printed, one file each.
awk -v dir="$work" '/^---------- MESSAGE FOLLOWS ----------$/{n++; next} /^------------ END MESSAGE ------------/{next} n{print > (dir "/message." n)}' "$sink"
forward="" reply=""
for m in "$work"/message.*; do
  [ -f "$m" ] || continue
  grep -q '^To: shop@alias.example' "$m" && forward=$m
  grep -q '^To: bob@outside.example' "$m" && reply=$m
done
fail() { echo "walkthrough: $*" >&2; show >&2; exit 1; }
[ -n "$forward" ] || fail "the forward to shop@alias.example did not reach the sink"
grep -q 'r--[a-z0-9]*@alias.example' "$forward" || fail "the forward's sender is not a reverse alias"
grep -q 'Hi, this is Bob.' "$forward" || fail "the forward lost its body"
# Header lines unfolded (a DKIM-Signature is folded wherever its values fall).
unfold() { awk '/^[ \t]/ { sub(/^[ \t]+/, " "); printf "%s", $0; next } NR > 1 { print "" } { printf "%s", $0 } END { print "" }' "$1"; }
unfold "$forward" | grep -q '^DKIM-Signature:.*d=alias\.example;' || fail "the forward is not signed for alias.example"
[ -n "$reply" ] || fail "the reply to bob@outside.example did not reach the sink"
grep -q '^From: shop@alias.example' "$reply" || fail "the reply does not come from the alias"
grep -q 'Thanks, Bob.' "$reply" || fail "the reply lost its body"
if grep -qi 'me@mail.example' "$reply"; then fail "the reply reveals the mailbox address"; fi
grep -q '"email":"me@mail.example"' "$work/output.log" || fail "the API did not answer GET /api/v1/me with the key"

echo "walkthrough: ok (forward from a reverse alias, reply from the alias, API answered) in $root"
rm -rf "$work"
