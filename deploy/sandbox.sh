#!/usr/bin/env bash
# Local MySQL 9.7 masters for the demo, the tests and the benchmarks.
#
# MySQL comes from Debian sid and runs in a chroot cached outside the work tree
# (bookworm only has MariaDB, whose GTIDs are a different protocol). Instances
# live inside the chroot under var/sandbox/<namespace>/<N>, so parallel test
# binaries use different namespaces (SANDBOX_NS) and port bases (SANDBOX_PORT_BASE).
#
# Usage: deploy/sandbox.sh VERB [ARGS]
#   install                         debootstrap the chroot (no-op when done)
#   install-testsuite               add mysql-testsuite (mysqltest and MySQL's own tests) to the chroot (no-op when there)
#   install-monitoring              add prometheus and promtool to the chroot (no-op when there)
#   start N [--gtid-mode=OFF|ON] [--tls] [-- mysqld options...]
#   stop N | kill N | restart N | wipe N | wipe-now N (SIGKILL, then delete)
#   sql N "SQL"                     run SQL as root over the socket (batch output)
#   url N                           mysql://relay:...@127.0.0.1:PORT for the relay account
#   port N | pid N | datadir N | status
#   reap PID NS                     when PID exits, kill and delete namespace NS
#
# Environment:
#   GTID_RELAY_CACHE   where the chroot lives (default ~/.cache/gtid-relay)
#   SANDBOX_NS         instance namespace (default "default")
#   SANDBOX_PORT_BASE  instance N listens on SANDBOX_PORT_BASE+N (default 4300)
set -euo pipefail

CACHE=${GTID_RELAY_CACHE:-$HOME/.cache/gtid-relay}
ROOT=$CACHE/mysql-sid
NS=${SANDBOX_NS:-default}
PORT_BASE=${SANDBOX_PORT_BASE:-4300}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CERTS=$HERE/../certs

# The account the relay uses on every master; the password is a sandbox-only value.
RELAY_USER=relay
RELAY_PASSWORD=relay-sandbox-pw
AUTO_INCREMENT_INCREMENT=7

die() { echo "sandbox: $*" >&2; exit 1; }
log() { echo "sandbox: $*" >&2; }

# Paths inside the chroot (what mysqld sees) and outside (what we see).
inner_dir() { echo "/var/sandbox/$NS/$1"; }
outer_dir() { echo "$ROOT$(inner_dir "$1")"; }
port_of() { echo $((PORT_BASE + $1)); }

check_n() {
    [[ ${1:-} =~ ^[0-9]+$ ]] && (($1 >= 1 && $1 <= 99)) || die "instance number must be 1..99, got '${1:-}'"
}

