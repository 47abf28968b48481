#!/usr/bin/env bash
# Load benchmark: smtpy against Postfix, both as the same alias forwarder, in one run.
#
#   smtp-source --> Postfix 127.0.0.1:2525 --\
#                                             >--> smtp-sink 127.0.0.1:2526
#   smtp-source --> smtpy   127.0.0.1:2530 --/
#
# For each message size and smtp-source concurrency, runs the shared peer scripts'
# bench.sh against Postfix and then against smtpy (REPS runs each, N messages per run,
# one message per connection, recipient <i>a@example.test -> user<i>@dest.test; smtpy
# with its defaults: alias mode (From rewritten, contact created), SPF/DKIM/DMARC/ARC
# checked, DKIM-signed (dual RSA + Ed25519 unless DKIM_ALGORITHMS says otherwise),
# events and counters recorded; fsync-durable queues in both), then prints every CSV row, the median
# accepted and delivered msgs/s of each, a line `... ratio smtpy/postfix <x>` per
# (size, concurrency) and smtpy's peak RSS.
#
# Environment (all optional):
#   N=5000 SIZES="1024 32768" CONCS="1 10 50" REPS=3    the matrix (narrow it for quick runs)
#   PEERS=<repo>/../shared/peers/postfix                 the Postfix peer scripts
#   NALIASES=N+1       aliases hosted by both (smtp-source -N numbers recipients 1..N)
#   SMTPY_LISTEN=127.0.0.1:2530                          smtpy's SMTP address
#   DELIVERY_CONCURRENCY=32                              smtpy's [delivery] concurrency
#   DKIM_ALGORITHMS='"ed25519", "rsa"'                   smtpy's [dkim] algorithms (dual signing by default)
#   SMTPY_LOG=info     smtpy's RUST_LOG (info = one line per accepted message and per
#                      delivery attempt, as in production; Postfix logs every message too)
#   OUTDIR=<tmp>/out   where the CSVs, smtpy's log and the summary go (kept)
#   QUIET_WAIT=20 RUN_TIMEOUT=240                        passed to bench.sh
#   SKIP_SETUP=1       do not run setup.sh (Postfix already configured with NALIASES)
#   KEEP=1             keep smtpy's data directory
#   SERVER_BIN=path    benchmark this server binary instead of building the repo's
#   PERF=1             record a perf profile of smtpy per cell (investigation only)
#   PREFLIGHT=0        skip the check that smtpy admits max(CONCS, 25) connections at once
# Loopback only. Every wait is bounded. Background processes are stopped on exit.
set -uo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(git -C "$HERE" rev-parse --show-toplevel 2>/dev/null || (cd "$HERE/../.." && pwd))
PEERS=${PEERS:-$ROOT/../shared/peers/postfix}
N=${N:-5000}
SIZES=${SIZES:-"1024 32768"}
CONCS=${CONCS:-"1 10 50"}
REPS=${REPS:-3}
NALIASES=${NALIASES:-$((N + 1))}
SMTPY_LISTEN=${SMTPY_LISTEN:-127.0.0.1:2530}
DELIVERY_CONCURRENCY=${DELIVERY_CONCURRENCY:-32}
DKIM_ALGORITHMS=${DKIM_ALGORITHMS:-'"ed25519", "rsa"'}
SMTPY_LOG=${SMTPY_LOG:-info}
export QUIET_WAIT=${QUIET_WAIT:-20} RUN_TIMEOUT=${RUN_TIMEOUT:-240}

