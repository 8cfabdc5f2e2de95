# shellcheck shell=bash
# The pair_* settings are assigned by the script that sources this file.
# shellcheck disable=SC2154
# scripts/pair-lib.sh: shell functions for an appliance pair on loopback, sourced by
# scripts/demo-pair and bench/ha.sh (so that starting etcd members, preparing an appliance and the
# pairing ceremony are written once), and by bench/standalone.sh for pair_free_port. Sourcing it
# defines functions and defaults only.
#
# The caller sets (before calling the functions):
#   pair_signetd, pair_ctl_bin        the signetd and signetctl binaries
#   pair_root                         directory of the etcd members' data dirs and logs
#   pair_names=(a b w)                member names: appliance 0, appliance 1, the witness
#   pair_client_ports=(...)           the three members' client ports
#   pair_peer_ports=(...)             the three members' peer ports
#   pair_etcd_token                   --initial-cluster-token
#   pair_api_ports=(P0 P1)            the two appliances' HTTPS ports
#   pair_var=(DIR0 DIR1)              the two appliances' var dirs (scripts/dev-setup)
#   pair_mode                         hot-standby | dual-active
#   pair_cluster                      [ha] cluster (etcd keyspace /signet/<cluster>/)
#   pair_extra_ha                     extra lines for the [ha] section (e.g. nonce_allocation), or ""
#   pair_token                        the admin token file (written by pair_setup)
#   pair_signetd_args=(...)           extra signetd options (e.g. --worker-threads N), or ()
# The functions maintain:
#   pair_pids=()                      every process started (pair_stop_all stops them)
#   pair_apid=(PID0 PID1)             each appliance's signetd, while it runs ("" otherwise)
pair_lib_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
pair_names=(a b w)
pair_pids=()
pair_apid=("" "")
pair_extra_ha=""
pair_signetd_args=()

pair_msg() { echo "${pair_prog:-pair}: $*"; }
pair_err() { echo "${pair_prog:-pair}: $*" >&2; }

# pair_free_port [EXCLUDED...]: a loopback TCP port that no socket uses now (nor in EXCLUDED),
# below the kernel's ephemeral range so that no outgoing connection can take it before the daemon
# binds it.
pair_free_port() {
  local port lo=20000 hi
  hi=$(($(awk '{ print $1 }' /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768) - 1))
  [[ $hi -gt $((lo + 1000)) ]] || { lo=10000; hi=19999; }
  for _ in $(seq 1 200); do
    port=$((lo + RANDOM % (hi - lo + 1)))
    [[ " $* " == *" $port "* ]] && continue
    [[ -z $(ss -Htan "sport = :$port" 2>/dev/null) ]] && { echo "$port"; return 0; }
  done
  pair_err "no free loopback port found"
  return 1
}

# pair_alive PID: true while PID runs (a zombie, exited but not yet reaped, is not alive).
pair_alive() {
  local st
  st=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -c1) || return 1
  [[ -n $st && $st != Z && $st != X ]]
}

# pair_port_free PORT: true when nothing listens on PORT.
pair_port_free() { [[ -z $(ss -Hltn "sport = :$1" 2>/dev/null) ]]; }

# pair_endpoints_for I: the [ha] etcd_endpoints of member I, the local member first.
pair_endpoints_for() {
  local first=$1 i
  local out="${pair_names[first]}=http://127.0.0.1:${pair_client_ports[first]}"
  for i in 0 1 2; do
    [[ $i == "$first" ]] || out+=",${pair_names[i]}=http://127.0.0.1:${pair_client_ports[i]}"
  done
  echo "$out"
}

