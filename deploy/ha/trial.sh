#!/usr/bin/env bash
# A highly available federation on one machine, for a trial: a private
# PostgreSQL, three coordinator replicas sharing it, HAProxy in front of
# them (TCP, TLS passed through), and three department nodes and an
# analyst that know only the load balancer's address.
#
#   deploy/ha/trial.sh start [DIR]   bring it all up (default DIR: ha-trial)
#   deploy/ha/trial.sh check [DIR]   search the catalog and list members through the balancer
#   deploy/ha/trial.sh kill  [DIR] a|b|c   kill -9 one coordinator replica
#   deploy/ha/trial.sh stop  [DIR]   stop everything
#
# Needs PostgreSQL's server binaries (initdb, pg_ctl) and haproxy
# (apt-get install postgresql haproxy), and the built binaries: set
# EXCHANGE_BIN to their directory (default target/release; build with
# cargo build --release --bin coordinator --bin exchange-node --bin exchange).
# Ports: EXCHANGE_TRIAL_PORT (default 7600) and the next 20.
set -euo pipefail

command=${1:-}
dir=${2:-ha-trial}
bin=${EXCHANGE_BIN:-target/release}
base=${EXCHANGE_TRIAL_PORT:-7600}
lb="127.0.0.1:$base"
departments=(civil-affairs real-estate public-security)

die() { echo "trial.sh: $*" >&2; exit 1; }

pg_bin() {
    local found
    found=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)
    if [ -n "$found" ]; then echo "$found"; else dirname "$(command -v initdb || echo /nonexistent/initdb)"; fi
}

