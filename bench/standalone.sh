#!/usr/bin/env bash
# bench/standalone.sh: the standalone appliance benchmark (`make bench` builds, then runs this).
#
# In one run, on this machine, against the binaries in build/release:
#   1. raw C_Sign rate for ecdsa-p256 with 1 and 2 threads on a throw-away SoftHSM token
#      (bench/hsm_baseline through bench/with-softhsm): the denominator of the ratios;
#   2. a var dir (scripts/dev-setup) and signetd --plain-http on it: first-run setup, one signer
#      client, the benchmark key, then ecdsa-p256 keys created through POST /v1/keys with a bounded
#      number of parallel requests until --keys are in the store or --key-budget runs out;
#   3. over keep-alive plain HTTP on loopback (wrk + bench/sign.lua): single-digest sign,
#      nonce-bearing sign and 256-digest batch sign, each after a warm-up;
#   4. signetd stopped: raw C_Sign again, on the daemon's own token with all its keys (information:
#      what the token's size costs the HSM itself);
#   5. signetd restarted with TLS on the same var dir: time from exec to /v1/health/ready == 200,
#      idle VmRSS, first (cold) signature, then single-digest sign over HTTPS;
# then prints a table of figures, ratios and targets. A MISS is reported in the table, never as an
# exit status; the command fails only when a step cannot run.
#
# Usage: bench/standalone.sh [--seconds S] [--warmup S] [--keys N] [--key-budget S]
#          [--connections C] [--batch-connections C] [--key-parallel P] [--baseline-seconds S]
#          [--idle S] [--port N] [--build DIR] [--var DIR] [--keep] [--verbose]
#   --var DIR   use (and keep) DIR as the var dir; a later run with the same DIR reuses its tokens,
#               store and keys, and only creates the keys still missing.

# r_*, rate_*, p50_*, p99_*, err_* are assigned indirectly (printf -v), which shellcheck cannot see.
# shellcheck disable=SC2154
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=$root/build/release
seconds=10           # measured seconds per REST mode
warmup=3             # warm-up seconds before each REST mode
keys=10000           # keys wanted in the store for the start-up and RSS rows
key_budget=480       # at most this many seconds creating keys
connections=8        # wrk connections (requests in flight) for single-digest modes
batch_connections=2  # wrk connections for batch mode (each request is 256 signatures)
key_parallel=4       # parallel POST /v1/keys requests while filling the store
baseline_seconds=5   # hsm_baseline --seconds (per cell)
idle=3               # seconds idle after ready before reading VmRSS
port=""
var=""
keep=false
verbose=false

usage() { sed -n '2,23p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-2}"; }
while [[ $# -gt 0 ]]; do
  case $1 in
    --seconds) seconds=$2; shift 2 ;;
    --warmup) warmup=$2; shift 2 ;;
    --keys) keys=$2; shift 2 ;;
    --key-budget) key_budget=$2; shift 2 ;;
    --connections) connections=$2; shift 2 ;;
    --batch-connections) batch_connections=$2; shift 2 ;;
    --key-parallel) key_parallel=$2; shift 2 ;;
    --baseline-seconds) baseline_seconds=$2; shift 2 ;;
    --idle) idle=$2; shift 2 ;;
    --port) port=$2; shift 2 ;;
    --build) build=$(cd "$2" && pwd); shift 2 ;;
    --var) mkdir -p "$2"; var=$(cd "$2" && pwd); shift 2 ;;
    --keep) keep=true; shift ;;
    --verbose) verbose=true; shift ;;
    -h|--help) usage 0 ;;
    *) echo "standalone.sh: unknown option $1" >&2; usage ;;
  esac
done

say() { printf 'bench: %s\n' "$*"; }
die() { printf 'bench: FAILED: %s\n' "$*" >&2; exit 1; }

signetd=$build/daemon/signetd
signetctl=$build/daemon/signetctl
baseline=$build/bench/hsm_baseline
for bin in "$signetd" "$signetctl" "$baseline"; do
  [[ -x $bin ]] || die "$bin is missing: run 'make bench' (it builds the release preset first)"
done
for tool in wrk curl jq softhsm2-util timeout ss; do
  command -v "$tool" >/dev/null || die "$tool is not installed (scripts/install-deps installs it)"
done