# pair_start_etcd: starts the three members (heartbeat 50 ms, election 500 ms, pre-vote) with data
# dirs and logs in pair_root; an existing data dir is rejoined ("existing").
pair_start_etcd() {
  local cluster="" i n state
  mkdir -p "$pair_root"
  chmod 700 "$pair_root"
  for i in 0 1 2; do
    cluster+="${cluster:+,}${pair_names[i]}=http://127.0.0.1:${pair_peer_ports[i]}"
  done
  for i in 0 1 2; do
    n=${pair_names[i]}
    state=new
    [[ -d $pair_root/etcd-$n/member ]] && state=existing
    etcd --name "$n" --data-dir "$pair_root/etcd-$n" \
      --listen-client-urls "http://127.0.0.1:${pair_client_ports[i]}" \
      --advertise-client-urls "http://127.0.0.1:${pair_client_ports[i]}" \
      --listen-peer-urls "http://127.0.0.1:${pair_peer_ports[i]}" \
      --initial-advertise-peer-urls "http://127.0.0.1:${pair_peer_ports[i]}" \
      --initial-cluster "$cluster" --initial-cluster-state "$state" \
      --initial-cluster-token "${pair_etcd_token:-signet-demo-pair}" \
      --heartbeat-interval 50 --election-timeout 500 --pre-vote=true \
      --auto-compaction-mode periodic --auto-compaction-retention 1h \
      --logger zap --log-outputs "$pair_root/etcd-$n.log" >>"$pair_root/etcd-$n.out" 2>&1 &
    pair_pids+=($!)
  done
}

# pair_wait_etcd TIMEOUT_S: waits until every member answers /health with "health":"true".
pair_wait_etcd() {
  local deadline=$((SECONDS + $1)) i ok
  while :; do
    ok=0
    for i in 0 1 2; do
      curl -s --max-time 1 "http://127.0.0.1:${pair_client_ports[i]}/health" 2>/dev/null |
        grep -q '"health":"true"' && ok=$((ok + 1))
    done
    [[ $ok == 3 ]] && return 0
    [[ $SECONDS -lt $deadline ]] || { pair_err "etcd members not healthy after $1 s (logs in $pair_root)"; return 1; }
    sleep 0.2
  done
}

# pair_prepare I: the var dir of appliance I (scripts/dev-setup on its port) with an [ha] section.
pair_prepare() {
  local i=$1 var=${pair_var[$1]} n=${pair_names[$1]}
  SIGNET_VAR=$var SIGNET_LISTEN=127.0.0.1:${pair_api_ports[i]} "$pair_lib_dir/dev-setup" >/dev/null || return 1
  if ! grep -q '^\[ha\]' "$var/signetd.toml"; then
    cat >>"$var/signetd.toml" <<TOML

[ha]
mode = "$pair_mode"
name = "$n"
cluster = "$pair_cluster"
etcd_endpoints = "$(pair_endpoints_for "$i")"
advertise_url = "https://127.0.0.1:${pair_api_ports[i]}"
so_pin_file = "$var/so-pin"
TOML
    [[ -z $pair_extra_ha ]] || printf '%s\n' "$pair_extra_ha" >>"$var/signetd.toml"
  fi
}

# pair_ctl I ARGS...: signetctl against appliance I, pinning its certificate.
pair_ctl() {
  local i=$1
  shift
  "$pair_ctl_bin" --url "https://127.0.0.1:${pair_api_ports[i]}" --cert "${pair_var[i]}/data/tls/cert.pem" "$@"
}

