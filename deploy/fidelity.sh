#!/usr/bin/env bash
# Fidelity harness: replay MySQL's own regression tests (mysql-testsuite, driven by
# mysqltest) on master m1 of a fresh pair, then compare master m2 with m1 -- once
# with gtid-relay between them, once with native MySQL master-master replication
# between the same kind of servers. The relay's outcome must equal native's.
#
#   deploy/fidelity.sh [--native|--relay|--both] [--keep] [--list FILE | TEST...]
#
# TEST is suite.test (main.xa_gtid, funcs_1.innodb_views, binlog.binlog_xa_handling).
# A list file has one TEST a line; '#' starts a comment.
#
# Output, one line a test:
#   TEST relay=OUTCOME native=OUTCOME PASS|FAIL
# OUTCOME is one of
#   identical                 m2 converged to m1 (gtid_executed equal) and every compared object is equal
#   different(<what>)         converged or timed out, and <what> differs (kind:object, ...)
#   stopped(<errno> <error>)  a replication channel (either direction) stopped with an error
#   skipped(<why>)            mysqltest skipped the test, or aborted it before it wrote anything
# With --both (the default) a test passes when both outcomes are of the same class
# (identical, different, stopped, skipped), and stopped ones stopped with the same
# errno, or when the relay stopped on a source reset where native stalled; with --relay or --native alone it passes when the outcome is identical or
# skipped. The last line is "N passed, M failed"; the exit status is 1 when M > 0.
#
# Environment:
#   GTID_RELAY_BIN       relay binary (default: target/debug/gtid-relay of this checkout)
#   FIDELITY_NS          sandbox namespace (default "fidelity")
#   FIDELITY_PORT_BASE   m1 listens on base+1, m2 on base+2, the relay's admin port is base+3 (default 26000)
#   FIDELITY_TEST_TIMEOUT   seconds before a mysqltest run is killed (default 120)
#   FIDELITY_WAIT        seconds to wait for m2 to converge (default 60)
#   FIDELITY_WORK        directory for logs, results and fingerprints (default: a new /tmp directory, kept)
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
SB=$HERE/sandbox.sh

export SANDBOX_NS=${FIDELITY_NS:-fidelity}
export SANDBOX_PORT_BASE=${FIDELITY_PORT_BASE:-26000}
RELAY_BIN=${GTID_RELAY_BIN:-$REPO/target/debug/gtid-relay}
TEST_TIMEOUT=${FIDELITY_TEST_TIMEOUT:-120}
WAIT_SECS=${FIDELITY_WAIT:-60}
RELAY_PASSWORD=relay-sandbox-pw  # the sandbox's relay account (deploy/sandbox.sh)
ADMIN_PASSWORD=fidelity-admin-pw

# Schemas never compared: the server's own, and MTR's helper schema (created on
# both masters without binlogging, like MTR's bootstrap does).
EXCLUDED_SCHEMAS="'mysql','sys','information_schema','performance_schema','mtr'"

die() { echo "fidelity: $*" >&2; exit 2; }
note() { echo "fidelity: $*" >&2; }

mode=both keep=0 list= tests=()
while (($#)); do
    case $1 in
        --both | --relay | --native) mode=${1#--} ;;
        --keep) keep=1 ;;
        --list) list=${2:?--list needs a file}; shift ;;
        -h | --help) sed -n '2,30p' "${BASH_SOURCE[0]}"; exit 0 ;;
        -*) die "unknown option $1" ;;
        *) tests+=("$1") ;;
    esac
    shift
