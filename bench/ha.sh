#!/usr/bin/env bash
# bench/ha.sh: the appliance-pair benchmark (`make bench-ha` builds, then runs this).
#
# In one run, on this machine, against the binaries in build/release, all on loopback over HTTPS:
#   1. three etcd members (heartbeat 50 ms, election 500 ms, --pre-vote=true), shared by every pair
#      below (each pair has its own [ha] cluster, i.e. its own etcd keyspace);
#   2. standalone: two signetd without [ha]; nonce-bearing sign ("nonce": true on a key whose
#      policy is "nonces": "envelope") with wrk + bench/sign.lua, on one of them alone (the
#      denominator of the ratios), then on both at once with the connections of a pair (a
#      reference: what sharing this host between two appliances costs without any pairing);
#      measured now and again after the pairs: each figure is the mean of both runs;
#   3. dual-active pairs, nonce_allocation fast, strict, then dense: two appliances prepared, set up and
#      paired as scripts/demo-pair does it (scripts/pair-lib.sh), a replicable ecdsa-p256 key with
#      --nonces envelope unwrapped on both; one wrk per appliance, both at once; aggregate rate and
#      the worse appliance's latency;
#   4. a hot-standby pair: nonce sign on the active (information), then --kills times: find the
#      active, kill -9 it while both appliances are polled with nonce-bearing sign requests (curl,
#      --pollers loops per appliance, each pausing --poll-ms between requests), record the time
#      from the kill to the first 200 on the new active, restart the
#      killed appliance and wait until it is the standby. Every nonce returned is recorded: none may
#      repeat, and the new active's nonces must lie above every nonce the old one returned;
# then prints a table of figures, ratios and targets. A MISS is reported in the table, never as an
# exit status; the command fails only when a step cannot run.
#
# Usage: bench/ha.sh [--kills N] [--seconds S] [--warmup S] [--connections C]
#          [--pair-connections C] [--workers W] [--pollers P] [--poll-ms MS] [--failover-timeout S]
#          [--alloc MODES] [--build DIR] [--no-pin] [--keep] [--verbose] [--help]
#   --kills N             failovers measured (default 20); 0 skips the hot-standby pair (cell 5)
#   --alloc MODES         dual-active allocation modes measured, space or comma separated
#                         (default "fast strict dense"; dense has no target); e.g. --alloc strict
#                         --kills 0 for that cell only
#   --seconds S           measured seconds per throughput cell (default 10), after --warmup S (3)
#   --connections C       wrk connections against the standalone appliance and the hot-standby
#                         active (default 128: throughput is measured at saturation, where every
#                         cell is bound by this host's CPU; with few requests in flight a strict
#                         pair, whose requests each wait for an etcd commit, measures its latency
#                         instead: e.g. --connections 8 --workers 8 shows that)
#   --pair-connections C  wrk connections per appliance of a dual-active pair and of the two
#                         standalone appliances at once (default half of --connections: the same
#                         requests in flight as standalone)
#   --workers W           [server] worker_threads of every appliance, standalone and paired
#                         (default 64; signetd's default is 8). Strict and dense requests wait for
#                         their batch on a worker, so a batch takes in at most that many
#   --pollers P           curl loops per appliance during a failover, staggered (default 3: one
#                         request with its TLS handshake takes tens of ms on a loaded 2-core box)
#   --poll-ms MS          pause between one poller's sign requests (default 10)
#   --failover-timeout S  a failover not done after S seconds counts as S (default 15)
#   --no-pin              leave every appliance on every CPU. By default (2 CPUs or more) each
#                         appliance of a dual-active pair, and each of the two standalone
#                         appliances measured at once, runs on half of the CPUs (taskset), as two
#                         machines split the hardware; the standalone measured alone and the
#                         hot-standby pair (one appliance signs) have every CPU; etcd and wrk
#                         are never pinned
#   --keep                keep the work dir (var dirs, logs, the nonces seen) instead of removing it

# r_*, rate_*, p50_*, p99_*, err_* are assigned indirectly (printf -v), which shellcheck cannot see.
# shellcheck disable=SC2154
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/pair-lib.sh
source "$root/scripts/pair-lib.sh"
pair_prog=bench
build=$root/build/release
kills=20
seconds=10
warmup=3
connections=128
workers=64
pair_connections=""
poll_ms=10
pollers=3
failover_timeout=15
keep=false
pin=true
verbose=false
alloc_modes="fast strict dense"

