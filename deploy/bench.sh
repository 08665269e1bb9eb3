#!/usr/bin/env bash
# gtid-relay against native MySQL replication, side by side on fresh sandbox
# servers in one run (docs/benchmarks.md explains each figure).
#
#   deploy/bench.sh [catchup] [steady] [modes] [--seconds N] [--rates "100 300"] [--relay-apply TOML]
#   deploy/bench.sh ab [--ab-bin PATH] [--ab-apply TOML] [--relay-apply TOML]
#   deploy/bench.sh semisync [--seconds N]
#
# --relay-apply adds settings to the relay's [apply] table, e.g. "workers = 16";
# --relay-master to each of its [[masters]], e.g. 'tls = { ssl_mode = "DISABLED" }'.
#
# catchup: a sysbench oltp_write_only backlog (4 tables x 10k rows, 4 threads,
#          20 s) on S while nothing replicates, then the time each applier takes
#          to apply it: native replica (defaults), native replica (16 workers),
#          the relay (defaults). Each runs alone. --rounds N repeats it all on
#          fresh servers and ends with the median of each figure.
# steady:  sysbench at a fixed rate on both masters; lag p50/p90/p99 read from
#          each target's binlog (immediate - original commit timestamp of every
#          GTID event from the other master), for the relay and for native
#          master-master replication, on the same fresh servers.
# ab:      relay A (--ab-bin, e.g. a release build of an older commit; default
#          this build, with --ab-apply as its [apply] settings) and relay B (this
#          build, --relay-apply) catch up the same backlog at the same time, each
#          into its own target: both see the same machine, so their ratio holds
#          even when other jobs share it (the catchup phases run one after the
#          other and do not).
# modes:   the price of an [apply] setting: one backlog at a time, applied by
#          the relay with the default settings (S=m1 -> m2) and with
#          --relay-apply (m1 -> m3), back to back on the same backlog in
#          alternating order (two rounds), so both see the same machine load.
#          E.g. --relay-apply 'conflict = "last-writer-wins"'.
# semisync: commit latency on a semi-synchronous source (m1: the semi-sync
#          source plugin, AFTER_SYNC, one acknowledgement to wait for):
#          sysbench oltp_insert with 1 and 4 threads for --seconds each, with
#          m1 asynchronous, with a native semi-sync replica (m2), and with the
#          relay (m1 -> m3) acknowledging on ack = "received" and "applied";
#          each case alone, checked by Rpl_semi_sync_source_yes_tx / no_tx.
# Cost:    relay CPU seconds per 1,000 transactions and peak RSS.
# --profile (catchup): sample every CPU (perf, cpu-clock) while each applier
#          catches up, and print where the machine's time went by thread name,
#          idle included: the profile docs/benchmarks.md discusses.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

phases=()
seconds=60
rates="100 300"
relay_apply=""
relay_master=""
relay_source=""
rounds=1
ab_bin=target/release/gtid-relay
ab_apply=
profile=
while (($#)); do
    case $1 in
        catchup | steady | ab | modes | semisync) phases+=("$1") ;;
        --ab-bin) ab_bin=$2; shift ;;
        --ab-apply) ab_apply=$2; shift ;;
        --seconds) seconds=$2; shift ;;
        --rates) rates=$2; shift ;;
        --relay-apply) relay_apply=$2; shift ;;
        --relay-master) relay_master=$2; shift ;;
        --rounds) rounds=$2; shift ;;
        --profile) profile=1 ;;
        *) echo "usage: deploy/bench.sh [catchup] [steady] [ab] [modes] [semisync] [--ab-bin PATH] [--ab-apply TOML] [--seconds N] [--rates \"100 300\"] [--relay-apply TOML] [--relay-master TOML] [--rounds N] [--profile]" >&2; exit 2 ;;
    esac
    shift