done
if [[ -n $list ]]; then
    [[ -f $list ]] || die "no list file $list"
    while read -r line; do
        line=${line%%#*}
        line=${line//[[:space:]]/}
        [[ -n $line ]] && tests+=("$line")
    done <"$list"
fi
((${#tests[@]})) || die "no tests given (TEST... or --list FILE)"
if [[ $mode != native ]]; then
    [[ -x $RELAY_BIN ]] || die "no relay binary at $RELAY_BIN (cargo build, or set GTID_RELAY_BIN)"
fi

"$SB" install >&2
"$SB" install-testsuite >&2
ROOT=$("$SB" root)
TESTDIR=/usr/lib/mysql-test          # inside the chroot
NSDIR=/var/sandbox/$SANDBOX_NS       # inside the chroot; the sandbox keeps instances there
VARDIR=$NSDIR/var                    # mysqltest's vardir (MYSQLTEST_VARDIR), inside the chroot
TPL=$NSDIR/template                  # the bootstrapped datadir every master starts from
P1=$("$SB" port 1)
P2=$("$SB" port 2)
ADMIN_PORT=$((SANDBOX_PORT_BASE + 3))
SOCK1=$NSDIR/1/mysqld.sock
SOCK2=$NSDIR/2/mysqld.sock
WORK=${FIDELITY_WORK:-$(mktemp -d /tmp/gtid-relay-fidelity.XXXXXX)}
mkdir -p "$WORK"
# Server options of both masters in both modes, on top of the sandbox's: what
# MTR's default_mysqld.cnf sets that changes what tests can do.
SERVER_OPTS=(--log-bin-trust-function-creators=1 --connect-timeout=60)

relay_pid=
TEST_OPTS=()
cleanup() {
    stop_relay
    if ((keep)); then
        note "kept: masters of namespace $SANDBOX_NS, work directory $WORK"
        return
    fi
    wipe_pair
    rm -rf "${ROOT:?}$NSDIR"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

in_root() { chroot "$ROOT" "$@"; }
# SQL as root over instance N's socket; batch output without column names.
q() {
    local n=$1
    shift
    timeout -k 5 60 chroot "$ROOT" mysql --no-defaults -uroot -S "$NSDIR/$n/mysqld.sock" \
        --batch --skip-column-names "$@"
}
is_up() { q "$1" -e 'SELECT 1' >/dev/null 2>&1; }
gtids() { q "$1" -e "SELECT REPLACE(@@GLOBAL.gtid_executed, '\n', '')" 2>/dev/null; }
one_line() { tr '\n\t' '  ' | sed 's/  */ /g; s/^ //; s/ $//' | cut -c1-"${1:-100}"; }

wipe_pair() {
    local n
    for n in 1 2; do "$SB" wipe-now "$n" >/dev/null 2>&1 || true; done
}

stop_relay() {
    [[ -n $relay_pid ]] || return 0
    if kill -TERM "$relay_pid" 2>/dev/null; then
        local i
        for ((i = 0; i < 50; i++)); do kill -0 "$relay_pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$relay_pid" 2>/dev/null || true
    fi
    wait "$relay_pid" 2>/dev/null || true
    relay_pid=
}

# --- the template datadir: the sandbox's, plus MTR's bootstrap (test and mtr
# schemas, time zone data, the warning suppressions), done without binlogging.
make_template() {
    wipe_pair
    rm -rf "${ROOT:?}$TPL"
    "$SB" start 1 -- "${SERVER_OPTS[@]}" 2>>"$WORK/sandbox.log" || die "could not start a server; see $WORK/sandbox.log"
    {
        echo "SET sql_log_bin = 0; USE mysql;"
        cat "$ROOT$TESTDIR/include/mtr_test_data_timezone.sql"
        echo "DELETE FROM mysql.user WHERE user = '';"
        echo "CREATE DATABASE test; CREATE DATABASE mtr;"
        echo "INSERT INTO mysql.db VALUES ('%','test','','Y','Y','Y','Y','Y','Y','N','Y','Y','Y','Y','Y','Y','Y','Y','N','N','Y','Y');"
        cat "$ROOT$TESTDIR/include/mtr_warnings.sql" "$ROOT$TESTDIR/include/mtr_check.sql"
        # The native applier holds every privilege; the relay replays the
        # tests' GRANTs (of SUPER and the rest) and DEFINERs of accounts that
        # do not exist, so here its account holds them all as well.
        echo "GRANT ALL PRIVILEGES ON *.* TO 'relay'@'127.0.0.1', 'relay'@'localhost' WITH GRANT OPTION;"
        echo "GRANT PROXY ON ''@'' TO 'relay'@'127.0.0.1', 'relay'@'localhost' WITH GRANT OPTION;"
        echo "FLUSH PRIVILEGES;"
    } >"$WORK/bootstrap.sql"
    q 1 <"$WORK/bootstrap.sql" >"$WORK/bootstrap.log" 2>&1 || die "bootstrap failed; see $WORK/bootstrap.log"
    [[ -z $(gtids 1) ]] || die "the bootstrap wrote GTIDs: $(gtids 1)"
    "$SB" stop 1
    mv "$ROOT$NSDIR/1/data" "$ROOT$TPL"
    # Each master generates its own server_uuid and starts an empty binlog.
    rm -f "$ROOT$TPL/auto.cnf" "$ROOT$TPL"/binlog.*
    wipe_pair
}

# Options of a test's -master.opt file, for both masters, minus those that would
# change the sandbox's replication setup.
test_opts() {
    local f=$1 tok
    [[ -f $f ]] || return 0
    for tok in $(sed "s|\$MYSQL_TEST_DIR|$TESTDIR|g; s|\$MYSQLTEST_VARDIR|$VARDIR|g" "$f"); do
        case $tok in
            --log-bin* | --skip-log-bin* | --server-id* | --server_id* | --gtid-mode* | --gtid_mode* | \
                --enforce-gtid* | --enforce_gtid* | --binlog-format* | --binlog_format* | --log-replica* | \
                --log_replica* | --log-slave* | --log_slave* | --auto-increment* | --auto_increment* | \
                --port* | --socket* | --datadir* | --secure-file-priv* | --secure_file_priv* | --force-restart | \
                --default-time-zone=*\$* | *'$'*) ;;
            *) printf '%s\n' "$tok" ;;
        esac
    done
}

start_pair() {
    local opts=("$@") n pids=() rc=0
    wipe_pair
    for n in 1 2; do
        mkdir -p "$ROOT$NSDIR/$n"
        cp -a "$ROOT$TPL" "$ROOT$NSDIR/$n/data"
        "$SB" start "$n" -- "${SERVER_OPTS[@]}" "${opts[@]}" 2>>"$WORK/sandbox.log" &
        pids+=($!)
    done
    for n in "${pids[@]}"; do wait "$n" || rc=1; done
    return $rc
}

# --- linking the masters

# Native master-master: m2 replicates m1 from the start; m1 replicates m2 only
# once the test is over (link_native_back). While the test runs nothing
# originates on m2 (replicated events are disabled there), so the final state is
# that of a pair linked both ways all along; but a running applier on m1 would
# make m1 refuse what tests do to it (SET GLOBAL binlog_format: error 3747),
# which it does not refuse in relay mode, where m1 has no replica channel.
change_source() {
    local n=$1 port=$2
    q "$n" -e "CHANGE REPLICATION SOURCE TO SOURCE_HOST='127.0.0.1', SOURCE_PORT=$port,
        SOURCE_USER='relay', SOURCE_PASSWORD='$RELAY_PASSWORD', SOURCE_AUTO_POSITION=1,
        GET_SOURCE_PUBLIC_KEY=1, SOURCE_CONNECT_RETRY=1, SOURCE_RETRY_COUNT=120; START REPLICA" 2>>"$WORK/sandbox.log"
}

link_native() {
    change_source 2 "$P1" || return 1
    wait_channels_up native 1
}

link_native_back() {
    change_source 1 "$P2" || return 1
    wait_channels_up native 2
}

link_relay() {
    local toml=$WORK/relay.toml
    cat >"$toml" <<TOML
[relay]
report_host = "127.0.0.1"

[admin]
listen = "127.0.0.1:$ADMIN_PORT"
users = [{ name = "admin", password_hash = "$ADMIN_HASH" }]

[source]
heartbeat_secs = 1
# Reconnect about as fast as the native replica (SOURCE_CONNECT_RETRY=1) when a test restarts m1.
reconnect_max_secs = 1

[[masters]]
name = "m1"
host = "127.0.0.1"
port = $P1
user = "relay"
password = "$RELAY_PASSWORD"

[[masters]]
name = "m2"
host = "127.0.0.1"
port = $P2
user = "relay"
password = "$RELAY_PASSWORD"
TOML
    "$RELAY_BIN" run --config "$toml" >"$CUR/relay.log" 2>&1 &
    relay_pid=$!
    wait_channels_up relay
}

# SHOW REPLICA STATUS, one line per channel: name IO SQL sql_errno sql_error io_errno io_error.
channel_rows() {
    local src=$1
    {
        case $src in
            relay)
                timeout -k 5 20 chroot "$ROOT" mysql --no-defaults -h127.0.0.1 -P"$ADMIN_PORT" -uadmin \
                    -p"$ADMIN_PASSWORD" -E -e 'SHOW REPLICA STATUS' 2>/dev/null
                ;;
            m1 | m2)
                timeout -k 5 20 chroot "$ROOT" mysql --no-defaults -uroot -S "$NSDIR/${src#m}/mysqld.sock" \
                    -E -e 'SHOW REPLICA STATUS' 2>/dev/null
                ;;
        esac
    } | awk -F': ' -v src="$src" '
        function flush() { if (seen) printf "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", (ch == "" ? src : ch), io, sql, se, sm, ie, im; seen = 0 }
        /^\*+ [0-9]+\. row/ { flush(); seen = 1; ch = io = sql = se = sm = ie = im = ""; next }
        { k = $1; gsub(/^ +/, "", k); v = substr($0, index($0, ": ") + 2) }
        k == "Channel_Name" { ch = v } k == "Replica_IO_Running" { io = v } k == "Replica_SQL_Running" { sql = v }
        k == "Last_SQL_Errno" { se = v } k == "Last_SQL_Error" { sm = v }
        k == "Last_IO_Errno" { ie = v } k == "Last_IO_Error" { im = v }
        END { flush() }'
}

all_channels() {
    if [[ $1 == relay ]]; then channel_rows relay; else channel_rows m1; channel_rows m2; fi
}

# Until the relay's two channels, or the native pair's EXPECTED channels, run.
wait_channels_up() {
    local kind=$1 expected=${2:-2} deadline=$((SECONDS + 30)) rows
    while ((SECONDS < deadline)); do
        if [[ $kind == relay ]] && ! kill -0 "$relay_pid" 2>/dev/null; then
            return 1
        fi
        rows=$(all_channels "$kind")
        # A thread that stopped with an error will not come up by itself.
        awk -F'\t' '($2 == "No" && $6 + 0) || ($3 == "No" && $4 + 0) { bad = 1 } END { exit !bad }' <<<"$rows" && return 1
        if [[ $(grep -c . <<<"$rows") == "$expected" ]] && ! awk -F'\t' '$2 != "Yes" || $3 != "Yes" { bad = 1 } END { exit !bad }' <<<"$rows"; then
            return 0
        fi
        sleep 0.2
    done
    return 1
}

# "stopped(errno error)" when a channel stopped, else nothing. A link that is
# reconnecting ("Connecting") is not stopped.
channel_failure() {
    local kind=$1
    if [[ $kind == relay ]] && ! kill -0 "$relay_pid" 2>/dev/null; then
        echo "stopped(relay exited: $(grep -v '^\s*$' "$CUR/relay.log" | tail -n 1 | one_line 80))"
        return
    fi
    local row errno msg
    # The first stopped thread with an error; else the first stopped one. A
    # client error (2000-2999: a server restarting, a link lost) is retried
    # by both appliers: not a stop.
    row=$(all_channels "$kind" | awk -F'\t' '
        ($4 >= 2000 && $4 < 3000) || ($6 >= 2000 && $6 < 3000) { next }
        $3 == "No" && $4 != "0" && $4 != "" { print $4 "\t" $5; found = 1; exit }
        $2 == "No" && $6 != "0" && $6 != "" { print $6 "\t" $7; found = 1; exit }
        ($2 == "No" || $3 == "No") && !any { any = $4 + $6 "\t" $5 $7 }
        END { if (!found && any != "") print any }')
    [[ -n $row ]] || return 0
    errno=${row%%$'\t'*}
    msg=${row#*$'\t'}
    if [[ $msg == "Coordinator stopped"* ]]; then
        # A native multi-threaded applier names the worker's error only in the error log.
        local detail
        detail=$(cat "$ROOT$NSDIR"/{1,2}/error.log 2>/dev/null | grep -a 'MY-010584' | tail -n 1 |
            sed -E "s/.*; Error '(.*)' on query\..*Query: '(.{0,50}).*/\1 [\2]/; s/.*failed executing transaction [^;]*; //")
        [[ -n $detail ]] && msg=$detail
    fi
    # The relay's message: "Worker failed executing transaction 'G' on target T; Error 'E' (errno N) on ...".
    if [[ $msg == *"; Error '"* ]]; then
        msg=${msg#*; Error \'}
        msg=${msg%%\' (errno*}
    fi
    echo "stopped($errno $(printf '%s' "$msg" | LC_ALL=C tr -c '[:print:]' '?' | one_line 110))"
}

# --- comparing m1 and m2

# What a master looks like, one self-describing line each ("kind<TAB>object<TAB>..."),
# for the objects the test may leave behind. Timestamps of creation, change and last
# execution are left out everywhere: they are not part of what replication carries.
fingerprint() {
    local n=$1 side=$2 out=$3
    local gen=$WORK/fp-gen.sql script=$CUR/fp$n.sql
    # The statements that depend on what exists: SHOW CREATE and CHECKSUM per object,
    # and the column lists of the privilege tables.
    cat >"$gen" <<SQL
SELECT CONCAT('SELECT ''##'', ''table'', ''', REPLACE(REPLACE(CONCAT(table_schema, '.', table_name), '\\\\', '\\\\\\\\'), '''', ''''''), ''';\n',
              'SHOW CREATE TABLE \`', REPLACE(table_schema, '\`', '\`\`'), '\`.\`', REPLACE(table_name, '\`', '\`\`'), '\`;\n',
              'CHECKSUM TABLE \`', REPLACE(table_schema, '\`', '\`\`'), '\`.\`', REPLACE(table_name, '\`', '\`\`'), '\` EXTENDED;')
  FROM information_schema.tables
 WHERE table_schema NOT IN ($EXCLUDED_SCHEMAS) AND table_type = 'BASE TABLE'
 ORDER BY table_schema, table_name;
SELECT CONCAT('SELECT ''##'', ''', LOWER(routine_type), ''', ''', REPLACE(REPLACE(CONCAT(routine_schema, '.', routine_name), '\\\\', '\\\\\\\\'), '''', ''''''), ''';\n',
              'SHOW CREATE ', routine_type, ' \`', REPLACE(routine_schema, '\`', '\`\`'), '\`.\`', REPLACE(routine_name, '\`', '\`\`'), '\`;')
  FROM information_schema.routines
 WHERE routine_schema NOT IN ($EXCLUDED_SCHEMAS)
 ORDER BY routine_schema, routine_type, routine_name;
SELECT CONCAT('SELECT ''##'', '''', '''';\n',
              'SELECT ''', t.table_name, ''', ', GROUP_CONCAT(CONCAT('\`', c.column_name, '\`') ORDER BY c.ordinal_position),
              ' FROM mysql.', t.table_name, ' ORDER BY 2, 3, 4, 5;')
  FROM information_schema.tables t JOIN information_schema.columns c USING (table_schema, table_name)
 WHERE t.table_schema = 'mysql'
   AND t.table_name IN ('user', 'db', 'tables_priv', 'columns_priv', 'procs_priv', 'proxies_priv',
                        'role_edges', 'default_roles', 'global_grants', 'password_history')
   -- Left out, each because it differs under native replication too:
   -- (none yet)
 GROUP BY t.table_name
 ORDER BY t.table_name;
SQL
    {
        echo "SET SESSION lock_wait_timeout = 10;"
        cat <<SQL
SELECT '##', '', '';
SELECT 'schema', schema_name, default_character_set_name, default_collation_name, default_encryption
  FROM information_schema.schemata WHERE schema_name NOT IN ($EXCLUDED_SCHEMAS) ORDER BY 2;
SELECT 'object', CONCAT(table_schema, '.', table_name), table_type
  FROM information_schema.tables WHERE table_schema NOT IN ($EXCLUDED_SCHEMAS) ORDER BY 2;
SELECT 'view', CONCAT(table_schema, '.', table_name), view_definition, check_option, is_updatable, definer,
       security_type, character_set_client, collation_connection
  FROM information_schema.views WHERE table_schema NOT IN ($EXCLUDED_SCHEMAS) ORDER BY 2;
SELECT 'trigger', CONCAT(trigger_schema, '.', trigger_name), event_manipulation, event_object_schema,
       event_object_table, action_order, action_statement, action_orientation, action_timing, sql_mode,
       definer, character_set_client, collation_connection, database_collation
  FROM information_schema.triggers WHERE trigger_schema NOT IN ($EXCLUDED_SCHEMAS) ORDER BY 2;
SELECT 'routine', CONCAT(routine_schema, '.', routine_name), routine_type, security_type, definer, sql_mode,
       routine_comment, is_deterministic, sql_data_access
  FROM information_schema.routines WHERE routine_schema NOT IN ($EXCLUDED_SCHEMAS) ORDER BY 2, 3;
-- A native replica keeps a replicated event but disables it there (SLAVESIDE_DISABLED,
-- "DISABLE ON REPLICA"), so that it runs once, on its origin: m1's ENABLED events
-- are expected as SLAVESIDE_DISABLED on m2.
SELECT 'event', CONCAT(event_schema, '.', event_name), definer, time_zone, event_definition, event_type,
       execute_at, interval_value, interval_field, sql_mode, starts, ends,
       IF('$side' = 'origin' AND status = 'ENABLED', 'SLAVESIDE_DISABLED', status),
       on_completion, event_comment, originator, character_set_client, collation_connection,
       database_collation
  FROM information_schema.events WHERE event_schema NOT IN ($EXCLUDED_SCHEMAS) ORDER BY 2;
SQL
        q "$n" --raw <"$gen" 2>>"$CUR/fingerprint.err"
    } >"$script"
    timeout -k 5 120 chroot "$ROOT" mysql --no-defaults -uroot -S "$NSDIR/$n/mysqld.sock" \
        --batch --skip-column-names --force <"$script" 2>>"$CUR/fingerprint.err" |
        # A master's next AUTO_INCREMENT value follows its own auto_increment_offset
        # (the sandbox gives m1 and m2 offsets 1 and 2, increment 7), so it differs
        # between source and replica under native replication too.
        sed -E 's/ AUTO_INCREMENT=[0-9]+//' |
        awk -F'\t' '$1 == "##" { ctx = ($2 == "" ? "" : $2 "\t" $3 "\t"); next } { print ctx $0 }' |
        LC_ALL=C sort >"$out"
}

# "identical" or "different(what)" for the current pair.
compare_pair() {
    rm -f "$CUR/m1.fp" "$CUR/m2.fp"
    fingerprint 1 origin "$CUR/m1.fp" || true
    fingerprint 2 peer "$CUR/m2.fp" || true
    # Every fingerprint has the test schema at least; an empty one is a harness failure.
    if ! grep -q '^schema' "$CUR/m1.fp" 2>/dev/null || ! grep -q '^schema' "$CUR/m2.fp" 2>/dev/null; then
        echo "harness:fingerprint failed"
        return
    fi
    LC_ALL=C comm -3 "$CUR/m1.fp" "$CUR/m2.fp" >"$CUR/fp.diff" || true
    if [[ -s $CUR/fp.diff ]]; then
        sed 's/^\t//' "$CUR/fp.diff" | awk -F'\t' '{ print $1 ":" $2 }' | awk '!seen[$0]++' >"$CUR/fp.what"
        local what total
        total=$(wc -l <"$CUR/fp.what")
        what=$(head -n 4 "$CUR/fp.what" | paste -sd, -)
        ((total > 4)) && what="$what,+$((total - 4))"
        echo "$what"
    fi
}

# --- one test in one mode

resolve_test() {
    local name=$1 suite test
    suite=${name%%.*}
    test=${name#*.}
    [[ $suite != "$name" && -n $test ]] || return 1
    if [[ $suite == main ]]; then
        echo "$TESTDIR/t/$test.test"
    else
        find "$ROOT$TESTDIR/suite/$suite" -name "$test.test" -path '*/t/*' 2>/dev/null | head -n 1 | sed "s|^$ROOT||"
    fi
}

run_mysqltest() {
    local file=$1 log=$2
    rm -rf "${ROOT:?}$VARDIR"
    mkdir -p "$ROOT$VARDIR"/{tmp,log,std_data}
    cat >"$ROOT$VARDIR/my.cnf" <<CNF
[client]
user=root
host=localhost
socket=$SOCK1
port=$P1
CNF
    local cnf=$VARDIR/my.cnf bin=$TESTDIR/bin mpid rc=0
    # timeout signals its whole process group: mysqltest and whatever it --exec'ed.
    timeout -k 5 "$TEST_TIMEOUT" chroot "$ROOT" env \
        MYSQL_TEST_DIR="$TESTDIR" MYSQL_TEST_DIR_ABS="$TESTDIR" \
        MYSQLTEST_VARDIR="$VARDIR" MYSQLTEST_VARDIR_ABS="$VARDIR" MYSQL_TMP_DIR="$VARDIR/tmp" \
        MYSQL_CHARSETSDIR=/usr/share/mysql/charsets MYSQL_SHAREDIR=/usr/share/mysql \
        MASTER_MYPORT="$P1" MASTER_MYSOCK="$SOCK1" DEFAULT_MASTER_PORT="$P1" MASTER_X_MYSOCK= \
        MYSQL="$bin/mysql --defaults-file=$cnf" MYSQL_DUMP="$bin/mysqldump --defaults-file=$cnf" \
        MYSQL_BINLOG="$bin/mysqlbinlog --defaults-file=$cnf" MYSQL_CHECK="$bin/mysqlcheck --defaults-file=$cnf" \
        MYSQL_SHOW="$bin/mysqlshow --defaults-file=$cnf" MYSQL_IMPORT="$bin/mysqlimport --defaults-file=$cnf" \
        MYSQL_SLAP="$bin/mysqlslap --defaults-file=$cnf" MYSQLADMIN="$bin/mysqladmin" \
        MYSQL_TZINFO_TO_SQL="$bin/mysql_tzinfo_to_sql" MYSQL_MY_PRINT_DEFAULTS="$bin/my_print_defaults" \
        MY_PERROR="$bin/perror" MYSQL_BIN_PATH=/usr/bin MYSQL_BASEDIR=/usr \
        sh -c 'cd "$0" && exec bin/mysqltest --defaults-file="$1" --silent --tmpdir="$2/tmp" \
            --logdir="$2/log" --database=test --basedir="$0/" --character-sets-dir=/usr/share/mysql/charsets \
            --max-connect-retries=5 --tail-lines=10 --record --result-file="$2/test.result" --test-file="$3"' \
        "$TESTDIR" "$cnf" "$VARDIR" "$file" >"$log" 2>&1 &
    mpid=$!
    watch_restarts "$mpid"
    wait "$mpid" || rc=$?
    return $rc
}

m1_alive() {
    local f=$ROOT$NSDIR/1/mysqld.pid
    [[ -s $f ]] && kill -0 "$(cat "$f")" 2>/dev/null
}

# What MTR does for include/restart_mysqld.inc and friends: when m1 goes down,
# the test has written "wait" or "restart[:options]" to mysqld.<server_id>.expect; restart
# m1 (same datadir, the test's options plus those) when it says so. A server that
# goes down with no such file is not coming back: stop mysqltest at once.
watch_restarts() {
    # Tests name the file after @@server_id (the sandbox's m1 has 101).
    local mpid=$1 expect=$ROOT$VARDIR/tmp/mysqld.101.expect down_since= what extra
    while kill -0 "$mpid" 2>/dev/null; do
        sleep 0.3
        if m1_alive; then
            down_since=
            continue
        fi
        what=$(cat "$expect" 2>/dev/null || true)
        case $what in
            restart*)
                rm -f "$expect"
                extra=${what#restart}
                extra=${extra#:}
                echo "fidelity: restarting m1 (${extra:-no extra options})" >>"$CUR/restarts.log"
                # shellcheck disable=SC2086 # the options are words
                "$SB" start 1 -- "${SERVER_OPTS[@]}" "${TEST_OPTS[@]}" $extra >>"$CUR/restarts.log" 2>&1 || {
                    echo "fidelity: m1 did not restart" >>"$CUR/restarts.log"
                    kill -TERM "$mpid" 2>/dev/null || true
                }
                down_since=
                ;;
            wait*) down_since= ;;
            *)
                [[ -n $down_since ]] || down_since=$SECONDS
                if ((SECONDS - down_since >= 5)); then
                    echo "fidelity: m1 went down without an expect file; stopping mysqltest" >>"$CUR/restarts.log"
                    kill -TERM "$mpid" 2>/dev/null || true
                fi
                ;;
        esac
    done
}

# Prints the outcome of TEST (file FILE) in MODE (relay|native).
run_one() {
    local name=$1 file=$2 kind=$3 opts=() rc outcome fail
    CUR=$WORK/$name/$kind
    mkdir -p "$CUR"
    mapfile -t opts < <(test_opts "$ROOT${file%.test}-master.opt")
    TEST_OPTS=("${opts[@]}")
    if ! start_pair "${opts[@]}"; then
        wipe_pair
        echo "skipped(servers do not start with the test's options)"
        return
    fi
    if [[ $kind == native ]]; then
        link_native || { fail=$(channel_failure native); echo "${fail:-stopped(native link m1->m2 did not come up)}"; wipe_pair; return; }
    else
        link_relay || { fail=$(channel_failure relay); echo "${fail:-stopped(relay did not come up)}"; stop_relay; wipe_pair; return; }
    fi
    local start=$SECONDS
    rc=0
    run_mysqltest "$file" "$CUR/mysqltest.log" || rc=$?
    echo "mysqltest rc=$rc after $((SECONDS - start)) s" >>"$CUR/mysqltest.log"
    cp "$ROOT$VARDIR/test.result" "$CUR/test.result" 2>/dev/null || true
    outcome=$(settle "$kind" "$rc")
    stop_relay
    cp "$ROOT$NSDIR/1/error.log" "$CUR/m1-error.log" 2>/dev/null || true
    cp "$ROOT$NSDIR/2/error.log" "$CUR/m2-error.log" 2>/dev/null || true
    wipe_pair
    echo "$outcome"
}

settle() {
    local kind=$1 rc=$2 g1 g2 fail what u2
    if ! is_up 1; then
        echo "skipped(m1 is down after the test: it restarts or kills the server)"
        return
    fi
    g1=$(gtids 1)
    if ((rc == 62)); then
        echo "skipped($(grep -v '^mysqltest rc=' "$CUR/mysqltest.log" | grep . | tail -n 1 | one_line 70))"
        return
    fi
    if ((rc != 0)) && [[ -z $g1 ]]; then
        echo "skipped(aborted before writing: $(grep -v '^mysqltest rc=' "$CUR/mysqltest.log" | grep . | head -n 1 | one_line 70))"
        return
    fi
    ((rc == 0)) || echo "$kind: mysqltest exit $rc: $(grep -v '^mysqltest rc=' "$CUR/mysqltest.log" | grep . | head -n 1 | one_line 150)" >>"$WORK/notes"
    # Stop the schedulers: events that keep firing on m1 would keep the pair from
    # ever being equal at one moment. m1's events still compare as defined.
    q 1 -e 'SET GLOBAL event_scheduler = OFF' 2>/dev/null || true
    q 2 -e 'SET GLOBAL event_scheduler = OFF' 2>/dev/null || true
    if [[ $kind == native ]] && ! link_native_back; then
        fail=$(channel_failure native)
        echo "${fail:-stopped(native link m2->m1 did not come up)}"
        return
    fi
    local deadline=$((SECONDS + WAIT_SECS)) u2 own
    u2=$(q 2 -e 'SELECT @@server_uuid')
    while :; do
        # Converged: m2 has every GTID of m1, and m1 has every GTID that originated
        # on m2. (Not g1 == g2: a test that resets m1's binary logs leaves m2 with
        # more of m1's GTIDs than m1 has.)
        g1=$(gtids 1)
        g2=$(gtids 2)
        own=$(tr ',' '\n' <<<"$g2" | grep "^$u2" || true)
        [[ $(q 2 -e "SELECT GTID_SUBSET('$g1', @@GLOBAL.gtid_executed) AND GTID_SUBSET('$own', '$g1')" 2>/dev/null) == 1 ]] && break
        fail=$(channel_failure "$kind")
        if [[ -n $fail ]]; then
            echo "$fail"
            return
        fi
        if ((SECONDS >= deadline)); then
            local missing
            missing=$(q 2 -e "SELECT GTID_SUBTRACT('$g1', @@GLOBAL.gtid_executed)" 2>/dev/null | one_line 60)
            what=$(compare_pair)
            echo "different(gtid:m2 lacks ${missing:-nothing}${what:+,$what})"
            return
        fi
        sleep 0.3
    done
    # A GTID subset says nothing when m1 reused numbers m2 already has (RESET
    # BINARY LOGS AND GTIDS): end with an empty transaction under a UUID of its
    # own on m1, and wait for m2 to have it, as MTR's sync_slave_with_master
    # waits for the source's position. A link the reset broke stops before.
    local marker
    marker=$(cat /proc/sys/kernel/random/uuid)
    q 1 -e "SET GTID_NEXT = '$marker:1'; BEGIN; COMMIT; SET GTID_NEXT = 'AUTOMATIC'" 2>/dev/null || true
    while [[ $(q 2 -e "SELECT GTID_SUBSET('$marker:1', @@GLOBAL.gtid_executed)" 2>/dev/null) != 1 ]]; do
        fail=$(channel_failure "$kind")
        [[ -n $fail ]] && { echo "$fail"; return; }
        if ((SECONDS >= deadline)); then
            echo "different(gtid:m2 did not receive m1's last transaction${what:+,$what})"
            return
        fi
        sleep 0.3
    done
    fail=$(channel_failure "$kind")
    [[ -n $fail ]] && { echo "$fail"; return; }
    what=$(compare_pair)
    # Transactions that originate on m2: nothing runs there but replication.
    if [[ -n $own ]]; then
        what="gtid:m2 wrote ${own#"$u2"}${what:+,$what}"
    fi
    if [[ -n $what ]]; then echo "different($what)"; else echo identical; fi
}

class_of() {
    case $1 in
        identical) echo identical ;;
        different*) echo different ;;
        stopped*) local e=${1#stopped(}; echo "stopped ${e%% *}" ;;
        skipped*) echo skipped ;;
        *) echo "$1" ;;
    esac
}

# --- main

if [[ $mode != native ]]; then
    ADMIN_HASH=$(echo "$ADMIN_PASSWORD" | "$RELAY_BIN" hash-password) || die "$RELAY_BIN hash-password failed"
fi
note "work directory $WORK (logs, results and fingerprints per test)"
make_template
passed=0 failed=0 t0=$SECONDS
declare -a summary=()
for name in "${tests[@]}"; do
    ts=$SECONDS
    file=$(resolve_test "$name" || true)
    relay_out= native_out=
    if [[ -z $file || ! -f $ROOT$file ]]; then
        relay_out="skipped(no such test)" native_out=$relay_out
    else
        [[ $mode != native ]] && relay_out=$(run_one "$name" "$file" relay)
        [[ $mode != relay ]] && native_out=$(run_one "$name" "$file" native)
    fi
    case $mode in
        both)
            ok=0
            [[ $(class_of "$relay_out") == "$(class_of "$native_out")" ]] && ok=1
            # After RESET BINARY LOGS AND GTIDS on m1 a native replica waits in
            # silence at a position the new binlog never reaches; the relay stops
            # with the diverged error instead. Reporting what native does not is
            # no worse than native; the reverse (a silent relay) still fails.
            [[ $relay_out == "stopped(13114 "*"holds GTIDs of source"* ]] &&
                [[ $native_out == "different(gtid:m2 did not receive m1's last transaction"* ]] && ok=1
            line="$name relay=$relay_out native=$native_out"
            ;;
        relay) ok=0; [[ $relay_out == identical || $relay_out == skipped* ]] && ok=1; line="$name relay=$relay_out" ;;
        native) ok=0; [[ $native_out == identical || $native_out == skipped* ]] && ok=1; line="$name native=$native_out" ;;
    esac
    if ((ok)); then
        passed=$((passed + 1)); line="$line PASS"
    else
        failed=$((failed + 1)); line="$line FAIL"
    fi
    echo "$line"
    echo "$line ($((SECONDS - ts)) s)" >>"$WORK/results"
    summary+=("$line")
done
echo
echo "summary ($mode, $((SECONDS - t0)) s, details in $WORK):"
for class in identical different stopped skipped; do
    r=0 nn=0
    for line in "${summary[@]}"; do
        [[ $line == *"relay=$class"* ]] && r=$((r + 1))
        [[ $line == *"native=$class"* ]] && nn=$((nn + 1))
    done
    printf '  %-10s relay %3d  native %3d\n' "$class" "$r" "$nn"
done
echo "$passed passed, $failed failed"
((failed == 0))
