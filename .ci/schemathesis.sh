#!/usr/bin/env bash
# Property-based checks of the HTTP API against its own OpenAPI document:
# starts the built reference server (target/debug/examples/server) on a
# temporary data directory and free loopback ports, creates an admin API key
# with the command line, and runs schemathesis against
# http://127.0.0.1:PORT/api/v1/openapi.json with that key. Fails on any 5xx
# and on any response that does not match the document (status code,
# content type, body schema). Installs nothing (.ci/run pip-installs a pinned
# schemathesis); talks to loopback only; always stops the server.
#
# Knobs (environment): SCHEMATHESIS_MAX_EXAMPLES (default 25 per operation),
# SCHEMATHESIS_TIME_LIMIT (seconds, default 600), SCHEMATHESIS_SEED
# (default 1: reproducible runs), SMTPY_SERVER_BIN.
set -euo pipefail
cd "$(dirname "$0")/.."

bin="${SMTPY_SERVER_BIN:-target/debug/examples/server}"
max_examples="${SCHEMATHESIS_MAX_EXAMPLES:-25}"
time_limit="${SCHEMATHESIS_TIME_LIMIT:-600}"
seed="${SCHEMATHESIS_SEED:-1}"

if [ ! -x "$bin" ]; then
  echo "schemathesis.sh: $bin is not built (cargo test --workspace builds it)" >&2
  exit 1
fi
# The console script, or the module when pip put scripts off PATH.
if command -v schemathesis >/dev/null; then
  st=(schemathesis)
elif python3 -c "import schemathesis.cli" 2>/dev/null; then
  st=(python3 -m schemathesis.cli)
else
  echo "schemathesis.sh: schemathesis is not installed (.ci/run installs it)" >&2
  exit 1
fi

# The developer's SMTPY_* settings must not reach the test server.
while IFS= read -r var; do unset "$var"; done < <(compgen -e | grep '^SMTPY_' || true)

work="$(mktemp -d)"
server_pid=""
cleanup() {
  if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}
smtp_port="$(free_port)"
http_port="$(free_port)"
relay_port="$(free_port)" # nothing listens there: queued mail stays queued

cat > "$work/smtpy.toml" <<EOF
hostname = "mx.schemathesis.test"
data_dir = "$work/data"
[smtp]
listen = ["127.0.0.1:$smtp_port"]
[delivery]
relay = "smtp://127.0.0.1:$relay_port"
[auth]
dns_records_file = "$work/dns.toml"
[http]
listen = "127.0.0.1:$http_port"
# One key makes every request of the run: keep its rate limit out of the way.
api_key_requests_per_minute = 1000000
EOF
# Domain checks and authentication answer from this file: no real DNS.
printf '[txt]\n[ip]\n[mx]\n' > "$work/dns.toml"

key="$("$bin" --config "$work/smtpy.toml" admin user create --email admin@schemathesis.test --admin | grep '^smtpy_')"
if [ -z "$key" ]; then
  echo "schemathesis.sh: admin user create printed no key" >&2
  exit 1
fi

RUST_LOG=warn "$bin" --config "$work/smtpy.toml" serve 2> "$work/server.log" &
server_pid=$!

base="http://127.0.0.1:$http_port"
ready=""
for _ in $(seq 300); do
  if ! kill -0 "$server_pid" 2>/dev/null; then
    echo "schemathesis.sh: the server exited:" >&2
    cat "$work/server.log" >&2
    exit 1
  fi
  if python3 -c "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('$base/readyz', timeout=2).status == 200 else 1)" 2>/dev/null; then
    ready=yes
    break
  fi
  sleep 0.1
done
if [ -z "$ready" ]; then
  echo "schemathesis.sh: the API did not become ready on $base" >&2
  cat "$work/server.log" >&2
  exit 1
fi

checks="not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance"
echo "schemathesis $(python3 -c 'import schemathesis; print(schemathesis.__version__)') against $base/api/v1/openapi.json (checks: $checks; max $max_examples examples per operation; seed $seed; limit ${time_limit}s)"
status=0
# From the temporary directory: schemathesis keeps its caches in the
# working directory, and they must not land in the repository.
cd "$work"
timeout --kill-after=10 "$time_limit" \
  "${st[@]}" run "$base/api/v1/openapi.json" \
    --header "Authorization: Bearer $key" \
    --checks "$checks" \
    --max-examples "$max_examples" \
    --seed "$seed" \
    --workers 2 \
    --request-timeout 10 \
    --generation-database none \
    --no-color \
  || status=$?

if [ "$status" -eq 124 ] || [ "$status" -eq 137 ]; then
  echo "schemathesis.sh: schemathesis did not finish within ${time_limit}s" >&2
fi
if ! kill -0 "$server_pid" 2>/dev/null; then
  echo "schemathesis.sh: the server died during the run" >&2
  status=1
fi
if [ "$status" -ne 0 ]; then
  echo "--- server log (last 50 lines)" >&2
  tail -n 50 "$work/server.log" >&2
fi
exit "$status"