done
((${#phases[@]})) || phases=(catchup steady)

# Override both when another bench may run on the machine (they would share instances).
export SANDBOX_NS=${SANDBOX_NS:-bench} SANDBOX_PORT_BASE=${SANDBOX_PORT_BASE:-4400}
sb=deploy/sandbox.sh
PW=relay-sandbox-pw
$sb install
command -v bc >/dev/null || { apt-get update -qq && apt-get install -y -qq bc >/dev/null; }
if [[ -n $profile ]] && ! command -v perf >/dev/null; then
    apt-get update -qq && apt-get install -y -qq linux-perf >/dev/null
fi
cargo build --release --quiet
ROOT=$($sb root)
work=$(mktemp -d /tmp/gtid-relay-bench.XXXXXX)
relay_pid=
ab_pid=
cleanup() {
    [[ -n $relay_pid ]] && kill "$relay_pid" 2>/dev/null && wait "$relay_pid" 2>/dev/null || true
    [[ -n $ab_pid ]] && kill "$ab_pid" 2>/dev/null && wait "$ab_pid" 2>/dev/null || true
    for n in 1 2 3 4; do $sb wipe-now "$n" >/dev/null 2>&1 || true; done
    rm -rf "$work"
}
trap cleanup EXIT

say() { printf '\n== %s\n' "$*"; }
sql() { $sb sql "$@"; }
port() { $sb port "$1"; }
fresh() { for n in "$@"; do $sb wipe-now "$n" >/dev/null 2>&1 || true; $sb start "$n" -- --performance-schema=ON >/dev/null; done; }
now() { date +%s.%N; }

sysbench() {
    local n=$1 db=$2
    shift 2
    chroot "$ROOT" sysbench oltp_write_only --db-driver=mysql --mysql-host=127.0.0.1 \
        --mysql-port="$(port "$n")" --mysql-user=relay --mysql-password=$PW --mysql-db="$db" \
        --tables=4 --table-size=10000 "$@"
}

# gtid_executed of m$1 contains the GTID set $2. Every wait is for a source that no
# longer changes, so its set is read once: polling costs the machine one mysql
# client run per poll, the same for every applier.
executed() { sql "$1" "SELECT @@GLOBAL.gtid_executed"; }
caught_up() { [[ $(sql "$1" "SELECT GTID_SUBSET('$2', @@GLOBAL.gtid_executed)") == 1 ]]; }
wait_caught_up() { # wait_caught_up TARGET SOURCE
    local deadline=$((SECONDS + 900)) set
    set=$(executed "$2")
    until caught_up "$1" "$set"; do
        ((SECONDS < deadline)) || { echo "timed out waiting for m$1 to catch up with m$2" >&2; exit 1; }
        sleep 0.05
    done
}

relay_config() { # relay_config FILE "SRC TGT" [...]; masters: $masters (default: those the pairs name)
    local file=$1
    shift
    {
        echo "[relay]"
        echo "report_host = \"127.0.0.1\""
        printf '\n[apply]\n%s\n' "$relay_apply"
        printf '\n[source]\n%s\n' "$relay_source"
        local listed
        listed=${masters:-$(printf '%s\n' "$@" | tr ' ' '\n' | sort -un)}
        for n in $listed; do
            printf '\n[[masters]]\nname = "m%s"\nhost = "127.0.0.1"\nport = %s\nuser = "relay"\npassword = "%s"\n%s\n' \
                "$n" "$(port "$n")" "$PW" "$relay_master"
        done
        for pair in "$@"; do
            printf '\n[[channels]]\nsource = "m%s"\ntarget = "m%s"\n' "${pair% *}" "${pair#* }"
        done
    } >"$file"
}

start_relay() {
    target/release/gtid-relay run --config "$1" >"$work/relay.log" 2>&1 &
    relay_pid=$!
}

stop_relay() {
    kill -TERM "$relay_pid"
    wait "$relay_pid" || true
    relay_pid=
}

# CPU seconds (user+system) and peak RSS (KiB) of a live process.
cpu_secs() { awk '{ printf "%.2f", ($14 + $15) / 100 }' "/proc/$1/stat"; }
peak_rss() { awk '/VmHWM/ { print $2 }' "/proc/$1/status"; }

# profile_start LABEL / profile_stop TITLE LABEL SERVER [RELAY_PID]: with --profile, sample
# all CPUs in between, then print the share of samples per thread name (swapper = idle)
# and the functions the applying server (and the relay) spent their samples in.
profile_pid=
profile_start() {
    [[ -n $profile ]] || return 0
    perf record -q -e cpu-clock -F 499 -a -o "$work/perf-$1.data" >/dev/null 2>&1 &
    profile_pid=$!
}
profile_stop() { # profile_stop TITLE LABEL SERVER [RELAY_PID]
    [[ -n $profile ]] || return 0
    kill -INT "$profile_pid"
    wait "$profile_pid" || true
    echo "profile, $1: share of all CPU samples by thread (swapper = idle)"
    perf report -i "$work/perf-$2.data" --no-children --sort comm --stdio -g none 2>/dev/null |
        awk '/^ +[0-9]/ && n++ < 8'
    echo "profile, $1: the applying server m$3 (share of its samples), by function"
    perf report -i "$work/perf-$2.data" --pid "$($sb pid "$3")" --percentage relative \
        --no-children --sort sym --stdio -g none 2>/dev/null | awk '/^ +[0-9]/ && n++ < 25'
    [[ -n ${4:-} ]] || return 0
    echo "profile, $1: the relay process (share of its samples), by function"
    perf report -i "$work/perf-$2.data" --pid "$4" --percentage relative \
        --no-children --sort sym --stdio -g none 2>/dev/null | awk '/^ +[0-9]/ && n++ < 40'
}

native_replica() { # native_replica REPLICA SOURCE [workers]
    sql "$1" "STOP REPLICA; RESET REPLICA ALL;
        CHANGE REPLICATION SOURCE TO SOURCE_HOST='127.0.0.1', SOURCE_PORT=$(port "$2"),
        SOURCE_USER='relay', SOURCE_PASSWORD='$PW', SOURCE_AUTO_POSITION=1, GET_SOURCE_PUBLIC_KEY=1
        ${3:+, SOURCE_CONNECT_RETRY=1}"
    [[ -n ${3:-} ]] && sql "$1" "SET GLOBAL replica_parallel_workers = $3"
    return 0
}

median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

catchup() {
    local round rates_native=() rates_native16=() rates_relay=() ratios_native=() ratios_native16=()
    for ((round = 1; round <= rounds; round++)); do
        catchup_round
    done
    ((rounds > 1)) || return 0
    say "catch-up: median of $rounds rounds"
    catchup_table "$(median "${rates_native[@]}")" "$(median "${ratios_native[@]}")" \
        "$(median "${rates_native16[@]}")" "$(median "${ratios_native16[@]}")" "$(median "${rates_relay[@]}")"
}

catchup_table() { # catchup_table NATIVE RATIO NATIVE16 RATIO16 RELAY
    printf '%-34s %10s %10s\n' applier "trx/s" "relay/it"
    printf '%-34s %10.0f %10.2f\n' "native replica (defaults)" "$1" "$2"
    printf '%-34s %10.0f %10.2f\n' "native replica (16 workers)" "$3" "$4"
    printf '%-34s %10.0f\n' "gtid-relay (defaults)" "$5"
}

# One catch-up measurement; appends its rates and ratios to catchup's arrays.
catchup_round() {
    say "catch-up (round $round of $rounds): fresh servers S=m1, native replicas m3 (defaults) and m4 (16 workers), relay target m2"
    fresh 1 2 3 4
    sql 1 "CREATE DATABASE sbtest"
    sysbench 1 sbtest prepare >/dev/null
    native_replica 3 1
    native_replica 4 1 16
    relay_config "$work/oneway.toml" "1 2"
    # Everyone copies the prepared tables first; then replication stops.
    sql 3 "START REPLICA"
    sql 4 "START REPLICA"
    start_relay "$work/oneway.toml"
    for n in 2 3 4; do wait_caught_up "$n" 1; done
    sql 3 "STOP REPLICA"
    sql 4 "STOP REPLICA"
    stop_relay
    local before
    before=$(executed 1)
    sysbench 1 sbtest --threads=4 --time=20 run >"$work/sysbench-backlog.txt"
    local backlog
    backlog=$(sql 1 "SELECT GTID_COUNT(GTID_SUBTRACT(@@GLOBAL.gtid_executed, '$before'))" 2>/dev/null ||
        true)
    if [[ -z $backlog || $backlog == NULL ]]; then
        backlog=$(grep -oP 'transactions:\s+\K[0-9]+' "$work/sysbench-backlog.txt")
    fi
    echo "backlog: $backlog transactions"

    local t0 t1 native16 native relay
    profile_start native
    t0=$(now); sql 3 "START REPLICA"; wait_caught_up 3 1; t1=$(now)
    profile_stop "native replica (defaults)" native 3
    native=$(echo "$backlog / ($t1 - $t0)" | bc -l)
    profile_start native16
    t0=$(now); sql 4 "START REPLICA"; wait_caught_up 4 1; t1=$(now)
    profile_stop "native replica (16 workers)" native16 4
    native16=$(echo "$backlog / ($t1 - $t0)" | bc -l)
    profile_start relay
    t0=$(now); start_relay "$work/oneway.toml"; local cpu0; cpu0=$(cpu_secs "$relay_pid")
    wait_caught_up 2 1; t1=$(now)
    profile_stop "gtid-relay" relay 2 "$relay_pid"
    relay=$(echo "$backlog / ($t1 - $t0)" | bc -l)
    local cpu rss
    cpu=$(echo "($(cpu_secs "$relay_pid") - $cpu0) * 1000 / $backlog" | bc -l)
    rss=$(peak_rss "$relay_pid")
    stop_relay
    for n in 2 3 4; do
        [[ $(sql "$n" "CHECKSUM TABLE sbtest.sbtest1, sbtest.sbtest2, sbtest.sbtest3, sbtest.sbtest4 EXTENDED") == \
            "$(sql 1 "CHECKSUM TABLE sbtest.sbtest1, sbtest.sbtest2, sbtest.sbtest3, sbtest.sbtest4 EXTENDED")" ]] ||
            { echo "checksums differ on m$n" >&2; exit 1; }
    done
    rates_native+=("$native") rates_native16+=("$native16") rates_relay+=("$relay")
    ratios_native+=("$(echo "$relay / $native" | bc -l)") ratios_native16+=("$(echo "$relay / $native16" | bc -l)")
    catchup_table "$native" "${ratios_native[-1]}" "$native16" "${ratios_native16[-1]}" "$relay"
    printf 'relay cost: %.2f CPU s per 1,000 transactions, peak RSS %d KiB\n' "$cpu" "$rss"
}

ab() {
    [[ -x $ab_bin ]] || { echo "ab: --ab-bin must name a relay binary" >&2; exit 2; }
    [[ -n ${ab_apply:-} || $ab_bin != target/release/gtid-relay ]] ||
        echo "ab: A and B are the same binary with the same settings" >&2
    say "A/B: S=m1; $ab_bin -> m2 and target/release/gtid-relay -> m3, at the same time"
    fresh 1 2 3
    sql 1 "CREATE DATABASE sbtest"
    sysbench 1 sbtest prepare >/dev/null
    masters="1 2 3" relay_apply=${ab_apply:-$relay_apply} relay_config "$work/a.toml" "1 2"
    masters="1 2 3" relay_config "$work/b.toml" "1 3"
    "$ab_bin" run --config "$work/a.toml" >"$work/a.log" 2>&1 &
    ab_pid=$!
    start_relay "$work/b.toml"
    wait_caught_up 2 1
    wait_caught_up 3 1
    kill -TERM "$ab_pid"; wait "$ab_pid" || true; ab_pid=
    stop_relay
    sysbench 1 sbtest --threads=4 --time=20 run >"$work/sysbench-ab.txt"
    local backlog
    backlog=$(grep -oP 'transactions:\s+\K[0-9]+' "$work/sysbench-ab.txt")
    echo "backlog: $backlog transactions"
    local t0 ta tb
    t0=$(now)
    "$ab_bin" run --config "$work/a.toml" >"$work/a.log" 2>&1 &
    ab_pid=$!
    start_relay "$work/b.toml"
    ta= tb=
    local set
    set=$(executed 1)
    until [[ -n $ta && -n $tb ]]; do
        [[ -z $ta ]] && caught_up 2 "$set" && ta=$(now)
        [[ -z $tb ]] && caught_up 3 "$set" && tb=$(now)
        ((SECONDS < 3600)) || { echo "ab: timed out" >&2; exit 1; }
        sleep 0.05
    done
    kill -TERM "$ab_pid"; wait "$ab_pid" || true; ab_pid=
    stop_relay
    local a b
    a=$(echo "$backlog / ($ta - $t0)" | bc -l)
    b=$(echo "$backlog / ($tb - $t0)" | bc -l)
    printf '%-34s %10s\n' relay "trx/s"
    local a_apply=${ab_apply:-$relay_apply}
    printf '%-34s %10.0f   %s\n' "A: $ab_bin" "$a" "${a_apply//$'\n'/, }"
    printf '%-34s %10.0f   %s\n' "B: this build" "$b" "${relay_apply//$'\n'/, }"
    printf 'B / A: %.2f\n' "$(echo "$b / $a" | bc -l)"
}

# Lag (ms) of every transaction from master $2 as committed on master $1, read
# from $1's binlogs: immediate_commit_timestamp - original_commit_timestamp.
lag_ms() {
    local target=$1 origin_uuid=$2 dir
    dir=$($sb datadir "$target")
    chroot "$ROOT" sh -c "mysqlbinlog ${dir#"$ROOT"}/binlog.0*" 2>/dev/null |
        awk -v u="$origin_uuid" '
            /original_committed_timestamp=/ {
                for (i = 1; i <= NF; i++) {
                    if ($i ~ /^original_committed_timestamp=/) { split($i, a, "="); o = a[2] }
                    if ($i ~ /^immediate_commit_timestamp=/) { split($i, b, "="); m = b[2] }
                }
                pending = 1; next
            }
            pending && /GTID_NEXT=/ {
                if (index($0, u)) printf "%.3f\n", (m - o) / 1000
                pending = 0
            }'
}

percentiles() { # stdin: numbers; prints p50 p90 p99 count
    sort -n | awk '{ v[NR] = $1 } END {
        if (NR == 0) { print "- - - 0"; exit }
        printf "%.1f %.1f %.1f %d\n", v[int(NR * 0.50) + (NR * 0.50 > int(NR * 0.50))], v[int(NR * 0.90) + (NR * 0.90 > int(NR * 0.90))], v[int(NR * 0.99) + (NR * 0.99 > int(NR * 0.99))], NR }'
}

steady_one() { # steady_one RATE native|relay
    local rate=$1 mode=$2
    fresh 1 2
    for n in 1 2; do sql "$n" "CREATE DATABASE sb$n"; done
    if [[ $mode == native ]]; then
        native_replica 1 2
        native_replica 2 1
        sql 1 "START REPLICA"
        sql 2 "START REPLICA"
    else
        relay_config "$work/mesh.toml" "1 2" "2 1"
        start_relay "$work/mesh.toml"
    fi
    for n in 1 2; do sysbench "$n" "sb$n" prepare >/dev/null; done
    wait_caught_up 1 2
    wait_caught_up 2 1
    local cpu0=0
    [[ $mode == relay ]] && cpu0=$(cpu_secs "$relay_pid")
    sysbench 1 sb1 --threads=4 --rate="$rate" --time="$seconds" run >"$work/sb1.txt" &
    local p1=$!
    sysbench 2 sb2 --threads=4 --rate="$rate" --time="$seconds" run >"$work/sb2.txt" &
    wait "$p1" $!
    wait_caught_up 1 2
    wait_caught_up 2 1
    local u1 u2
    u1=$(sql 1 "SELECT @@server_uuid")
    u2=$(sql 2 "SELECT @@server_uuid")
    local stats
    stats=$({ lag_ms 2 "$u1"; lag_ms 1 "$u2"; } | percentiles)
    local extra=""
    if [[ $mode == relay ]]; then
        local trx
        trx=$(grep -ohP 'transactions:\s+\K[0-9]+' "$work/sb1.txt" "$work/sb2.txt" | paste -sd+ | bc)
        extra=$(printf 'cpu %.2f s/1k trx, peak RSS %d KiB' \
            "$(echo "($(cpu_secs "$relay_pid") - $cpu0) * 1000 / $trx" | bc -l)" "$(peak_rss "$relay_pid")")
        stop_relay
    else
        sql 1 "STOP REPLICA"
        sql 2 "STOP REPLICA"
    fi
    read -r p50 p90 p99 count <<<"$stats"
    printf '%-8s %6s/s %-22s %8s %8s %8s %8s  %s\n' "$rate" "" "$mode" "$p50" "$p90" "$p99" "$count" "$extra"
    echo "$p99" >"$work/p99-$rate-$mode"
}

steady() {
    say "steady state: sysbench oltp_write_only at a fixed rate on both masters for ${seconds}s; lag in ms"
    printf '%-8s %8s %-22s %8s %8s %8s %8s\n' rate "" setup p50 p90 p99 trx
    for rate in $rates; do
        steady_one "$rate" native
        steady_one "$rate" relay
        printf '  relay p99 / native p99 at %s/s: %.2f\n' "$rate" \
            "$(echo "$(cat "$work/p99-$rate-relay") / $(cat "$work/p99-$rate-native")" | bc -l)"
    done
}

# Seconds the relay with config $1 takes to bring m$2 up to m1.
timed_relay() {
    local t0 t1
    t0=$(now)
    start_relay "$1"
    wait_caught_up "$2" 1
    t1=$(now)
    stop_relay
    echo "$t1 - $t0" | bc -l
}

modes() {
    say "apply settings: default vs [apply] '$relay_apply' on the same backlogs (S=m1, targets m2 and m3)"
    fresh 1 2 3
    sql 1 "CREATE DATABASE sbtest"
    sysbench 1 sbtest prepare >/dev/null
    local custom=$relay_apply
    relay_apply=""
    relay_config "$work/default.toml" "1 2"
    relay_apply=$custom
    relay_config "$work/custom.toml" "1 3"
    timed_relay "$work/default.toml" 2 >/dev/null
    timed_relay "$work/custom.toml" 3 >/dev/null
    local total_default=0 total_custom=0 total_backlog=0
    printf '%-6s %8s %14s %14s %8s\n' round backlog "default trx/s" "custom trx/s" ratio
    for round in 1 2; do
        local backlog d c
        sysbench 1 sbtest --threads=4 --time=15 run >"$work/sysbench-round.txt"
        backlog=$(grep -oP 'transactions:\s+\K[0-9]+' "$work/sysbench-round.txt")
        if ((round == 1)); then
            d=$(timed_relay "$work/default.toml" 2)
            c=$(timed_relay "$work/custom.toml" 3)
        else
            c=$(timed_relay "$work/custom.toml" 3)
            d=$(timed_relay "$work/default.toml" 2)
        fi
        printf '%-6s %8d %14.0f %14.0f %8.2f\n' "$round" "$backlog" "$(echo "$backlog / $d" | bc -l)" \
            "$(echo "$backlog / $c" | bc -l)" "$(echo "$d / $c" | bc -l)"
        total_default=$(echo "$total_default + $d" | bc -l)
        total_custom=$(echo "$total_custom + $c" | bc -l)
        total_backlog=$((total_backlog + backlog))
    done
    printf '%-6s %8d %14.0f %14.0f %8.2f\n' all "$total_backlog" "$(echo "$total_backlog / $total_default" | bc -l)" \
        "$(echo "$total_backlog / $total_custom" | bc -l)" "$(echo "$total_default / $total_custom" | bc -l)"
    local sums
    sums=$(sql 1 "CHECKSUM TABLE sbtest.sbtest1, sbtest.sbtest2, sbtest.sbtest3, sbtest.sbtest4 EXTENDED")
    for n in 2 3; do
        [[ $(sql "$n" "CHECKSUM TABLE sbtest.sbtest1, sbtest.sbtest2, sbtest.sbtest3, sbtest.sbtest4 EXTENDED") == "$sums" ]] ||
            { echo "checksums differ on m$n" >&2; exit 1; }
    done
}

semi_status() { sql 1 "SHOW GLOBAL STATUS LIKE 'Rpl_semi_sync_source_$1'" | cut -f2; }

semisync_case() { # semisync_case LABEL: sysbench oltp_insert on m1 at 1 and 4 threads
    local threads yes0 no0
    for threads in 1 4; do
        yes0=$(semi_status yes_tx) no0=$(semi_status no_tx)
        chroot "$ROOT" sysbench oltp_insert --db-driver=mysql --mysql-host=127.0.0.1 \
            --mysql-port="$(port 1)" --mysql-user=relay --mysql-password=$PW --mysql-db=sbtest \
            --tables=4 --table-size=10000 --threads="$threads" --time="$seconds" --percentile=95 run \
            >"$work/semisync.txt"
        printf '%-28s %7d %9.0f %10.2f %10.2f %8d %6d\n' "$1" "$threads" \
            "$(grep -oP 'transactions:\s+[0-9]+\s+\(\K[0-9.]+' "$work/semisync.txt")" \
            "$(grep -oP 'avg:\s+\K[0-9.]+' "$work/semisync.txt")" \
            "$(grep -oP '95th percentile:\s+\K[0-9.]+' "$work/semisync.txt")" \
            $(($(semi_status yes_tx) - yes0)) $(($(semi_status no_tx) - no0))
    done
}

semisync() {
    say "semi-sync commit latency on m1 (sysbench oltp_insert, ${seconds} s per case)"
    fresh 1 2 3
    sql 1 "INSTALL PLUGIN rpl_semi_sync_source SONAME 'semisync_source.so';
        SET GLOBAL rpl_semi_sync_source_timeout = 10000; CREATE DATABASE sbtest"
    sql 2 "INSTALL PLUGIN rpl_semi_sync_replica SONAME 'semisync_replica.so';
        SET GLOBAL rpl_semi_sync_replica_enabled = ON"
    sysbench 1 sbtest prepare >/dev/null
    native_replica 2 1
    local wait_clients='until [[ $(semi_status clients) == 1 ]]; do sleep 0.1; done'
    printf '%-28s %7s %9s %10s %10s %8s %6s\n' case threads trx/s "avg ms" "p95 ms" yes_tx no_tx
    semisync_case "asynchronous"
    sql 2 "START REPLICA"
    eval "$wait_clients"
    sql 1 "SET GLOBAL rpl_semi_sync_source_enabled = ON"
    semisync_case "native semi-sync replica"
    sql 2 "STOP REPLICA"
    for ack in received applied; do
        relay_source="ack = \"$ack\""
        relay_config "$work/semisync.toml" "1 3"
        start_relay "$work/semisync.toml"
        eval "$wait_clients"
        wait_caught_up 3 1
        semisync_case "relay, ack = $ack"
        stop_relay
    done
    relay_source=""
}

for phase in "${phases[@]}"; do "$phase"; done