die() { echo "run.sh: $*" >&2; exit 1; }
ts() { date +%H:%M:%S; }
[ -x "$PEERS/bench.sh" ] && [ -f "$PEERS/setup.sh" ] || die "no peer scripts in $PEERS (set PEERS)"
[ "$NALIASES" -gt "$N" ] || die "NALIASES=$NALIASES must exceed N=$N (smtp-source -N sends to 1a..${N}a@example.test)"
for v in N REPS NALIASES DELIVERY_CONCURRENCY; do
  [[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "$v must be a positive integer"
done

if [ -n "${OUTDIR:-}" ] && { [ -e "$OUTDIR/postfix.csv" ] || [ -e "$OUTDIR/other.csv" ]; }; then
  die "$OUTDIR already holds CSVs (bench.sh appends to them): use a fresh OUTDIR"
fi
WORK=$(mktemp -d /tmp/smtpy-load.XXXXXX)
OUTDIR=${OUTDIR:-$WORK/out}
mkdir -p "$OUTDIR" "$WORK/data"
export OUTDIR
SMTPY_PID=
SMTPY_RC=

stop_smtpy() { # SIGTERM, bounded wait, then SIGKILL; records the exit status
  [ -n "$SMTPY_PID" ] || return 0
  kill -TERM "$SMTPY_PID" 2>/dev/null
  for _ in $(seq 300); do kill -0 "$SMTPY_PID" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$SMTPY_PID" 2>/dev/null; then
    echo "smtpy did not stop within 30 s of SIGTERM; killing it" >&2
    kill -KILL "$SMTPY_PID" 2>/dev/null
  fi
  wait "$SMTPY_PID" 2>/dev/null; SMTPY_RC=$?
  SMTPY_PID=
}
cleanup() {
  stop_smtpy
  postfix status >/dev/null 2>&1 && postfix stop >/dev/null 2>&1
  if [ "${KEEP:-0}" != 1 ]; then
    case $OUTDIR in
      "$WORK"/*) rm -rf "$WORK/data" "$WORK/aliases.txt" "$WORK/bench.out" ;;  # keep the outputs
      *) rm -rf "$WORK" ;;
    esac
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "# smtpy load benchmark $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(nproc) cores, $(uname -r)"
echo "# N=$N SIZES='$SIZES' CONCS='$CONCS' REPS=$REPS NALIASES=$NALIASES delivery.concurrency=$DELIVERY_CONCURRENCY RUST_LOG=$SMTPY_LOG"
echo "# outputs: $OUTDIR"

# ---- Postfix: install (if missing) and configure with the same aliases --------------------
if [ "${SKIP_SETUP:-0}" != 1 ]; then
  echo "[$(ts)] setup.sh (NALIASES=$NALIASES)"
  NALIASES=$NALIASES bash "$PEERS/setup.sh" > "$OUTDIR/setup.log" 2>&1 \
    || { tail -20 "$OUTDIR/setup.log"; die "setup.sh failed (log: $OUTDIR/setup.log)"; }
fi
command -v smtp-source >/dev/null || die "smtp-source missing after setup.sh"
POSTFIX_VERSION=$(postconf -h mail_version 2>/dev/null || echo '?')

# ---- smtpy: build, configure, seed --------------------------------------------------------
if [ -n "${SERVER_BIN:-}" ]; then   # a binary built elsewhere (e.g. a patched scratch copy)
  SERVER=$SERVER_BIN
  echo "[$(ts)] using SERVER_BIN=$SERVER (not building)"
else
  echo "[$(ts)] cargo build --release --example server"
  (cd "$ROOT" && timeout 3600 cargo build --release --example server) > "$OUTDIR/build.log" 2>&1 \
    || { tail -30 "$OUTDIR/build.log"; die "build failed"; }
  SERVER=${CARGO_TARGET_DIR:-$ROOT/target}/release/examples/server
fi
[ -x "$SERVER" ] || die "no binary at $SERVER"

CONFIG=$WORK/smtpy.toml
cat > "$CONFIG" <<EOF
hostname = "mx.smtpy.test"
data_dir = "$WORK/data"

[smtp]
listen = ["$SMTPY_LISTEN"]

[store]
url = "redb://$WORK/data/smtpy.redb"

[delivery]
relay = "smtp://127.0.0.1:2526"
retry = ["10s", "30s", "60s"]
lease = "120s"
concurrency = $DELIVERY_CONCURRENCY
# [srs]: on by default (secret generated into data_dir); foreign senders are rewritten.

[auth]
# Authentication runs on every message (SPF, DKIM, DMARC, ARC) against an
# empty zone: the CPU cost is measured, DNS latency (cached in production) is not.
dns_records_file = "$WORK/dns.toml"

[dkim]
algorithms = [$DKIM_ALGORITHMS]

[limits]
# smtp-source sends everything from one sender domain; Postfix has no such limit.
sender_domain_messages_per_hour = 100000000
EOF
printf '[txt]\n[ip]\n' > "$WORK/dns.toml"
# The developer's SMTPY_* variables must not override the benchmark's configuration.
UNSET=$(compgen -e | grep '^SMTPY_' | sed 's/^/-u /' | tr '\n' ' ')
smtpy_admin() { timeout 1800 env $UNSET RUST_LOG=warn "$SERVER" --config "$CONFIG" admin "$@"; }

echo "[$(ts)] seeding smtpy: domain example.test + $NALIASES aliases"
awk -v n="$NALIASES" 'BEGIN{for(i=0;i<n;i++) printf "%da@example.test user%d@dest.test\n", i, i}' > "$WORK/aliases.txt"
t0=$(date +%s.%N)
smtpy_admin domain add example.test > "$OUTDIR/seed.log" 2>&1 || { cat "$OUTDIR/seed.log"; die "domain add failed"; }
smtpy_admin alias import "$WORK/aliases.txt" >> "$OUTDIR/seed.log" 2>&1 || { cat "$OUTDIR/seed.log"; die "alias import failed"; }
SEED_S=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}')
echo "[$(ts)] seeded $NALIASES aliases in ${SEED_S} s ($(tail -1 "$OUTDIR/seed.log"))"

# ---- start smtpy ------------------------------------------------------------------------
if ss -ltn | grep -q " ${SMTPY_LISTEN} "; then die "$SMTPY_LISTEN is already in use"; fi
# env execs the server, so $! is the server's pid (for CPU, RSS and SIGTERM).
env $UNSET RUST_LOG="$SMTPY_LOG" "$SERVER" --config "$CONFIG" serve > "$OUTDIR/smtpy.log" 2>&1 &
SMTPY_PID=$!
for _ in $(seq 300); do
  ss -ltn | grep -q " ${SMTPY_LISTEN} " && break
  kill -0 "$SMTPY_PID" 2>/dev/null || { tail -20 "$OUTDIR/smtpy.log"; die "smtpy exited at start"; }
  sleep 0.1
done
ss -ltn | grep -q " ${SMTPY_LISTEN} " || die "smtpy is not listening on $SMTPY_LISTEN after 30 s"
echo "[$(ts)] smtpy pid $SMTPY_PID listening on $SMTPY_LISTEN; Postfix $POSTFIX_VERSION on 127.0.0.1:2525"

# Preflight: hold as many connections at once as the largest concurrency (at least 25) and
# read each banner. A 421 means smtpy's admission control would refuse smtp-source (all on
# 127.0.0.1), which makes smtp-source abort and bench.sh wait RUN_TIMEOUT for mail that
# never comes, for every run: stop here instead, saying why.
preflight() { # prints "<refused> <held> <first refusal>"
  local k=$1 host=${SMTPY_LISTEN%:*} port=${SMTPY_LISTEN##*:} i fd line refused=0 first= fds=()
  for ((i = 0; i < k; i++)); do
    if ! exec {fd}<>"/dev/tcp/$host/$port"; then refused=$((refused + 1)); first=${first:-connect failed}; continue; fi
    fds+=("$fd")
    if IFS= read -r -t 5 line <&"$fd"; then
      case $line in 2*) ;; *) refused=$((refused + 1)); first=${first:-${line%$'\r'}} ;; esac
    else refused=$((refused + 1)); first=${first:-no banner within 5 s}; fi
  done
  for fd in "${fds[@]}"; do printf 'QUIT\r\n' >&"$fd" 2>/dev/null; exec {fd}>&-; done
  echo "$refused $k $first"
}
if [ "${PREFLIGHT:-1}" = 1 ]; then
  maxc=25; for c in $CONCS; do [ "$c" -gt "$maxc" ] && maxc=$c; done
  read -r refused held first < <(preflight "$maxc" 2>/dev/null)
  if [ "${refused:-1}" -gt 0 ]; then
    echo "!! smtpy refused $refused of $held concurrent connections from 127.0.0.1: $first"
    echo "!! smtp-source opens up to max(CONCS) connections at once and one connection per message"
    echo "!! from one address; smtpy's per-IP admission control (smtpy-smtp ConnectionLimits::default():"
    echo "!! 20 connections at once and 60 per minute, bursts of 20, per IP) refuses that with 421, and"
    echo "!! the reference server has no setting to raise it or to exempt loopback. Measuring would only"
    echo "!! time out (RUN_TIMEOUT per run). Benchmark a build that lifts the limits with SERVER_BIN=...,"
    echo "!! or PREFLIGHT=0 to run anyway."
    exit 3
  fi
  echo "[$(ts)] preflight: smtpy accepted $held concurrent connections from 127.0.0.1"
  sleep 1
fi

vm() { awk -v k="$2:" '$1==k{printf "%.1f", $2/1024}' "/proc/$1/status" 2>/dev/null; }  # MB
# Peak RSS per cell: writing 5 to clear_refs resets VmHWM (Linux >= 4.0); the overall peak
# is kept separately because of those resets.
PEAK_MB=0
declare -A CELL_PEAK
bench() { # $1=postfix|smtpy $2=size $3=conc ; prints this cell's rows
  local out=$WORK/bench.out rc
  if [ "$1" = postfix ]; then
    TARGET=postfix N=$N SIZES=$2 CONCS=$3 REPS=$REPS bash "$PEERS/bench.sh" > "$out" 2>&1
    rc=$?
  else
    local perf_pid=
    if [ "${PERF:-0}" = 1 ]; then   # investigation only: sampling costs smtpy some CPU
      perf record -q -F "${PERF_FREQ:-499}" ${PERF_OPTS:-} -p "$SMTPY_PID" -o "$OUTDIR/perf-$2-$3.data" > /dev/null 2>&1 &
      perf_pid=$!
    fi
    TARGET=other DEST=$SMTPY_LISTEN SERVER_PID=$SMTPY_PID N=$N SIZES=$2 CONCS=$3 REPS=$REPS \
      bash "$PEERS/bench.sh" > "$out" 2>&1
    rc=$?
    if [ -n "$perf_pid" ]; then kill -INT "$perf_pid" 2>/dev/null; wait "$perf_pid" 2>/dev/null
      echo "  perf profile: perf report -i $OUTDIR/perf-$2-$3.data --no-children --sort dso,sym"; fi
  fi
  cat "$out" >> "$OUTDIR/bench-$1.log"
  grep -v '^target=' "$out" | sed 's/^/  /'
  if [ "$1" = smtpy ] && grep -q 'rejected at server banner: 421' "$out"; then
    echo "  !! smtpy refused connections at the banner (421): its per-IP admission limits" \
         "(smtpy-smtp ConnectionLimits::default(): 20 at once and 60/min, burst 20, per IP)" \
         "apply to smtp-source on 127.0.0.1 and the reference server has no setting for them"
  fi
  [ $rc -eq 0 ] || echo "  bench.sh ($1 size=$2 conc=$3) exited $rc" >&2
}

# ---- the matrix: per cell, Postfix then smtpy, so both see the same machine -------------
for size in $SIZES; do for conc in $CONCS; do
  echo "[$(ts)] size=$size conc=$conc: postfix"
  bench postfix "$size" "$conc"
  kill -0 "$SMTPY_PID" 2>/dev/null || die "smtpy died (log: $OUTDIR/smtpy.log)"
  echo 5 > "/proc/$SMTPY_PID/clear_refs" 2>/dev/null
  echo "[$(ts)] size=$size conc=$conc: smtpy"
  bench smtpy "$size" "$conc"
  hwm=$(vm "$SMTPY_PID" VmHWM); CELL_PEAK[$size,$conc]=${hwm:-?}
  PEAK_MB=$(awk -v a="$PEAK_MB" -v b="${hwm:-0}" 'BEGIN{print (b>a?b:a)}')
done; done

# ---- peak RSS, stop -----------------------------------------------------------------------
FINAL_HWM=$(vm "$SMTPY_PID" VmHWM); FINAL_RSS=$(vm "$SMTPY_PID" VmRSS)
PEAK_MB=$(awk -v a="$PEAK_MB" -v b="${FINAL_HWM:-0}" 'BEGIN{print (b>a?b:a)}')
stop_smtpy
postfix stop >/dev/null 2>&1
echo "[$(ts)] smtpy stopped with SIGTERM: exit status $SMTPY_RC$([ "$SMTPY_RC" = 0 ] || echo '  <-- expected 0')"

# ---- report -------------------------------------------------------------------------------
PCSV=$OUTDIR/postfix.csv; SCSV=$OUTDIR/other.csv
[ -s "$PCSV" ] && [ -s "$SCSV" ] || die "missing CSVs in $OUTDIR"
{
echo
echo "== rows (target other = smtpy) =="
head -1 "$PCSV"
tail -n +2 "$PCSV"; tail -n +2 "$SCSV"
echo
echo "== medians over $REPS run(s) of $N messages; delivered = reached smtp-sink =="
printf '%-6s %-5s %15s %15s %15s %15s %10s %10s\n' size conc postfix_accept postfix_deliver \
  smtpy_accept smtpy_deliver pf_cpu_ms smtpy_cpu_ms
for size in $SIZES; do for conc in $CONCS; do
  awk -F, -v s="$size" -v c="$conc" -v n="$N" -v reps="$REPS" '
    function med(arr, k,   i, j, t) { # median of arr[1..k]
      for (i = 2; i <= k; i++) { t = arr[i]; for (j = i - 1; j >= 1 && arr[j] > t; j--) arr[j+1] = arr[j]; arr[j+1] = t }
      return k == 0 ? "nan" : (k % 2 ? arr[(k+1)/2] : (arr[k/2] + arr[k/2+1]) / 2) }
    FNR == 1 { f++; next }
    $2 == s && $3 == c { t = (f == 1 ? "p" : "s"); k[t]++
      acc[t, k[t]] = $8; del[t, k[t]] = $9; cpu[t, k[t]] = ($10 > 0 ? 1000 * $14 / $10 : 0)
      if ($10 < n) short[t] = short[t] " rep" $4 ":" $10 "/" n }
    END {
      for (x = 1; x <= k["p"]; x++) { pa[x] = acc["p", x]; pd[x] = del["p", x]; pc[x] = cpu["p", x] }
      for (x = 1; x <= k["s"]; x++) { sa[x] = acc["s", x]; sd[x] = del["s", x]; sc[x] = cpu["s", x] }
      mpa = med(pa, k["p"]); mpd = med(pd, k["p"]); mpc = med(pc, k["p"])
      msa = med(sa, k["s"]); msd = med(sd, k["s"]); msc = med(sc, k["s"])
      printf "%-6s %-5s %15.0f %15.0f %15.0f %15.0f %10.2f %10.2f\n", s, c, mpa, mpd, msa, msd, mpc, msc
      if (short["p"] != "") printf "  postfix delivered fewer than N:%s\n", short["p"]
      if (short["s"] != "") printf "  smtpy delivered fewer than N:%s\n", short["s"]
      ratio[s, c] = (mpd > 0 ? msd / mpd : 0)
      printf "RATIO size=%s conc=%s ratio smtpy/postfix %.2f\n", s, c, ratio[s, c] }' "$PCSV" "$SCSV"
done; done | tee "$WORK/medians.txt" | grep -v '^RATIO'
echo "(cpu_ms = server CPU ms per delivered message: Postfix's whole process tree, smtpy's process)"
echo
echo "== ratios: delivered msgs/s, smtpy / postfix (target >= 2.0 at size=1024 conc=50) =="
sed -n 's/^RATIO //p' "$WORK/medians.txt"
echo
for size in $SIZES; do for conc in $CONCS; do
  echo "smtpy peak RSS during size=$size conc=$conc: ${CELL_PEAK[$size,$conc]:-?} MB"
done; done
echo "smtpy peak RSS $PEAK_MB MB  (target < 100 MB at 50 sessions; RSS at stop ${FINAL_RSS:-?} MB)"
echo "smtpy seeding: $NALIASES aliases in $SEED_S s"
echo "smtpy exit status after SIGTERM: $SMTPY_RC"
echo "postfix $POSTFIX_VERSION; CSVs: $PCSV $SCSV; smtpy log: $OUTDIR/smtpy.log"
} | tee "$OUTDIR/summary.txt"
[ "$SMTPY_RC" = 0 ]