usage() { sed -n '2,54p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-2}"; }
while [[ $# -gt 0 ]]; do
  case $1 in
    --kills) kills=$2; shift 2 ;;
    --alloc) alloc_modes=${2//,/ }; shift 2 ;;
    --seconds) seconds=$2; shift 2 ;;
    --warmup) warmup=$2; shift 2 ;;
    --connections) connections=$2; shift 2 ;;
    --pair-connections) pair_connections=$2; shift 2 ;;
    --workers) workers=$2; shift 2 ;;
    --poll-ms) poll_ms=$2; shift 2 ;;
    --pollers) pollers=$2; shift 2 ;;
    --failover-timeout) failover_timeout=$2; shift 2 ;;
    --build) build=$(cd "$2" && pwd); shift 2 ;;
    --no-pin) pin=false; shift ;;
    --keep) keep=true; shift ;;
    --verbose) verbose=true; shift ;;
    -h|--help) usage 0 ;;
    *) echo "ha.sh: unknown option $1" >&2; usage ;;
  esac
done
for v in seconds warmup connections workers pollers poll_ms failover_timeout; do
  [[ ${!v} =~ ^[0-9]+$ && ${!v} -gt 0 ]] || { echo "ha.sh: --${v//_/-} must be a positive integer" >&2; exit 2; }
done
pair_signetd_args=(--worker-threads "$workers")
[[ $kills =~ ^[0-9]+$ ]] || { echo "ha.sh: --kills must be a non-negative integer" >&2; exit 2; }
for m in $alloc_modes; do
  [[ $m == fast || $m == strict || $m == dense ]] || { echo "ha.sh: --alloc takes fast, strict and/or dense, not $m" >&2; exit 2; }
done
[[ -n $pair_connections ]] || pair_connections=$((connections / 2 > 0 ? connections / 2 : 1))
[[ $pair_connections =~ ^[0-9]+$ && $pair_connections -gt 0 ]] || { echo "ha.sh: --pair-connections must be a positive integer" >&2; exit 2; }

say() { printf 'bench: %s\n' "$*"; }
die() { printf 'bench: FAILED: %s\n' "$*" >&2; exit 1; }