mirror() {
    local uri
    uri=$(sed -n 's/^URIs:[[:space:]]*//p' /etc/apt/sources.list.d/*.sources 2>/dev/null |
        tr ' ' '\n' | grep -v -- '-security' | head -n1)
    if [[ -z $uri ]]; then
        uri=$(awk '$1=="deb" && $0 !~ /security/ {print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)
    fi
    [[ -n $uri ]] || die "no Debian mirror found in /etc/apt/sources.list.d/*.sources or /etc/apt/sources.list"
    echo "$uri"
}

in_root() { chroot "$ROOT" "$@"; }

cmd_install() {
    mkdir -p "$CACHE"
    exec 9>"$CACHE/install.lock"
    flock 9
    if [[ -f $ROOT/.gtid-relay-ready ]]; then
        return 0
    fi
    [[ $(id -u) == 0 ]] || die "install needs root (debootstrap and chroot)"
    if ! command -v debootstrap >/dev/null; then
        log "installing debootstrap"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
    fi
    local m
    m=$(mirror)
    log "debootstrap sid from $m into $ROOT (once; a few minutes)"
    rm -rf "$ROOT"
    debootstrap --variant=minbase --include=mysql-server-core,mysql-client-core \
        sid "$ROOT" "$m" >"$CACHE/debootstrap.log" 2>&1 ||
        die "debootstrap failed; see $CACHE/debootstrap.log"
    cp /etc/resolv.conf "$ROOT/etc/resolv.conf"
    log "installing sysbench, percona-toolkit and mysqld-exporter in the chroot"
    in_root env DEBIAN_FRONTEND=noninteractive apt-get -o Acquire::Check-Valid-Until=false update -qq \
        >>"$CACHE/debootstrap.log" 2>&1 || die "apt-get update in the chroot failed; see $CACHE/debootstrap.log"
    in_root env DEBIAN_FRONTEND=noninteractive apt-get -o Acquire::Check-Valid-Until=false install -y -qq \
        --no-install-recommends sysbench percona-toolkit libdbd-mysql-perl prometheus-mysqld-exporter \
        >>"$CACHE/debootstrap.log" 2>&1 || die "package install in the chroot failed; see $CACHE/debootstrap.log"
    in_root apt-get clean
    make_template
    touch "$ROOT/.gtid-relay-ready"
    log "installed: $(in_root mysqld --version)"
}

# An initialised datadir copied for every new instance: --initialize takes ~10 s,
# a copy takes well under one.
make_template() {
    local t=/var/sandbox-template
    rm -rf "$ROOT$t"
    mkdir -p "$ROOT$t"
    in_root /usr/sbin/mysqld --no-defaults --initialize-insecure --user=root \
        --datadir=$t/data --log-error=$t/init.log || die "mysqld --initialize failed; see $ROOT$t/init.log"
}

# apt-get in the chroot for an add-on step; output goes to $CACHE/$1.log.
apt_in_root() {
    local logfile=$CACHE/$1.log
    shift
    in_root env DEBIAN_FRONTEND=noninteractive apt-get -o Acquire::Check-Valid-Until=false "$@" \
        >>"$logfile" 2>&1 || die "apt-get $1 in the chroot failed; see $logfile"
}

# The start of an add-on step (install-testsuite, install-monitoring): the
# chroot, the install lock, and fresh package lists. Returns 1 when `installed`
# (a test) says the step was done before.
begin_add_on() {
    local what=$1 log_name=$2
    shift 2
    cmd_install
    exec 9>"$CACHE/install.lock"
    flock 9
    "$@" && return 1
    [[ $(id -u) == 0 ]] || die "$what needs root (chroot)"
    log "$what: adding to the chroot (once)"
    cp /etc/resolv.conf "$ROOT/etc/resolv.conf"
    apt_in_root "$log_name" update -qq
}

# MySQL's regression tests and mysqltest, for deploy/fidelity.sh. A step of its
# own (not part of install) so that chroots installed before it get them too.
# The package is unpacked, not installed: it depends on mysql-server, which
# conflicts with the MariaDB client library that percona-toolkit and sysbench
# need, so apt would remove those. Its libraries and tools are installed.
TESTSUITE_MARK=/usr/lib/mysql-test/.gtid-relay-unpacked

testsuite_unpacked() { [[ -f $ROOT$TESTSUITE_MARK ]]; }
cmd_install_testsuite() {
    begin_add_on install-testsuite testsuite testsuite_unpacked || return 0
    apt_in_root testsuite install -y -qq --no-install-recommends mysql-client libjson-perl lz4 unzip \
        libgoogle-perftools4t64 libprotobuf32t64
    rm -rf "$ROOT/var/cache/gtid-relay"
    mkdir -p "$ROOT/var/cache/gtid-relay"
    in_root sh -c 'cd /var/cache/gtid-relay && apt-get -o Acquire::Check-Valid-Until=false download mysql-testsuite' \
        >>"$CACHE/testsuite.log" 2>&1 || die "downloading mysql-testsuite failed; see $CACHE/testsuite.log"
    in_root sh -c 'dpkg -x /var/cache/gtid-relay/mysql-testsuite_*.deb /' ||
        die "unpacking mysql-testsuite failed"
    rm -rf "$ROOT/var/cache/gtid-relay"
    in_root apt-get clean
    [[ -x $ROOT/usr/lib/mysql-test/bin/mysqltest ]] || die "mysql-testsuite has no /usr/lib/mysql-test/bin/mysqltest"
    touch "$ROOT$TESTSUITE_MARK"
    log "unpacked mysql-testsuite: $(in_root /usr/lib/mysql-test/bin/mysqltest --version 2>&1 | head -n1)"
}

# Prometheus and promtool, for the monitoring rules' tests (deploy/monitoring/).
# A step of its own, like install-testsuite.
prometheus_installed() { [[ -x $ROOT/usr/bin/prometheus && -x $ROOT/usr/bin/promtool ]]; }
cmd_install_monitoring() {
    begin_add_on install-monitoring monitoring prometheus_installed || return 0
    # policy-rc.d: the package must not start its own service in the chroot.
    printf '#!/bin/sh\nexit 101\n' >"$ROOT/usr/sbin/policy-rc.d"
    chmod +x "$ROOT/usr/sbin/policy-rc.d"
    apt_in_root monitoring install -y -qq --no-install-recommends prometheus
    rm -f "$ROOT/usr/sbin/policy-rc.d"
    in_root apt-get clean
    log "installed $(in_root promtool --version 2>&1 | head -n1)"
}

require_installed() {
    [[ -f $ROOT/.gtid-relay-ready ]] || die "MySQL is not installed; run: deploy/sandbox.sh install"
}

pid_of() {
    local f
    f=$(outer_dir "$1")/mysqld.pid
    [[ -s $f ]] && cat "$f"
}

is_running() {
    local pid
    pid=$(pid_of "$1") || return 1
    [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null
}

mysql_root() {
    local n=$1
    shift
    in_root mysql --no-defaults -uroot -S "$(inner_dir "$n")/mysqld.sock" "$@"
}

with_instance_lock() {
    local n=$1
    mkdir -p "$(outer_dir "$n")"
    exec 8>"$(outer_dir "$n").lock"
    flock 8
}

cmd_start() {
    local n=${1:-}
    check_n "$n"
    shift
    local gtid_mode=ON tls=0 extra=()
    while (($#)); do
        case $1 in
            --gtid-mode=ON | --gtid-mode=OFF) gtid_mode=${1#--gtid-mode=} ;;
            --tls) tls=1 ;;
            --) shift; extra=("$@"); break ;;
            *) die "start: unknown option '$1' (expected --gtid-mode=ON|OFF, --tls, -- mysqld options)" ;;
        esac
        shift
    done
    require_installed
    with_instance_lock "$n"
    local dir inner port
    dir=$(outer_dir "$n")
    inner=$(inner_dir "$n")
    port=$(port_of "$n")
    if is_running "$n"; then
        log "instance $n already running (pid $(pid_of "$n"), port $port)"
        return 0
    fi
    local fresh=0
    if [[ ! -d $dir/data ]]; then
        cp -a "$ROOT/var/sandbox-template/data" "$dir/data"
        # Each instance must generate its own server_uuid.
        rm -f "$dir/data/auto.cnf"
        fresh=1
    fi
    local gtid_opts=(--gtid-mode=ON --enforce-gtid-consistency=ON)
    [[ $gtid_mode == OFF ]] && gtid_opts=(--gtid-mode=OFF --enforce-gtid-consistency=OFF)
    local tls_opts=()
    if ((tls)); then
        [[ -f $CERTS/out/ca.pem ]] || "$CERTS/make-certs.sh" >/dev/null
        mkdir -p "$dir/certs"
        cp "$CERTS/out/ca.pem" "$CERTS/out/mysql-server.pem" "$CERTS/out/mysql-server-key.pem" "$dir/certs/"
        tls_opts=(--ssl-ca="$inner/certs/ca.pem" --ssl-cert="$inner/certs/mysql-server.pem"
            --ssl-key="$inner/certs/mysql-server-key.pem" --require-secure-transport=ON)
    fi
    # server_id 100+N keeps sandbox ids clear of the relay's derived ids.
    # log_bin_trust_function_creators: the relay applies CREATE FUNCTION from a
    # client session, which needs it or SUPER; local_infile: it replays a
    # LOAD DATA logged as a statement as LOAD DATA LOCAL (docs/operator-guide.md).
    in_root /usr/sbin/mysqld --no-defaults --user=root \
        --datadir="$inner/data" --port="$port" --bind-address=127.0.0.1 \
        --socket="$inner/mysqld.sock" --pid-file="$inner/mysqld.pid" \
        --log-error="$inner/error.log" --mysqlx=OFF --secure-file-priv= \
        --server-id=$((100 + n)) --log-bin=binlog --binlog-format=ROW \
        --sync-binlog=1 --innodb-flush-log-at-trx-commit=1 \
        --auto-increment-increment=$AUTO_INCREMENT_INCREMENT --auto-increment-offset="$n" \
        --report-host=127.0.0.1 --report-port="$port" --log-bin-trust-function-creators=ON \
        --local-infile=ON \
        --innodb-buffer-pool-size=128M --performance-schema=OFF --skip-name-resolve \
        "${gtid_opts[@]}" "${tls_opts[@]}" "${extra[@]}" >/dev/null 2>&1 8>&- 9>&- &
    local deadline=$((SECONDS + 60))
    until mysql_root "$n" -e 'SELECT 1' >/dev/null 2>&1; do
        if ((SECONDS > deadline)) || ! kill -0 $! 2>/dev/null; then
            tail -n 20 "$dir/error.log" >&2 || true
            die "instance $n did not start; see $dir/error.log"
        fi
        sleep 0.2
    done
    if ((fresh)); then
        create_relay_account "$n"
    fi
    log "instance $n up: pid $(pid_of "$n"), port $port, gtid_mode=$gtid_mode"
}

# The relay's grants (docs/operator-guide.md explains each). Not binlogged:
# otherwise the peer would receive it through the relay and fail on a user it has.
create_relay_account() {
    mysql_root "$1" <<SQL
SET sql_log_bin = 0;
CREATE USER '$RELAY_USER'@'127.0.0.1' IDENTIFIED BY '$RELAY_PASSWORD';
CREATE USER '$RELAY_USER'@'localhost' IDENTIFIED BY '$RELAY_PASSWORD';
GRANT REPLICATION SLAVE, REPLICATION CLIENT,
      SELECT, INSERT, UPDATE, DELETE, CREATE, DROP, ALTER, INDEX, REFERENCES,
      CREATE VIEW, SHOW VIEW, TRIGGER, CREATE ROUTINE, ALTER ROUTINE, EXECUTE, EVENT,
      CREATE TEMPORARY TABLES, LOCK TABLES, CREATE USER, RELOAD, PROCESS
  ON *.* TO '$RELAY_USER'@'127.0.0.1', '$RELAY_USER'@'localhost' WITH GRANT OPTION;
GRANT REPLICATION_APPLIER, SESSION_VARIABLES_ADMIN, TRANSACTION_GTID_TAG, SET_ANY_DEFINER,
      ALLOW_NONEXISTENT_DEFINER, SYSTEM_USER
  ON *.* TO '$RELAY_USER'@'127.0.0.1', '$RELAY_USER'@'localhost';
SQL
}

wait_gone() {
    local pid=$1 deadline=$((SECONDS + ${2:-120}))
    while kill -0 "$pid" 2>/dev/null; do
        ((SECONDS > deadline)) && return 1
        sleep 0.1
    done
}

cmd_stop() {
    local n=${1:-}
    check_n "$n"
    with_instance_lock "$n"
    local pid
    if ! is_running "$n"; then
        return 0
    fi
    pid=$(pid_of "$n")
    kill -TERM "$pid"
    wait_gone "$pid" 120 || die "instance $n (pid $pid) did not stop within 120 s"
}

cmd_kill() {
    local n=${1:-}
    check_n "$n"
    with_instance_lock "$n"
    if is_running "$n"; then
        local pid
        pid=$(pid_of "$n")
        kill -KILL "$pid"
        wait_gone "$pid" 30 || die "instance $n (pid $pid) survived SIGKILL"
    fi
}

cmd_wipe() {
    local n=${1:-}
    check_n "$n"
    cmd_stop "$n"
    rm -rf "$(outer_dir "$n")" "$(outer_dir "$n").lock"
}

# Tests: no clean shutdown needed, the data goes too.
cmd_wipe_now() {
    local n=${1:-}
    check_n "$n"
    cmd_kill "$n"
    rm -rf "$(outer_dir "$n")" "$(outer_dir "$n").lock"
}

cmd_sql() {
    local n=${1:-}
    check_n "$n"
    [[ $# -ge 2 ]] || die "usage: sql N \"SQL\""
    is_running "$n" || die "instance $n is not running"
    mysql_root "$n" --batch --skip-column-names -e "$2"
}

# Test binaries run this in the background: when process PID is gone (finished,
# panicked or killed), SIGKILL every instance of namespace NS and delete it.
cmd_reap() {
    local owner=${1:-} ns=${2:-}
    [[ $owner =~ ^[0-9]+$ && -n $ns ]] || die "usage: reap PID NAMESPACE"
    while kill -0 "$owner" 2>/dev/null; do sleep 1; done
    NS=$ns
    local d n
    shopt -s nullglob
    for d in "$ROOT/var/sandbox/$NS"/*/; do
        n=$(basename "$d")
        [[ $n =~ ^[0-9]+$ ]] || continue
        cmd_kill "$n" || true
        exec 8>&-
    done
    rm -rf "${ROOT:?}/var/sandbox/$NS"
}

cmd_status() {
    local d n
    shopt -s nullglob
    for d in "$ROOT/var/sandbox/$NS"/*/; do
        n=$(basename "$d")
        if is_running "$n"; then
            echo "$n running pid=$(pid_of "$n") port=$(port_of "$n") datadir=$d""data"
        else
            echo "$n stopped port=$(port_of "$n") datadir=$d""data"
        fi
    done
}

verb=${1:-}
[[ -n $verb ]] || die "usage: sandbox.sh install|install-testsuite|install-monitoring|start|stop|kill|restart|wipe|sql|url|port|pid|datadir|status"
shift
case $verb in
    install) cmd_install ;;
    install-testsuite) cmd_install_testsuite ;;
    install-monitoring) cmd_install_monitoring ;;
    start) cmd_start "$@" ;;
    stop) cmd_stop "$@" ;;
    kill) cmd_kill "$@" ;;
    restart) n=${1:-}; cmd_stop "$n"; exec 8>&-; cmd_start "$@" ;;
    wipe) cmd_wipe "$@" ;;
    wipe-now) cmd_wipe_now "$@" ;;
    sql) cmd_sql "$@" ;;
    url) check_n "${1:-}"; echo "mysql://$RELAY_USER:$RELAY_PASSWORD@127.0.0.1:$(port_of "$1")" ;;
    port) check_n "${1:-}"; port_of "$1" ;;
    pid) check_n "${1:-}"; pid_of "$1" || die "instance $1 has no pid file" ;;
    datadir) check_n "${1:-}"; echo "$(outer_dir "$1")/data" ;;
    root) echo "$ROOT" ;;
    status) cmd_status ;;
    reap) cmd_reap "$@" ;;
    *) die "unknown verb '$verb'" ;;
esac