# pair_start I [TIMEOUT_S]: starts appliance I's signetd (stdout in signetd.out, log in signetd.log;
# the logs of an earlier run are appended to signetd.log.prev) and waits for "signetd listening on".
pair_start() {
  local i=$1 var=${pair_var[$1]} timeout=${2:-60} pid
  [[ -f $var/signetd.log ]] && cat "$var/signetd.log" >>"$var/signetd.log.prev"
  SOFTHSM2_CONF=$var/softhsm2.conf "$pair_signetd" --config "$var/signetd.toml" "${pair_signetd_args[@]}" \
    >"$var/signetd.out" 2>"$var/signetd.log" &
  pid=$!
  pair_pids+=("$pid")
  pair_apid[i]=$pid
  for _ in $(seq 1 $((timeout * 10))); do
    grep -q 'signetd listening on' "$var/signetd.out" 2>/dev/null && return 0
    if ! pair_alive "$pid"; then
      local st=0
      wait "$pid" 2>/dev/null || st=$?
      pair_err "appliance ${pair_names[i]} exited during start-up (status $st); the end of its output and log:"
      tail -5 "$var/signetd.out" >&2
      tail -20 "$var/signetd.log" >&2
      pair_apid[i]=""
      return 1
    fi
    sleep 0.1
  done
  pair_err "appliance ${pair_names[i]} did not start within $timeout s (see $var/signetd.log)"
  return 1
}

# pair_setup: first-run setup on appliance 0 (once: skipped when pair_token exists).
pair_setup() {
  [[ -s $pair_token ]] && return 0
  local st=${pair_var[0]}/data/setup-token
  for _ in $(seq 1 300); do [[ -s $st ]] && break; sleep 0.1; done
  [[ -s $st ]] || { pair_err "no setup token in $st"; return 1; }
  (umask 077 && pair_ctl 0 setup --setup-token-file "$st" --name admin --save-token "$pair_token") >/dev/null
}

# pair_role I: appliance I's role from `signetctl ha status` (active, standby, dual, ...), or "".
pair_role() { pair_ctl "$1" --token-file "$pair_token" ha status 2>/dev/null | jq -r '.role // empty' 2>/dev/null; }

# pair_wait_role I REGEX TIMEOUT_S: waits until appliance I's role matches REGEX; prints the role.
pair_wait_role() {
  local i=$1 want=$2 deadline=$((SECONDS + $3)) r=""
  while :; do
    r=$(pair_role "$i" || true)
    [[ $r =~ ^($want)$ ]] && { echo "$r"; return 0; }
    [[ $SECONDS -lt $deadline ]] || { pair_err "appliance ${pair_names[i]} is '${r:-unknown}', not $want, after $3 s"; return 1; }
    sleep 0.2
  done
}

# pair_hsms: the pairing ceremony in both directions (each appliance exports a KEK to the peer
# whose transport key fingerprint is read off the peer itself).
pair_hsms() {
  local i peer fp
  for i in 0 1; do
    peer=$((1 - i))
    fp=$(pair_ctl "$peer" --token-file "$pair_token" ha status | jq -er '.transport_sha256') || return 1
    pair_msg "  ${pair_names[i]} -> ${pair_names[peer]}: peer transport key sha256 $fp"
    pair_ctl "$i" --token-file "$pair_token" ha pair --peer "${pair_names[peer]}" --transport-sha256 "$fp" >/dev/null || return 1
  done
}

# pair_kill_appliance I SIGNAL: sends SIGNAL to appliance I's signetd and reaps it (SIGTERM: waits
# up to 20 s, then SIGKILL).
pair_kill_appliance() {
  local i=$1 sig=$2 pid=${pair_apid[$1]}
  [[ -n $pid ]] || return 0
  kill "-$sig" "$pid" 2>/dev/null || true
  if [[ $sig != KILL && $sig != 9 ]]; then
    for _ in $(seq 1 200); do pair_alive "$pid" || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  wait "$pid" 2>/dev/null || true
  pair_apid[i]=""
}

# pair_stop_all: SIGTERM to every process started, then waits for them (SIGKILL after 20 s).
pair_stop_all() {
  local pid alive
  for pid in "${pair_pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for _ in $(seq 1 200); do
    alive=0
    for pid in "${pair_pids[@]}"; do pair_alive "$pid" && alive=1; done
    [[ $alive == 0 ]] && break
    sleep 0.1
  done
  for pid in "${pair_pids[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
  for pid in "${pair_pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  pair_pids=()
  pair_apid=("" "")
}