# ---- work dir, processes, cleanup ---------------------------------------------------------------
work=$(mktemp -d "${TMPDIR:-/tmp}/signet-bench-standalone-XXXXXX")
chmod 700 "$work"
[[ -n $var ]] || var=$work/var
daemon_pid=""  # signetd, while it runs
child_pid=""   # the load generator or hsm_baseline, while it runs
cleanup() {
  local rc=$?
  if [[ -n $child_pid ]] && kill -0 "$child_pid" 2>/dev/null; then
    kill -TERM "$child_pid" 2>/dev/null || true
    wait "$child_pid" 2>/dev/null || true
  fi
  if [[ -n $daemon_pid ]] && kill -0 "$daemon_pid" 2>/dev/null; then
    kill -TERM "$daemon_pid" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$daemon_pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$daemon_pid" 2>/dev/null || true
    wait "$daemon_pid" 2>/dev/null || true
  fi
  if [[ $keep == true || $rc -ne 0 ]]; then
    echo "bench: logs kept in $work; var dir $var (holds PINs and tokens: rm -rf when done)" >&2
  else
    rm -rf "$work"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [[ -z $port ]]; then
  # shellcheck source=scripts/pair-lib.sh
  source "$root/scripts/pair-lib.sh"
  pair_prog=standalone.sh
  port=$(pair_free_port) || exit 1  # below the ephemeral range, unused now
fi

export SOFTHSM2_CONF=$var/softhsm2.conf
admin_token=$var/bench-admin.token
signer_token=$var/bench-signer.token
state=$var/bench-state  # key_id=... of the benchmark key, once created

# bg_run LOG COMMAND...: runs COMMAND in the background with its output in LOG and waits for it
# (so a signal reaches the EXIT trap at once and the trap can stop it by pid). Returns its status.
bg_run() {
  local log=$1 rc=0
  shift
  "$@" >"$log" 2>&1 &
  child_pid=$!
  wait "$child_pid" || rc=$?
  child_pid=""
  return $rc
}

# now_ns: CLOCK_REALTIME in nanoseconds (bash's EPOCHREALTIME: no process spawn). The daemon's log
# timestamps are CLOCK_REALTIME too.
now_ns() { local t=${EPOCHREALTIME/./}; echo $((10#$t * 1000)); }
secs() { awk -v n="$1" -v p="${2:-2}" 'BEGIN{printf "%.*f", p, n/1e9}'; }

# start_daemon LOG SCHEME [flags...]: starts signetd on the var dir; sets daemon_pid and base_url.
start_daemon() {
  daemon_log=$1
  local scheme=$2
  shift 2
  start_ns=$(now_ns)
  "$signetd" --config "$var/signetd.toml" --listen "127.0.0.1:$port" --log-level info "$@" \
    >"$daemon_log" 2>&1 &
  daemon_pid=$!
  base_url="$scheme://127.0.0.1:$port"
}

# wait_ready TIMEOUT_S: polls /v1/health/ready until 200; sets ready_ns.
wait_ready() {
  local deadline=$(($(now_ns) + $1 * 1000000000)) code
  while :; do
    code=$(curl -sk -o /dev/null -w '%{http_code}' --max-time 2 "$base_url/v1/health/ready" || true)
    if [[ $code == 200 ]]; then ready_ns=$(now_ns); return 0; fi
    kill -0 "$daemon_pid" 2>/dev/null || { tail -20 "$daemon_log" >&2; die "signetd exited during start-up"; }
    [[ $(now_ns) -lt $deadline ]] || { tail -20 "$daemon_log" >&2; die "signetd not ready after $1 s"; }
    sleep 0.01
  done
}

stop_daemon() {
  kill -TERM "$daemon_pid"
  for _ in $(seq 1 200); do kill -0 "$daemon_pid" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$daemon_pid" 2>/dev/null; then
    say "signetd did not stop within 20 s of SIGTERM; killing it"
    kill -KILL "$daemon_pid" 2>/dev/null || true
  fi
  wait "$daemon_pid" 2>/dev/null || true
  daemon_pid=""
}

vm_kb() { awk -v k="$1:" '$1 == k { print $2 }' "/proc/$daemon_pid/status"; }
mib() { awk -v k="$1" 'BEGIN{printf "%.1f", k/1024}'; }

# log_ns PATTERN: CLOCK_REALTIME ns of the first line of the daemon log matching PATTERN (or "").
log_ns() {
  local ts
  ts=$(grep -m1 -E -e "$1" "$daemon_log" | sed -n 's/^ts=\([^ ]*\).*/\1/p')
  if [[ -n $ts ]]; then date -d "$ts" +%s%N; fi
}

# startup_breakdown: where start-up time went, from the daemon's own log (seconds after exec).
startup_breakdown() {
  local out="" label pattern t
  while IFS='|' read -r label pattern; do
    t=$(log_ns "$pattern")
    [[ -n $t ]] && out+="$label $(secs $((t - start_ns))), "
  done <<'EOF'
store+catalog loaded|event=opened
HSM module loaded|event=hsm_module_loaded
signing token open|event=signing_token_open
TLS identity|component=tls event=identity_
listening|event=listening
self-test passed|component=appliance event=ready
key handles cached|event=key_handles_cached
EOF
  say "  start-up, s after exec (signetd's log): ${out%, }"
  say "  self-test per algorithm, ms: $(sed -n 's/.*event=self_test algorithm=\([^ ]*\).*elapsed_us=\([0-9]*\).*/\1 \2/p' "$daemon_log" |
    awk '{printf "%s%s %.0f", (NR > 1 ? ", " : ""), $1, $2/1000}')"
}

# api METHOD PATH TOKEN_FILE [BODY]: one request; prints the body; fails on HTTP >= 400.
api() {
  local method=$1 path=$2 token=$3 body=${4:-} out code
  out=$work/api.out
  code=$(curl -sk --max-time 120 -o "$out" -w '%{http_code}' -X "$method" \
    -H "Authorization: Bearer $(head -n1 "$token")" -H 'Content-Type: application/json' \
    ${body:+--data "$body"} "$base_url$path") || die "$method $path: curl failed"
  [[ $code -lt 400 ]] || die "$method $path: HTTP $code: $(head -c 300 "$out")"
  cat "$out"
}

# first_sign: one signature on a new connection right after start (the key's HSM handle is not
# cached yet). Sets cold_ms (whole request) and cold_tls_ms (of which TCP + TLS handshake).
first_sign() {
  local out=$work/first-sign.out timing code
  timing=$(curl -sk --max-time 120 -o "$out" -w '%{http_code} %{time_appconnect} %{time_total}' \
    -H "Authorization: Bearer $(head -n1 "$signer_token")" -H 'Content-Type: application/json' \
    --data "{\"digest\":\"$digest\"}" "$base_url/v1/keys/$key_id/sign") || die "first signature: curl failed"
  read -r code cold_tls_ms cold_ms <<<"$timing"
  [[ $code == 200 ]] || die "first signature after start: HTTP $code: $(head -c 300 "$out")"
  cold_ms=$(awk -v v="$cold_ms" 'BEGIN{printf "%.0f", v*1000}')
  cold_tls_ms=$(awk -v v="$cold_tls_ms" 'BEGIN{printf "%.0f", v*1000}')
}

# wrk_run NAME MODE CONNECTIONS DURATION: one wrk run of bench/sign.lua; sets r_* from its
# SIGNET_RESULT line. Bounded by timeout(1) in case the server stops answering.
# key_for MODE: nonce-bearing signatures need a key whose policy is "nonces": "envelope" (such a
# key signs nothing but envelopes); the other modes use the plain key.
key_for() { if [[ $1 == nonce ]]; then echo "$nonce_key_id"; else echo "$key_id"; fi; }

wrk_run() {
  local name=$1 mode=$2 conns=$3 dur=$4 log=$work/wrk-$1.log line kv
  bg_run "$log" timeout -k 5 $((dur + 30)) wrk -t1 -c"$conns" -d"${dur}s" --timeout 10s --latency \
    -s "$root/bench/sign.lua" "$base_url" -- "$mode" "$signer_token" "$(key_for "$mode")" 256 ||
    { cat "$log" >&2; die "wrk ($name) failed"; }
  [[ $verbose == true ]] && sed 's/^/    /' "$log"
  line=$(sed -n 's/^SIGNET_RESULT //p' "$log")
  [[ -n $line ]] || { cat "$log" >&2; die "wrk ($name) printed no result"; }
  for kv in $line; do printf -v "r_${kv%%=*}" '%s' "${kv#*=}"; done
}

# measure NAME MODE CONNECTIONS SIGNATURES_PER_REQUEST: warm-up, then the measured run. Sets
# rate_NAME (signatures/s in 2xx answers), p50_NAME, p99_NAME (ms), err_NAME (failed requests).
measure() {
  local name=$1 mode=$2 conns=$3 per=$4
  wrk_run "$name-warmup" "$mode" "$conns" "$warmup"
  wrk_run "$name" "$mode" "$conns" "$seconds"
  printf -v "rate_$name" '%s' "$(awk -v n=$((r_requests - r_non2xx)) -v p="$per" -v us="$r_duration_us" 'BEGIN{printf "%.0f", n*p/(us/1e6)}')"
  printf -v "p50_$name" '%s' "$(awk -v v="$r_p50_us" 'BEGIN{printf "%.2f", v/1000}')"
  printf -v "p99_$name" '%s' "$(awk -v v="$r_p99_us" 'BEGIN{printf "%.2f", v/1000}')"
  printf -v "err_$name" '%s' $((r_non2xx + r_connect + r_read + r_write + r_timeout))
  local rate=rate_$name p50=p50_$name p99=p99_$name err=err_$name
  say "  $name: ${!rate} signatures/s, p50 ${!p50} ms, p99 ${!p99} ms ($r_requests requests, ${!err} failed, c=$conns)"
}

# baseline_rows LOG: "threads raw" for ecdsa-p256 from hsm_baseline's table.
baseline_rows() { awk '$1 == "ecdsa-p256" { print $2, $3 }' "$1"; }

bench_start=$(now_ns)
say "work dir $work, var dir $var, port $port; $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg)"
say "plan: ${warmup} s warm-up + ${seconds} s per REST mode, wrk -t1 -c$connections (batch -c$batch_connections);" \
  "$keys keys in the store ($key_parallel parallel creates, at most $key_budget s)"

# ---- 1. raw HSM baseline on a throw-away token --------------------------------------------------
say "1/5 raw C_Sign baseline (throw-away SoftHSM token, ${baseline_seconds} s per cell)"
bg_run "$work/baseline.log" env -u SOFTHSM2_CONF "$root/bench/with-softhsm" "$baseline" \
  --algorithms ecdsa-p256 --threads 1,2 --seconds "$baseline_seconds" ||
  { cat "$work/baseline.log" >&2; die "hsm_baseline failed"; }
sed 's/^/    /' "$work/baseline.log"
raw1=$(baseline_rows "$work/baseline.log" | awk '$1 == 1 { print $2 }')
raw2=$(baseline_rows "$work/baseline.log" | awk '$1 == 2 { print $2 }')
[[ -n $raw1 && -n $raw2 ]] || die "no ecdsa-p256 rows in hsm_baseline's output"
raw=$(awk -v a="$raw1" -v b="$raw2" 'BEGIN{print (a > b ? a : b)}')

# ---- 2. var dir, plain-HTTP daemon, setup, keys --------------------------------------------------
say "2/5 var dir, signetd --plain-http, setup, keys"
SIGNET_VAR=$var SIGNET_LISTEN=127.0.0.1:$port "$root/scripts/dev-setup" >"$work/dev-setup.log" 2>&1 ||
  { cat "$work/dev-setup.log" >&2; die "scripts/dev-setup failed"; }
start_daemon "$work/signetd-plain.log" http --plain-http
wait_ready 120
store_keys0=$(sed -n 's/.*event=opened .* keys=\([0-9]*\).*/\1/p' "$daemon_log" | head -n1)
say "  ready after $(secs $((ready_ns - start_ns))) s with ${store_keys0:-?} keys in the store"
sleep "$idle"
rss0_kb=$(vm_kb VmRSS)
say "  idle VmRSS $(mib "$rss0_kb") MiB with ${store_keys0:-?} keys"

if [[ ! -s $admin_token ]]; then
  [[ -s $var/data/setup-token ]] || die "no admin token in $var and no setup token: cannot set up"
  (umask 077 && "$signetctl" --url "$base_url" setup --setup-token-file "$var/data/setup-token" \
    --name bench-admin --save-token "$admin_token") >/dev/null 2>"$work/setup.err" ||
    { cat "$work/setup.err" >&2; die "signetctl setup failed"; }
fi
if [[ ! -s $signer_token ]]; then
  (umask 077 && api POST /v1/clients "$admin_token" '{"name":"bench-signer","role":"signer"}' |
    jq -er .token >"$signer_token") || die "cannot create the signer client"
fi
key_id=$(sed -n 's/^key_id=//p' "$state" 2>/dev/null || true)
nonce_key_id=$(sed -n 's/^nonce_key_id=//p' "$state" 2>/dev/null || true)
if [[ -z $key_id || -z $nonce_key_id ]]; then
  key_id=$(api POST /v1/keys "$admin_token" '{"algorithm":"ecdsa-p256","label":"bench-sign"}' | jq -er .id)
  nonce_key_id=$(api POST /v1/keys "$admin_token" \
    '{"algorithm":"ecdsa-p256","label":"bench-nonce","policy":{"nonces":"envelope"}}' | jq -er .id)
  printf 'key_id=%s\nnonce_key_id=%s\n' "$key_id" "$nonce_key_id" >"$state"
fi

# Pre-flight: every mode answers 200 with the expected shape before anything is timed.
digest=$(head -c32 /dev/urandom | od -An -tx1 | tr -d ' \n')
api POST "/v1/keys/$key_id/sign" "$signer_token" "{\"digest\":\"$digest\"}" | jq -e '.signature | length > 0' >/dev/null ||
  die "sign pre-flight: no signature"
api POST "/v1/keys/$nonce_key_id/sign" "$signer_token" "{\"digest\":\"$digest\",\"nonce\":true}" | jq -e '.nonce >= 0' >/dev/null ||
  die "nonce pre-flight: no nonce in the answer"
batch_body=$(jq -cn --arg d "$digest" '{digests: [range(256) | $d]}')
[[ $(api POST "/v1/keys/$key_id/sign-batch" "$signer_token" "$batch_body" | jq '.signatures | length') == 256 ]] ||
  die "batch pre-flight: not 256 signatures"

have=${store_keys0:-0}
[[ $have -gt 0 ]] || have=2  # the two benchmark keys just created
fill=$((keys - have))
fill_rate="-"
fill_failed=""
if [[ $fill -gt 0 ]]; then
  say "  creating $fill ecdsa-p256 keys through POST /v1/keys, $key_parallel in parallel, for at most $key_budget s"
  fill_start=$(now_ns)
  : >"$work/keys.log"  # exists before tail opens it
  timeout -k 5 $((key_budget + 30)) wrk -t1 -c"$key_parallel" -d"${key_budget}s" --timeout 60s \
    -s "$root/bench/create_keys.lua" "$base_url" -- "$fill" "$admin_token" "bench-fill-$(date +%s)-" \
    >>"$work/keys.log" 2>&1 &
  child_pid=$!
  # Progress, in the background too: only `wait` lets a signal reach the EXIT trap at once.
  tail -n +1 -f --pid="$child_pid" "$work/keys.log" | grep --line-buffered '^  keys:' &
  progress_pid=$!
  wait "$child_pid" || true
  child_pid=""
  wait "$progress_pid" || true  # tail ends within a second of wrk
  fill_s=$(secs $(($(now_ns) - fill_start)) 1)
  created=$(sed -n 's/^SIGNET_KEYS created=\([0-9]*\).*/\1/p' "$work/keys.log")
  fill_failed=$(sed -n 's/^SIGNET_KEYS .*failed=\([0-9]*\).*/\1/p' "$work/keys.log")
  [[ -n $created ]] || { cat "$work/keys.log" >&2; die "key creation printed no result"; }
  fill_rate=$(awk -v n="$created" -v s="$fill_s" 'BEGIN{printf "%.1f", n/s}')
  say "  $created keys created in $fill_s s ($fill_rate keys/s on average), $fill_failed requests failed"
  [[ $created -ge $fill ]] || say "  WARNING: the key budget ran out: the start-up and RSS rows are measured with fewer than $keys keys"
fi

# ---- 3. plain HTTP modes ------------------------------------------------------------------------
say "3/5 REST over keep-alive plain HTTP ($base_url)"
measure http sign "$connections" 1
measure nonce nonce "$connections" 1
measure batch batch "$batch_connections" 256
stop_daemon

# ---- 4. raw C_Sign on the daemon's own token ----------------------------------------------------
say "4/5 raw C_Sign on the daemon's token (daemon stopped, ${baseline_seconds} s per cell)"
bg_run "$work/baseline-token.log" "$baseline" --module "${SIGNET_PKCS11_MODULE:-/usr/lib/softhsm/libsofthsm2.so}" \
  --token signet --pin-file "$var/pin" --algorithms ecdsa-p256 --threads 1,2 --seconds "$baseline_seconds" ||
  { cat "$work/baseline-token.log" >&2; die "hsm_baseline on the daemon token failed"; }
sed 's/^/    /' "$work/baseline-token.log"
rawtok=$(baseline_rows "$work/baseline-token.log" | awk 'BEGIN{m=0} $2 > m { m = $2 } END{print m}')
# SoftHSM alone on the daemon's token: C_Initialize (loads every object) + login, and its RSS.
"$baseline" --load-only --module "${SIGNET_PKCS11_MODULE:-/usr/lib/softhsm/libsofthsm2.so}" \
  --token signet --pin-file "$var/pin" >"$work/load-only.log" ||
  { cat "$work/load-only.log" >&2; die "hsm_baseline --load-only failed"; }
hsm_load_s=$(sed -n 's/.*load_s=\([0-9.]*\).*/\1/p' "$work/load-only.log")
hsm_open_s=$(sed -n 's/.*open_s=\([0-9.]*\).*/\1/p' "$work/load-only.log")
hsm_rss_kb=$(sed -n 's/.*rss_kib=\([0-9]*\).*/\1/p' "$work/load-only.log")
hsm_start_s=$(awk -v a="$hsm_load_s" -v b="$hsm_open_s" 'BEGIN{printf "%.3f", a+b}')
say "  SoftHSM alone on this token: C_Initialize ${hsm_load_s} s + login ${hsm_open_s} s, VmRSS $(mib "$hsm_rss_kb") MiB"

# ---- 5. TLS daemon: start-up, idle RSS, cold signature, HTTPS -----------------------------------
say "5/5 signetd with TLS on the same var dir: start-up, idle RSS, HTTPS"
start_daemon "$work/signetd-tls.log" https
wait_ready 300
ready_s=$(secs $((ready_ns - start_ns)) 3)
store_keys=$(sed -n 's/.*event=opened .* keys=\([0-9]*\).*/\1/p' "$daemon_log" | head -n1)
say "  ready after $ready_s s with $store_keys keys in the store"
startup_breakdown
sleep "$idle"
rss_kb=$(vm_kb VmRSS)
hwm_kb=$(vm_kb VmHWM)
say "  idle VmRSS $(mib "$rss_kb") MiB after $idle s (VmHWM $(mib "$hwm_kb") MiB)"
if [[ -n ${store_keys0:-} && $store_keys -gt $store_keys0 ]]; then
  say "  VmRSS grew $(awk -v a="$rss0_kb" -v b="$rss_kb" -v n=$((store_keys - store_keys0)) 'BEGIN{printf "%.1f", (b-a)/n}') KiB per key" \
    "($(mib "$rss0_kb") MiB at $store_keys0 keys over plain HTTP, $(mib "$rss_kb") MiB at $store_keys keys with TLS)"
fi
first_sign
say "  first signature after start (cold key-handle cache): $cold_ms ms, of which $cold_tls_ms ms connect + TLS handshake"
measure https sign "$connections" 1
stop_daemon

# ---- table ----------------------------------------------------------------------------------------
verdict() { awk -v v="$1" -v l="$3" -v op="$2" 'BEGIN{ok = (op == ">=") ? v >= l : v <= l; print ok ? "PASS" : "MISS"}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN{ if (b > 0) printf "%.2fx", a/b; else print "-" }'; }
# judged VALUE OP LIMIT ERRORS: the verdict, marked when requests failed.
judged() { local v; v=$(verdict "$1" "$2" "$3"); [[ ${4:-0} -eq 0 ]] && echo "$v" || echo "$v ($4 failed)"; }
few=""
[[ $store_keys -ge $keys ]] || few=" *"

rows=()
row() { rows+=("$(printf '%-46s %13s %-6s %7s %-14s %s' "$@")"); }
row "raw C_Sign ecdsa-p256, 1 thread" "$raw1" "sig/s" "$(ratio "$raw1" "$raw")" "" ""
row "raw C_Sign ecdsa-p256, 2 threads" "$raw2" "sig/s" "$(ratio "$raw2" "$raw")" "" ""
row "raw C_Sign on the daemon's token ($store_keys keys)" "$rawtok" "sig/s" "$(ratio "$rawtok" "$raw")" "(information)" ""
row "REST sign, plain HTTP keep-alive" "$rate_http" "sig/s" "$(ratio "$rate_http" "$raw")" ">= 0.80x raw" \
  "$(judged "$(ratio "$rate_http" "$raw" | tr -d x)" ">=" 0.80 "$err_http")"
row "  latency p50 / p99" "$p50_http / $p99_http" "ms" "" "" ""
row "REST sign, HTTPS keep-alive" "$rate_https" "sig/s" "$(ratio "$rate_https" "$raw")" ">= 0.70x raw" \
  "$(judged "$(ratio "$rate_https" "$raw" | tr -d x)" ">=" 0.70 "$err_https")"
row "  latency p50 / p99" "$p50_https / $p99_https" "ms" "" "" ""
row "batch sign, 256 digests/request, HTTP" "$rate_batch" "sig/s" "$(ratio "$rate_batch" "$raw")" ">= 0.95x raw" \
  "$(judged "$(ratio "$rate_batch" "$raw" | tr -d x)" ">=" 0.95 "$err_batch")"
row "  latency p50 / p99 (per request)" "$p50_batch / $p99_batch" "ms" "" "" ""
row "nonce sign (\"nonce\": true), HTTP" "$rate_nonce" "sig/s" "$(ratio "$rate_nonce" "$rate_http")" ">= 0.90x REST" \
  "$(judged "$(ratio "$rate_nonce" "$rate_http" | tr -d x)" ">=" 0.90 "$err_nonce")"
row "  latency p50 / p99" "$p50_nonce / $p99_nonce" "ms" "" "" ""
row "start to ready, TLS, $store_keys keys$few" "$ready_s" "s" "" "<= 1 s" "$(verdict "$ready_s" "<=" 1)$few"
row "idle VmRSS after ${idle} s, $store_keys keys$few" "$(mib "$rss_kb")" "MiB" "" "<= 64 MiB" "$(verdict "$(mib "$rss_kb")" "<=" 64)$few"
row "  of which SoftHSM alone (C_Initialize + login)" "$hsm_start_s" "s" "" "(measured)" ""
row "  Signet's share of start to ready" "$(awk -v a="$ready_s" -v b="$hsm_start_s" 'BEGIN{printf "%.3f", a-b}')" "s" "" "<= 1 s" \
  "$(verdict "$(awk -v a="$ready_s" -v b="$hsm_start_s" 'BEGIN{printf "%.3f", a-b}')" "<=" 1)$few"
row "  of which SoftHSM alone (same token, own process)" "$(mib "$hsm_rss_kb")" "MiB" "" "(measured)" ""
row "  Signet's share of idle VmRSS" "$(mib $((rss_kb - hsm_rss_kb)))" "MiB" "" "<= 64 MiB" \
  "$(verdict "$(mib $((rss_kb - hsm_rss_kb)))" "<=" 64)$few"
row "first signature after start (cold handle)" "$cold_ms" "ms" "" "(information)" ""
row "key creation through the API, $key_parallel parallel" "$fill_rate" "keys/s" "" "(information)" \
  "${fill_failed:+$fill_failed failed}"

echo
echo "Signet standalone benchmark, $(date -u +%Y-%m-%dT%H:%M:%SZ), $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg), took $(secs $(($(now_ns) - bench_start)) 0) s"
echo "wrk -t1 -c$connections (batch -c$batch_connections), ${warmup} s warm-up + ${seconds} s per REST mode; signetd defaults"
echo "(io_threads 2, worker_threads 8, max_sessions 8); raw = the better of 1 and 2 threads = $raw sig/s"
printf '%-46s %13s %-6s %7s %-14s %s\n' "mode" "figure" "unit" "ratio" "target" "result"
printf '%s\n' "${rows[@]}"
[[ -z $few ]] || echo "* measured with $store_keys keys, not the $keys asked for: the key budget ($key_budget s) ran out"