# PostgreSQL refuses to run as root: run its tools as the postgres user then.
as_pg() {
    if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

pg_port() { echo $((base + 20)); }
state_url() { echo "postgres://postgres@127.0.0.1:$(pg_port)/exchange"; }

start_postgres() {
    local pg
    pg=$(pg_bin)
    [ -x "$pg/initdb" ] || die "PostgreSQL's initdb was not found (apt-get install postgresql)"
    mkdir -p "$dir/pg"
    [ "$(id -u)" -eq 0 ] && chown postgres "$dir/pg"
    as_pg "$pg/initdb" -A trust -U postgres -E UTF8 --locale=C -D "$dir/pg/data" >"$dir/pg/initdb.log"
    as_pg "$pg/pg_ctl" -D "$dir/pg/data" -l "$dir/pg/postgres.log" -w \
        -o "-p $(pg_port) -c listen_addresses=127.0.0.1 -k $(realpath "$dir/pg")" start >/dev/null
    as_pg "$pg/createdb" -h 127.0.0.1 -p "$(pg_port)" -U postgres exchange
}

start_coordinator() {
    local name=$1 main=$2 enrol=$3
    "$bin/coordinator" --pki-dir "$dir/pki" --data-dir "$dir/coordinator-$name" \
        --replica-id "$name" --state "$(state_url)" serve --listen "127.0.0.1:$main" --enroll-listen "127.0.0.1:$enrol" \
        --advertise-addr "$lb" >"$dir/coordinator-$name.log" 2>&1 &
    echo $! >"$dir/coordinator-$name.pid"
}

wait_port() {
    local port=$1 what=$2
    for _ in $(seq 1 300); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
        sleep 0.1
    done
    die "$what did not open port $port; see the logs in $dir"
}

write_haproxy() {
    cat >"$dir/haproxy.cfg" <<EOF
# The trial's load balancer: deploy/ha/haproxy.cfg with local addresses.
global
    maxconn 2000
defaults
    mode tcp
    retries 3
    option redispatch 1
    timeout connect 1s
    timeout client 1h
    timeout server 1h
frontend exchange_main
    bind $lb
    default_backend coordinators_main
backend coordinators_main
    balance leastconn
    server coord-a 127.0.0.1:$((base + 1)) check inter 500ms fall 2 rise 2
    server coord-b 127.0.0.1:$((base + 2)) check inter 500ms fall 2 rise 2
    server coord-c 127.0.0.1:$((base + 3)) check inter 500ms fall 2 rise 2
frontend exchange_enrol
    bind 127.0.0.1:$((base + 10))
    default_backend coordinators_enrol
backend coordinators_enrol
    balance roundrobin
    server coord-a 127.0.0.1:$((base + 11)) check inter 500ms fall 2 rise 2
    server coord-b 127.0.0.1:$((base + 12)) check inter 500ms fall 2 rise 2
    server coord-c 127.0.0.1:$((base + 13)) check inter 500ms fall 2 rise 2
EOF
}

start_node() {
    local id=$1 port=$2
    cat >"$dir/node-$id.toml" <<EOF
manifest = "$(realpath "$dir/data/$id.toml")"
coordinator = "$lb"
listen = "127.0.0.1:$port"
cert_dir = "$(realpath "$dir/certs/$id")"
data_dir = "$(realpath "$dir")/node-$id"
heartbeat_interval_secs = 2
EOF
    "$bin/exchange-node" --config "$dir/node-$id.toml" serve >"$dir/node-$id.log" 2>&1 &
    echo $! >"$dir/node-$id.pid"
}

start() {
    [ -e "$dir" ] && die "$dir exists: stop the previous trial (trial.sh stop $dir) and remove it"
    command -v haproxy >/dev/null || die "haproxy was not found (apt-get install haproxy)"
    for b in coordinator exchange-node exchange; do
        [ -x "$bin/$b" ] || die "$bin/$b is missing: cargo build --release, or set EXCHANGE_BIN"
    done
    mkdir -p "$dir"
    echo "PostgreSQL on 127.0.0.1:$(pg_port) ..."
    start_postgres
    echo "key material and department certificates (recorded in the shared state) ..."
    local members=()
    for id in "${departments[@]}"; do members+=(--member "$id=$id"); done
    "$bin/coordinator" --pki-dir "$dir/pki" --data-dir "$dir/coordinator-a" --state "$(state_url)" \
        dev-pki --out "$dir/certs" "${members[@]}" >"$dir/dev-pki.log"
    "$bin/exchange" demo --data-only "$dir/data" --persons 2000 >/dev/null
    echo "three coordinators ..."
    start_coordinator a $((base + 1)) $((base + 11))
    start_coordinator b $((base + 2)) $((base + 12))
    start_coordinator c $((base + 3)) $((base + 13))
    for port in $((base + 1)) $((base + 2)) $((base + 3)); do wait_port "$port" "a coordinator"; done
    echo "HAProxy on $lb (enrolment on 127.0.0.1:$((base + 10))) ..."
    write_haproxy
    haproxy -f "$dir/haproxy.cfg" -D -p "$dir/haproxy.pid"
    wait_port "$base" HAProxy
    echo "three department nodes ..."
    local port=$((base + 4))
    for id in "${departments[@]}"; do
        start_node "$id" "$port"
        port=$((port + 1))
        cat >"$dir/certs/$id/exchange.toml" <<EOF
coordinator = "$lb"
cert_dir = "."
cert_name = "client"
user = "$id trial analyst"
EOF
    done
    for p in $((base + 4)) $((base + 5)) $((base + 6)); do wait_port "$p" "a node"; done
    echo "up. Try: EXCHANGE_CONFIG=$dir/certs/civil-affairs/exchange.toml $bin/exchange catalog search 户籍"
}

check() {
    export EXCHANGE_CONFIG="$dir/certs/civil-affairs/exchange.toml"
    # Nodes publish within a heartbeat or two.
    local found=""
    for _ in $(seq 1 60); do
        if "$bin/exchange" --json catalog search 租赁 2>/dev/null | grep -q '"real-estate/leases"'; then
            found=yes
            break
        fi
        sleep 0.5
    done
    [ -n "$found" ] || die "real-estate/leases is not in the catalog through $lb"
    echo "catalog through $lb: real-estate/leases found"
    local online
    online=$("$bin/exchange" --json members list | grep -o '"online": *true' | wc -l)
    echo "members online through $lb: $online"
    [ "$online" -ge 3 ] || die "expected the three nodes online, saw $online"
}

kill_replica() {
    local name=${1:-}
    [ -f "$dir/coordinator-$name.pid" ] || die "no replica $name (a, b or c)"
    kill -9 "$(cat "$dir/coordinator-$name.pid")"
    echo "coordinator $name killed with SIGKILL"
}

stop() {
    for pidfile in "$dir"/node-*.pid "$dir"/coordinator-*.pid "$dir/haproxy.pid"; do
        [ -f "$pidfile" ] && kill "$(cat "$pidfile")" 2>/dev/null || true
    done
    if [ -d "$dir/pg/data" ]; then
        as_pg "$(pg_bin)/pg_ctl" -D "$dir/pg/data" -m fast stop >/dev/null 2>&1 || true
    fi
    echo "stopped; $dir holds the logs, audit logs and state"
}

case "$command" in
    start) start ;;
    check) check ;;
    kill) kill_replica "${3:-}" ;;
    stop) stop ;;
    *) sed -n '2,16p' "$0" >&2; exit 2 ;;
esac