# The CPUs this script may use ("0-3", "2,5-7"): appliance 0 of a pinned pair gets the first half,
# appliance 1 the rest; "all" puts an appliance back on every one of them.
cpu_allowed=$(taskset -pc $$ | sed 's/.*: *//')
cpu_ids=()
IFS=, read -r -a cpu_parts <<<"$cpu_allowed"
for part in "${cpu_parts[@]}"; do
  if [[ $part == *-* ]]; then
    for ((c = ${part%-*}; c <= ${part#*-}; c++)); do cpu_ids+=("$c"); done
  else
    cpu_ids+=("$part")
  fi
done
cpus=${#cpu_ids[@]}
[[ $cpus -ge 2 ]] || pin=false
cpu_half=("$(IFS=,; echo "${cpu_ids[*]:0:cpus / 2}")" "$(IFS=,; echo "${cpu_ids[*]:cpus / 2}")")
# pin_to PID 0|1|all: every thread of PID onto that half of the CPUs, or all of them; nothing with
# --no-pin.
pin_to() {
  [[ $pin == true ]] || return 0
  local set=$cpu_allowed
  [[ $2 == all ]] || set=${cpu_half[$2]}
  taskset -a -p -c "$set" "$1" >/dev/null || die "taskset -p -c $set $1 failed"
}

pair_signetd=$build/daemon/signetd
pair_ctl_bin=$build/daemon/signetctl
for bin in "$pair_signetd" "$pair_ctl_bin"; do
  [[ -x $bin ]] || die "$bin is missing: run 'make bench-ha' (it builds the release preset first)"
done
for tool in etcd wrk curl jq softhsm2-util timeout ss taskset; do
  command -v "$tool" >/dev/null || die "$tool is not installed (scripts/install-deps installs it)"
done

# ---- work dir, processes, cleanup ---------------------------------------------------------------
work=$(mktemp -d "${TMPDIR:-/tmp}/signet-bench-ha-XXXXXX")
chmod 700 "$work"
children=()     # wrk runs and failover pollers, while they run
solo_pids=()    # the standalone signetds, while they run
cleanup() {
  local rc=$? pid
  trap - EXIT
  trap '' INT TERM  # a second signal must not cut the clean-up short (it is bounded)
  touch "$work/stop-pollers" 2>/dev/null || true
  for pid in "${children[@]}" "${solo_pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${children[@]}" "${solo_pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  pair_stop_all  # both appliances and the three etcd members
  if [[ $keep == true || $rc -ne 0 ]]; then
    echo "bench: work dir kept: $work (holds PINs and tokens: rm -rf when done)" >&2
  else
    rm -rf "$work"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

now_us() { echo "${EPOCHREALTIME/./}"; }
bench_start=$(now_us)

# Ports: three etcd client + three peer ports, the two standalone appliances, two per pair.
taken=()
take_port() { pair_free_port "${taken[@]}" || die "no free loopback port"; }  # then: taken+=(PORT)
pair_client_ports=()
pair_peer_ports=()
for i in 0 1 2; do
  p=$(take_port); taken+=("$p"); pair_client_ports+=("$p")
  p=$(take_port); taken+=("$p"); pair_peer_ports+=("$p")
done
solo_ports=()
for i in 0 1; do p=$(take_port); taken+=("$p"); solo_ports+=("$p"); done
declare -A phase_ports
for ph in fast strict dense hs; do
  a=$(take_port); taken+=("$a")
  b=$(take_port); taken+=("$b")
  phase_ports[$ph]="$a $b"
done
pair_root=$work/etcd
pair_etcd_token=signet-bench-ha-$$
digest=$(head -c32 /dev/urandom | od -An -tx1 | tr -d ' \n')
nonce_body="{\"digest\":\"$digest\",\"nonce\":true}"

# api BASE_URL METHOD PATH TOKEN_FILE [BODY]: one request; prints the body; fails on HTTP >= 400.
api() {
  local base=$1 method=$2 path=$3 token=$4 body=${5:-} out=$work/api.out code
  code=$(curl -sk --max-time 60 -o "$out" -w '%{http_code}' -X "$method" \
    -H "Authorization: Bearer $(head -n1 "$token")" -H 'Content-Type: application/json' \
    ${body:+--data "$body"} "$base$path") || { echo "curl failed: $method $base$path" >&2; return 1; }
  [[ $code -lt 400 ]] || { echo "HTTP $code: $method $base$path: $(head -c 300 "$out")" >&2; return 1; }
  cat "$out"
}

# sign_code BASE_URL TOKEN_FILE KEY: the HTTP status of one nonce-bearing sign request.
sign_code() {
  curl -sk --max-time 10 -o "$work/sign.out" -w '%{http_code}' \
    -H "Authorization: Bearer $(head -n1 "$2")" -H 'Content-Type: application/json' \
    --data "$nonce_body" "$1/v1/keys/$3/sign" || true
}

# wait_sign BASE_URL TOKEN_FILE KEY TIMEOUT_S: until a nonce-bearing signature answers 200.
wait_sign() {
  local deadline=$((SECONDS + $4)) code
  while :; do
    code=$(sign_code "$1" "$2" "$3")
    [[ $code == 200 ]] && jq -e '.nonce >= 0' "$work/sign.out" >/dev/null && return 0
    [[ $SECONDS -lt $deadline ]] || { echo "last answer: HTTP $code $(head -c 300 "$work/sign.out")" >&2; return 1; }
    sleep 0.2
  done
}

# make_signer BASE_URL ADMIN_TOKEN OUT_TOKEN_FILE: a signer client; its token goes to the file.
make_signer() {
  (umask 077 && api "$1" POST /v1/clients "$2" '{"name":"bench-signer","role":"signer"}' | jq -er .token >"$3")
}

# ---- wrk -----------------------------------------------------------------------------------------
# wrk_start NAME URL CONNECTIONS DURATION TOKEN_FILE KEY: one wrk of bench/sign.lua in nonce mode in
# the background (bounded by timeout(1)); its pid is appended to children.
wrk_start() {
  local name=$1 url=$2 conns=$3 dur=$4 token=$5 key=$6
  timeout -k 5 $((dur + 30)) wrk -t1 -c"$conns" -d"${dur}s" --timeout 10s --latency \
    -s "$root/bench/sign.lua" "$url" -- nonce "$token" "$key" >"$work/wrk-$name.log" 2>&1 &
  children+=($!)
}
# wrk_wait: waits for every wrk started; fails when one failed.
wrk_wait() {
  local pid rc=0
  for pid in "${children[@]}"; do wait "$pid" || rc=1; done
  children=()
  return $rc
}
# wrk_result NAME: sets r_* from wrk-NAME.log's SIGNET_RESULT line.
wrk_result() {
  local log=$work/wrk-$1.log line kv
  [[ $verbose == true ]] && sed 's/^/    /' "$log"
  line=$(sed -n 's/^SIGNET_RESULT //p' "$log")
  [[ -n $line ]] || { cat "$log" >&2; die "wrk ($1) printed no result"; }
  for kv in $line; do printf -v "r_${kv%%=*}" '%s' "${kv#*=}"; done
}

# measure NAME CONNECTIONS TARGET...: warm-up, then the measured run, one wrk per TARGET at once; a
# TARGET is URL|TOKEN_FILE|KEY. Sets rate_NAME (2xx answers/s, summed), p50_NAME and p99_NAME (ms,
# the worst target's), err_NAME (failed requests) and split_NAME (each target's rate).
measure() {
  local name=$1 conns=$2 j rate=0 p50=0 p99=0 err=0 split="" n url token key
  shift 2
  local targets=("$@")
  for j in "${!targets[@]}"; do
    IFS='|' read -r url token key <<<"${targets[j]}"
    wrk_start "$name-warmup-$j" "$url" "$conns" "$warmup" "$token" "$key"
  done
  wrk_wait || { cat "$work"/wrk-"$name"-warmup-*.log >&2; die "wrk ($name warm-up) failed"; }
  for j in "${!targets[@]}"; do
    IFS='|' read -r url token key <<<"${targets[j]}"
    wrk_start "$name-$j" "$url" "$conns" "$seconds" "$token" "$key"
  done
  wrk_wait || { cat "$work"/wrk-"$name"-*.log >&2; die "wrk ($name) failed"; }
  for j in "${!targets[@]}"; do
    wrk_result "$name-$j"
    n=$(awk -v n=$((r_requests - r_non2xx)) -v us="$r_duration_us" 'BEGIN{printf "%.0f", n/(us/1e6)}')
    rate=$((rate + n))
    split+="${split:+ + }$n"
    p50=$(awk -v a="$p50" -v v="$r_p50_us" 'BEGIN{v /= 1000; printf "%.2f", (v > a ? v : a)}')
    p99=$(awk -v a="$p99" -v v="$r_p99_us" 'BEGIN{v /= 1000; printf "%.2f", (v > a ? v : a)}')
    err=$((err + r_non2xx + r_connect + r_read + r_write + r_timeout))
  done
  printf -v "rate_$name" '%s' "$rate"
  printf -v "p50_$name" '%s' "$p50"
  printf -v "p99_$name" '%s' "$p99"
  printf -v "err_$name" '%s' "$err"
  printf -v "split_$name" '%s' "$split"
  say "  $name: $rate signatures/s ($split), p50 $p50 ms, p99 $p99 ms, $err failed, wrk -t1 -c$conns x ${#targets[@]}"
}

# ---- pairs ---------------------------------------------------------------------------------------
url_of() { echo "https://127.0.0.1:${pair_api_ports[$1]}"; }

# pair_up PHASE MODE EXTRA_HA: a fresh pair in $work/PHASE (prepared, started, set up on a, HSMs
# paired), a signer client and a replicable envelope-nonce key held by both; sets key_id and
# signer_token.
pair_up() {
  local phase=$1 i want
  pair_mode=$2
  pair_extra_ha=$3
  pair_cluster=bench-$phase
  read -r -a pair_api_ports <<<"${phase_ports[$phase]}"
  pair_var=("$work/$phase/a" "$work/$phase/b")
  pair_token=$work/$phase/admin.token
  mkdir -p "$work/$phase"
  chmod 700 "$work/$phase"
  for i in 0 1; do pair_prepare "$i" || die "scripts/dev-setup for $phase/${pair_names[i]} failed"; done
  pair_start 0 120 || die "$phase: appliance a did not start"
  pair_setup 2>"$work/$phase/setup.err" || { cat "$work/$phase/setup.err" >&2; die "$phase: first-run setup on a failed"; }
  pair_start 1 120 || die "$phase: appliance b did not start"
  want='active|standby'
  [[ $pair_mode == dual-active ]] && want='dual|active'
  for i in 0 1; do
    r=$(pair_wait_role "$i" "$want" 60) || die "$phase: appliance ${pair_names[i]} has no role"
    say "  ${pair_names[i]} on $(url_of "$i") is $r"
  done
  pair_hsms >/dev/null || die "$phase: pairing the HSMs failed"
  signer_token=$work/$phase/signer.token
  make_signer "$(url_of 0)" "$pair_token" "$signer_token" || die "$phase: cannot create the signer client"
  key_id=$(pair_ctl 0 --token-file "$pair_token" keys create --algorithm ecdsa-p256 --label bench-ha-nonce \
    --replicable --nonces envelope 2>/dev/null | jq -er .id) || die "$phase: cannot create the key"
  for _ in $(seq 1 300); do
    [[ $(api "$(url_of 1)" GET "/v1/keys/$key_id" "$pair_token" 2>/dev/null | jq -c '.holders | sort') == '["a","b"]' ]] && break
    sleep 0.1
  done
  [[ $(api "$(url_of 0)" GET "/v1/keys/$key_id" "$pair_token" | jq -c '.holders | sort') == '["a","b"]' ]] ||
    die "$phase: key $key_id is not held by both appliances after 30 s"
  say "  key $key_id held by a and b; HSMs paired both ways"
}

pair_down() { pair_kill_appliance 0 TERM; pair_kill_appliance 1 TERM; }

# alloc_stats I: "transactions conflicts unknown_outcomes burnt issued" of appliance I.
alloc_stats() {
  pair_ctl "$1" --token-file "$pair_token" ha status |
    jq -r '.allocation_stats | "\(.transactions) \(.conflicts) \(.unknown_outcomes) \(.burnt) \(.issued)"'
}

say "work dir $work; $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg)"
say "plan: ${warmup} s warm-up + ${seconds} s per throughput cell (wrk -t1 -c$connections standalone," \
  "-c$pair_connections per appliance of a pair); $kills kills of the active, $pollers pollers per appliance"

# ---- 1. etcd -------------------------------------------------------------------------------------
say "1/5 etcd members ${pair_names[*]} on client ports ${pair_client_ports[*]}"
pair_start_etcd
pair_wait_etcd 60 || die "etcd did not start (logs in $pair_root)"

# ---- 2. standalone -------------------------------------------------------------------------------
# solo_up I: standalone appliance I (0, 1) on solo_ports[I]: scripts/dev-setup, signetd, first-run
# setup, a signer client and an envelope-nonce key; sets solo_dirs[I], solo_urls[I], solo_keys[I]
# and solo_pids[I].
solo_dirs=()
solo_urls=()
solo_keys=()
solo_up() {
  local i=$1 dir=$work/standalone-$1 url=https://127.0.0.1:${solo_ports[$1]} key
  solo_dirs[i]=$dir
  solo_urls[i]=$url
  SIGNET_VAR=$dir SIGNET_LISTEN=127.0.0.1:${solo_ports[i]} "$root/scripts/dev-setup" >"$work/dev-setup-$i.log" 2>&1 ||
    { cat "$work/dev-setup-$i.log" >&2; die "scripts/dev-setup failed"; }
  SOFTHSM2_CONF=$dir/softhsm2.conf "$pair_signetd" --config "$dir/signetd.toml" "${pair_signetd_args[@]}" >"$dir/signetd.out" 2>"$dir/signetd.log" &
  solo_pids[i]=$!
  for _ in $(seq 1 1200); do
    [[ $(curl -sk -o /dev/null -w '%{http_code}' --max-time 2 "$url/v1/health/ready" || true) == 200 ]] && break
    pair_alive "${solo_pids[i]}" || { tail -20 "$dir/signetd.log" >&2; die "standalone signetd exited"; }
    sleep 0.05
  done
  for _ in $(seq 1 300); do [[ -s $dir/data/setup-token ]] && break; sleep 0.1; done
  (umask 077 && "$pair_ctl_bin" --url "$url" --cert "$dir/data/tls/cert.pem" setup \
    --setup-token-file "$dir/data/setup-token" --name admin --save-token "$dir/admin.token") >/dev/null 2>"$dir/setup.err" ||
    { cat "$dir/setup.err" >&2; die "standalone: signetctl setup failed"; }
  make_signer "$url" "$dir/admin.token" "$dir/signer.token" || die "standalone: cannot create the signer client"
  key=$(api "$url" POST /v1/keys "$dir/admin.token" \
    '{"algorithm":"ecdsa-p256","label":"bench-ha-nonce","policy":{"nonces":"envelope"}}' | jq -er .id) ||
    die "standalone: cannot create the key"
  solo_keys[i]=$key
  wait_sign "$url" "$dir/signer.token" "$key" 10 || die "standalone: nonce pre-flight failed"
}
solo_target() { echo "${solo_urls[$1]}|${solo_dirs[$1]}/signer.token|${solo_keys[$1]}"; }
# measure_solos SUFFIX: one standalone appliance alone (solo_SUFFIX), then two at once (duo_SUFFIX).
measure_solos() {
  measure "solo_$1" "$connections" "$(solo_target 0)"
  pin_to "${solo_pids[0]}" 0
  pin_to "${solo_pids[1]}" 1
  measure "duo_$1" "$pair_connections" "$(solo_target 0)" "$(solo_target 1)"
  pin_to "${solo_pids[0]}" all
  pin_to "${solo_pids[1]}" all
}

say "2/5 two standalone appliances on https://127.0.0.1:${solo_ports[0]} and :${solo_ports[1]}"
solo_up 0
solo_up 1
measure_solos first
# They stay up, idle, and are measured again after the pairs: each denominator is the mean of both
# runs, so that a slower or faster stretch of the machine does not land on one side of the ratios.

# ---- 3. dual-active fast and strict ----------------------------------------------------------------
cell=3
for alloc in $alloc_modes; do
  say "$cell/5 dual-active pair, nonce_allocation = $alloc"
  pair_up "$alloc" dual-active "nonce_allocation = \"$alloc\""
  for i in 0 1; do
    wait_sign "$(url_of "$i")" "$signer_token" "$key_id" 30 || die "$alloc: nonce pre-flight on ${pair_names[i]} failed"
  done
  pin_to "${pair_apid[0]}" 0
  pin_to "${pair_apid[1]}" 1
  read -r t0a c0a _ _ i0a <<<"$(alloc_stats 0)"
  read -r t0b c0b _ _ i0b <<<"$(alloc_stats 1)"
  measure "$alloc" "$pair_connections" "$(url_of 0)|$signer_token|$key_id" "$(url_of 1)|$signer_token|$key_id"
  read -r t1a c1a u1a b1a i1a <<<"$(alloc_stats 0)"
  read -r t1b c1b u1b b1b i1b <<<"$(alloc_stats 1)"
  printf -v "txn_$alloc" '%s' $((t1a - t0a + t1b - t0b))
  printf -v "cas_$alloc" '%s' $((c1a - c0a + c1b - c0b))
  printf -v "vpt_$alloc" '%s' "$(awk -v i=$((i1a - i0a + i1b - i0b)) -v t=$((t1a - t0a + t1b - t0b)) \
    'BEGIN{ if (t > 0) printf "%.2f", i/t; else print "-" }')"
  say "  etcd allocation (both appliances, whole run incl. warm-up): $((t1a - t0a + t1b - t0b)) transactions," \
    "$((c1a - c0a + c1b - c0b)) CAS conflicts, $((i1a - i0a + i1b - i0b)) values issued; totals a: issued $i1a, burnt $b1a, unknown $u1a; b: issued $i1b, burnt $b1b, unknown $u1b"
  pair_down
  cell=$((cell + 1))
done

# ---- 5. hot-standby failover -------------------------------------------------------------------------
if [[ $kills -gt 0 ]]; then
  say "5/5 hot-standby pair: nonce sign on the active, then $kills x kill -9 of the active"
  pair_up hs hot-standby ""
  active_index() {  # prints the index of the appliance whose role is active (bounded)
    local i
    for _ in $(seq 1 150); do
      for i in 0 1; do [[ -n ${pair_apid[i]} && $(pair_role "$i" || true) == active ]] && { echo "$i"; return 0; }; done
      sleep 0.2
    done
    return 1
  }
  ai=$(active_index) || die "hot-standby: no active appliance"
  wait_sign "$(url_of "$ai")" "$signer_token" "$key_id" 30 || die "hot-standby: nonce pre-flight failed"
  measure hs "$connections" "$(url_of "$ai")|$signer_token|$key_id"

  signer=$(head -n1 "$signer_token")
  poll_s=$(awk -v m="$poll_ms" 'BEGIN{printf "%.3f", m/1000}')
  # poller I LOG: nonce-bearing sign requests to appliance I until $work/stop-pollers exists; one line
  # per answer: "<CLOCK_REALTIME us when the answer was complete> <HTTP status> <nonce or -> <the
  # appliance that signed it when I forwarded it (X-Signet-Served-By), or ->".
  poller() {
    local url
    url="$(url_of "$1")/v1/keys/$key_id/sign"
    local out t status code via nonce
    while [[ ! -e $work/stop-pollers ]]; do
      out=$(curl -sk --max-time 2 -w '\n%{http_code} %header{x-signet-served-by}' \
        -H "Authorization: Bearer $signer" -H 'Content-Type: application/json' \
        --data "$nonce_body" "$url" 2>/dev/null) || true
      t=${EPOCHREALTIME/./}
      status=${out##*$'\n'}
      code=${status%% *}
      via=${status#* }
      nonce=-
      [[ $out =~ \"nonce\":([0-9]+) ]] && nonce=${BASH_REMATCH[1]}
      echo "$t ${code:-000} $nonce ${via:--}" >>"$2"
      sleep "$poll_s"
    done
  }
  : >"$work/failover-ms"
  : >"$work/nonces"
  timeouts=0
  order_violations=0
  poll_span_us=0
  poll_intervals=0
  for k in $(seq 1 "$kills"); do
    ai=$(active_index) || die "kill $k: no active appliance"
    si=$((1 - ai))
    rm -f "$work/stop-pollers"
    log_a=$work/poll-$k-${pair_names[ai]}.log
    log_s=$work/poll-$k-${pair_names[si]}.log
    : >"$log_a"
    : >"$log_s"
    for _ in $(seq 1 "$pollers"); do
      poller "$ai" "$log_a" &
      children+=($!)
      poller "$si" "$log_s" &
      children+=($!)
      sleep 0.015  # staggered
    done
    # Kill while the active is signing: after its third 200 and 0.2-0.7 s of polling (a random
    # point in its nonce block), bounded.
    kill_after_us=$(($(now_us) + 200000 + RANDOM % 500000))
    for _ in $(seq 1 500); do
      [[ $(awk '$2 == 200' "$log_a" | wc -l) -ge 3 && $(now_us) -ge $kill_after_us ]] && break
      sleep 0.02
    done
    [[ $(awk '$2 == 200' "$log_a" | wc -l) -ge 3 ]] || die "kill $k: the active ${pair_names[ai]} does not sign"
    kill_us=${EPOCHREALTIME/./}
    pair_kill_appliance "$ai" KILL 2>/dev/null  # kill -9, then reap it at once
    deadline=$((kill_us + failover_timeout * 1000000))
    first=""
    while :; do
      # The survivor's own signature: not one it forwarded to the old active before the kill.
      first=$(awk -v k="$kill_us" '$1 > k && $2 == 200 && $4 == "-" && (m == "" || $1 < m) { m = $1 } END { print m }' "$log_s")
      [[ -n $first || $(now_us) -gt $deadline ]] && break
      sleep 0.005
    done
    touch "$work/stop-pollers"
    wrk_wait || true  # the pollers
    if [[ -n $first ]]; then
      ms=$(((first - kill_us) / 1000))
    else
      ms=$((failover_timeout * 1000))
      timeouts=$((timeouts + 1))
    fi
    echo "$ms" >>"$work/failover-ms"
    # The poll cadence achieved on the survivor (a request is a TLS handshake + a 503 or the 200).
    read -r span n_int <<<"$(sort -n "$log_s" | awk -v f="${first:-9e99}" '$1 <= f { if (n++ == 0) a = $1; b = $1 } END { print (n > 1 ? b - a : 0), (n > 1 ? n - 1 : 0) }')"
    poll_span_us=$((poll_span_us + span))
    poll_intervals=$((poll_intervals + n_int))
    awk -v k="$k" -v n="${pair_names[ai]}" '$2 == 200 { print k, n, $1, $3 }' "$log_a" >>"$work/nonces"
    awk -v k="$k" -v n="${pair_names[si]}" '$2 == 200 { print k, ($4 == "-" ? n : $4), $1, $3 }' "$log_s" >>"$work/nonces"
    # Every nonce the old active signed: its own answers, and the survivor's forwards it served.
  old_max=$(awk -v o="${pair_names[ai]}" -v la="$log_a" '$2 == 200 && (FILENAME == la || $4 == o) { if ($3 > m) m = $3 } END { print m + 0 }' "$log_a" "$log_s")
    new_min=$(awk -v k="$kill_us" '$1 > k && $2 == 200 && $4 == "-" { if (m == "" || $3 < m) m = $3 } END { print (m == "" ? "-" : m) }' "$log_s")
    [[ $new_min == - || $new_min -gt $old_max ]] || order_violations=$((order_violations + 1))
    codes=$(awk -v k="$kill_us" '$1 > k && $2 != 200 { c[$2]++ } END { for (x in c) printf "%s%s x%d", (n++ ? ", " : ""), x, c[x] }' "$log_s")
    if [[ -n $first ]]; then
      what="${pair_names[si]} signed after $ms ms (first nonce $new_min, old active's last $old_max)"
    else
      what="no signature from ${pair_names[si]} within $failover_timeout s (TIMEOUT)"
    fi
    say "  kill $k/$kills: ${pair_names[ai]} killed; $what; ${pair_names[si]}'s answers before: ${codes:-none}"
    pair_start "$ai" 120 || die "kill $k: ${pair_names[ai]} did not restart"
    pair_wait_role "$ai" standby 60 >/dev/null || die "kill $k: ${pair_names[ai]} did not rejoin as the standby"
  done
  pair_down

  # percentile P FILE: nearest-rank percentile of the numbers in FILE.
  percentile() { sort -n "$2" | awk -v p="$1" '{ v[NR] = $1 } END { i = int((p * NR + 99) / 100); if (i < 1) i = 1; print v[i] }'; }
  fo_p50=$(percentile 50 "$work/failover-ms")
  fo_p99=$(percentile 99 "$work/failover-ms")
  fo_min=$(sort -n "$work/failover-ms" | head -n1)
  fo_max=$(sort -n "$work/failover-ms" | tail -n1)
  nonce_total=$(wc -l <"$work/nonces")
  nonce_distinct=$(awk '{ print $4 }' "$work/nonces" | sort -u | wc -l)
  nonce_dups=$((nonce_total - nonce_distinct))
  [[ $nonce_dups -eq 0 ]] || { say "  repeated nonces:"; awk '{ print $4 }' "$work/nonces" | sort -n | uniq -d | head -20 | sed 's/^/    /'; }
fi

# ---- standalone again --------------------------------------------------------------------------
say "standalone appliances again (each denominator is the mean of both runs)"
measure_solos last
for pid in "${solo_pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
for pid in "${solo_pids[@]}"; do wait "$pid" || true; done
solo_pids=()
rate_solo=$(((rate_solo_first + rate_solo_last) / 2))
err_solo=$((err_solo_first + err_solo_last))
rate_duo=$(((rate_duo_first + rate_duo_last) / 2))
err_duo=$((err_duo_first + err_duo_last))

# ---- table ----------------------------------------------------------------------------------------
verdict() { awk -v v="$1" -v l="$3" -v op="$2" 'BEGIN{ok = (op == ">=") ? v >= l : (op == "==" ? v == l : v <= l); print ok ? "PASS" : "MISS"}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN{ if (b > 0) printf "%.2fx", a/b; else print "-" }'; }
judged() { local v; v=$(verdict "$1" "$2" "$3"); [[ ${4:-0} -eq 0 ]] && echo "$v" || echo "$v ($4 failed)"; }
rows=()
row() { rows+=("$(printf '%-50s %13s %-6s %7s %-18s %s' "$@")"); }
if [[ $kills -gt 0 ]]; then
  to_note=""
  [[ $timeouts -eq 0 ]] || to_note=" ($timeouts timed out at ${failover_timeout} s)"
  row "failover kill -9 -> first nonce signature, p50" "$fo_p50" "ms" "" "<= 1000 ms" "$(verdict "$fo_p50" "<=" 1000)$to_note"
  row "failover kill -9 -> first nonce signature, p99" "$fo_p99" "ms" "" "<= 2000 ms" "$(verdict "$fo_p99" "<=" 2000)$to_note"
  row "  min / max over $kills kills" "$fo_min / $fo_max" "ms" "" "" ""
  row "  survivor answered every (mean, $pollers pollers)" "$(awk -v s="$poll_span_us" -v n="$poll_intervals" 'BEGIN{ if (n > 0) printf "%.0f", s/n/1000; else print "-" }')" "ms" "" "(information)" ""
  row "nonces returned across the kills" "$nonce_total" "nonces" "" "(information)" ""
  row "  repeated nonces" "$nonce_dups" "nonces" "" "= 0 (G1)" "$(verdict "$nonce_dups" "==" 0)"
  row "  new active's nonces not above the old's" "$order_violations" "kills" "" "= 0 (G3)" "$(verdict "$order_violations" "==" 0)"
fi
row "standalone nonce sign, HTTPS, c=$connections" "$rate_solo" "sig/s" "1.00x" "(denominator)" \
  "$( [[ $err_solo -eq 0 ]] || echo "($err_solo failed)")"
row "  first run / last run (mean above)" "$rate_solo_first / $rate_solo_last" "sig/s" "" "" ""
row "  latency p50 / p99 (first run)" "$p50_solo_first / $p99_solo_first" "ms" "" "" ""
row "two standalone appliances at once, c=$pair_connections+$pair_connections" "$rate_duo" "sig/s" "$(ratio "$rate_duo" "$rate_solo")" "(reference)" \
  "$( [[ $err_duo -eq 0 ]] || echo "($err_duo failed)")"
row "  first run / last run (mean above)" "$rate_duo_first / $rate_duo_last" "sig/s" "" "" ""
row "  latency p50 / p99 (first run, worse)" "$p50_duo_first / $p99_duo_first" "ms" "" "" ""
if [[ $kills -gt 0 ]]; then
  row "hot-standby, on the active, c=$connections" "$rate_hs" "sig/s" "$(ratio "$rate_hs" "$rate_solo")" "(information)" \
    "$( [[ $err_hs -eq 0 ]] || echo "($err_hs failed)")"
  row "  latency p50 / p99" "$p50_hs / $p99_hs" "ms" "" "" ""
fi
for alloc in $alloc_modes; do
  target=0.50
  [[ $alloc == fast ]] && target=0.90
  rate_var=rate_$alloc err_var=err_$alloc split_var=split_$alloc p50_var=p50_$alloc p99_var=p99_$alloc
  txn_var=txn_$alloc cas_var=cas_$alloc vpt_var=vpt_$alloc
  if [[ $alloc == dense ]]; then  # no target: the consecutive-values mode, for comparison
    row "dual-active $alloc, both at once, c=$pair_connections+$pair_connections" "${!rate_var}" "sig/s" "$(ratio "${!rate_var}" "$rate_solo")" \
      "(information)" "$( [[ ${!err_var} -eq 0 ]] || echo "(${!err_var} failed)")"
  else
    row "dual-active $alloc, both at once, c=$pair_connections+$pair_connections" "${!rate_var}" "sig/s" "$(ratio "${!rate_var}" "$rate_solo")" \
      ">= ${target}x standalone" "$(judged "$(ratio "${!rate_var}" "$rate_solo" | tr -d x)" ">=" "$target" "${!err_var}")"
  fi
  row "  to two standalone appliances at once" "" "" "$(ratio "${!rate_var}" "$rate_duo")" "(information)" ""
  row "  a + b" "${!split_var}" "sig/s" "" "" ""
  row "  latency p50 / p99 (worse appliance)" "${!p50_var} / ${!p99_var}" "ms" "" "" ""
  row "  etcd transactions / CAS conflicts" "${!txn_var} / ${!cas_var}" "" "" "(information)" ""
  row "  values issued per etcd transaction" "${!vpt_var}" "" "" "(information)" ""
done

echo
echo "Signet pair benchmark, $(date -u +%Y-%m-%dT%H:%M:%SZ), $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg), took $((($(now_us) - bench_start) / 1000000)) s"
echo "loopback, HTTPS, three etcd members (heartbeat 50 ms, election 500 ms, pre-vote), lease_ttl_ms 1000;"
echo "wrk -t1 nonce mode, ${warmup} s warm-up + ${seconds} s per cell, worker_threads $workers; failover: $kills kills, $pollers curl pollers per appliance (${poll_ms} ms pause)"
if [[ $pin == true ]]; then
  echo "each appliance of a dual-active pair and of the two standalone appliances at once on half of the CPUs (${cpu_half[0]} | ${cpu_half[1]}); the others on all $cpus"
else
  echo "every appliance on all $cpus CPUs (--no-pin, or a single CPU)"
fi
printf '%-50s %13s %-6s %7s %-18s %s\n' "mode" "figure" "unit" "ratio" "target" "result"
printf '%s\n' "${rows[@]}"
