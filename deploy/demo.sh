#!/usr/bin/env bash
# The two-master demo: provision two MySQL 9.7 masters, start gtid-relay
# between them, write on both at once, and show that they converge.
#   deploy/demo.sh          run the demo, then stop everything it started
#   deploy/demo.sh --keep   leave the masters and the relay running
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
keep=0
[[ ${1:-} == --keep ]] && keep=1

export SANDBOX_NS=demo SANDBOX_PORT_BASE=${SANDBOX_PORT_BASE:-4300}
sb=deploy/sandbox.sh
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

say "Provisioning MySQL 9.7 (cached after the first run)"
$sb install
say "Building gtid-relay"
cargo build --release --quiet
for n in 1 2; do $sb wipe "$n"; $sb start "$n"; done

work=$(mktemp -d /tmp/gtid-relay-demo.XXXXXX)
relay_pid=
cleanup() {
    if ((keep)); then
        echo "left running: relay pid $relay_pid (log $work/relay.log), masters on ports $($sb port 1) and $($sb port 2)"
        return
    fi
    [[ -n $relay_pid ]] && kill -TERM "$relay_pid" 2>/dev/null && wait "$relay_pid" 2>/dev/null || true
    for n in 1 2; do $sb wipe "$n" >/dev/null 2>&1 || true; done
    rm -rf "$work"
}
trap cleanup EXIT

url_pw=relay-sandbox-pw
admin_port=$(($($sb port 2) + 1))
admin_pw=demo-admin-pw
admin_hash=$(echo "$admin_pw" | target/release/gtid-relay hash-password)
cat >"$work/relay.toml" <<TOML
[relay]
report_host = "127.0.0.1"

[admin]
listen = "127.0.0.1:$admin_port"
users = [{ name = "admin", password_hash = "$admin_hash" }]

[source]
heartbeat_secs = 1

[[masters]]
name = "m1"
host = "127.0.0.1"
port = $($sb port 1)
user = "relay"
password = "$url_pw"

[[masters]]
name = "m2"
host = "127.0.0.1"
port = $($sb port 2)
user = "relay"
password = "$url_pw"
TOML

say "Starting gtid-relay (channels m1->m2 and m2->m1)"
target/release/gtid-relay run --config "$work/relay.toml" >"$work/relay.log" 2>&1 &
relay_pid=$!
sleep 1
kill -0 "$relay_pid" || { cat "$work/relay.log"; exit 1; }

say "Creating stock_user on m1 (the seed's schema); the relay carries the DDL to m2"
$sb sql 1 "CREATE DATABASE stock_user;
  CREATE TABLE stock_user.stock (id BIGINT AUTO_INCREMENT PRIMARY KEY, sku VARCHAR(32) NOT NULL,
    qty INT NOT NULL, origin VARCHAR(8) NOT NULL, updated DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6))"

say "Writing on both masters at once (auto_increment_increment=7, offsets 1 and 2)"
write() {
    local n=$1 i
    for ((i = 0; i < 20; i++)); do
        $sb sql "$n" "INSERT INTO stock_user.stock (sku, qty, origin)
            SELECT CONCAT('sku-', $n, '-', seq), seq, 'm$n' FROM (WITH RECURSIVE s(seq) AS
            (SELECT 1 UNION ALL SELECT seq + 1 FROM s WHERE seq < 50) SELECT seq FROM s) AS g;
            UPDATE stock_user.stock SET qty = qty + 1 WHERE origin = 'm$n' ORDER BY id LIMIT 10;" >/dev/null
    done
}
write 1 & w1=$!
write 2 & w2=$!
wait $w1 $w2

say "Waiting for convergence"
for ((i = 0; i < 120; i++)); do
    g1=$($sb sql 1 "SELECT @@GLOBAL.gtid_executed")
    g2=$($sb sql 2 "SELECT @@GLOBAL.gtid_executed")
    [[ $g1 == "$g2" ]] && break
    sleep 0.5
done
echo "m1 gtid_executed: $g1"
echo "m2 gtid_executed: $g2"
[[ $g1 == "$g2" ]] || { echo "NOT converged"; exit 1; }

say "Rows and checksums"
for n in 1 2; do
    echo "m$n: $($sb sql "$n" "SELECT CONCAT(COUNT(*), ' rows (', SUM(origin='m1'), ' from m1, ', SUM(origin='m2'), ' from m2)') FROM stock_user.stock")" \
        "| $($sb sql "$n" "CHECKSUM TABLE stock_user.stock EXTENDED")"
done
c1=$($sb sql 1 "CHECKSUM TABLE stock_user.stock EXTENDED")
c2=$($sb sql 2 "CHECKSUM TABLE stock_user.stock EXTENDED")
[[ $c1 == "$c2" ]] || { echo "checksums differ"; exit 1; }

say "m2's binlog holds m1's transactions under m1's own UUID"
u1=$($sb sql 1 "SELECT @@server_uuid")
$sb sql 2 "SHOW BINLOG EVENTS" | grep -m 3 "GTID_NEXT= '$u1" || true

say "SHOW REPLICA STATUS, asked of the relay with the stock mysql 9.7 client (port $admin_port)"
chroot "$($sb root)" mysql --no-defaults -h127.0.0.1 -P"$admin_port" -uadmin -p"$admin_pw" -E \
    -e "SHOW REPLICA STATUS" 2>/dev/null |
    awk -v keep='^(Replica_IO_State|Source_Host|Source_Port|Replica_IO_Running|Replica_SQL_Running|Seconds_Behind_Source|Last_IO_Error|Last_SQL_Error|Source_UUID|Retrieved_Gtid_Set|Executed_Gtid_Set|Auto_Position|Channel_Name)$' '
        /^\*/ { print; next }
        /^ *[A-Za-z_]+: / { split($0, kv, ":"); name = kv[1]; gsub(/ /, "", name); show = name ~ keep }
        show'

say "m1 lists the relay among its replicas (SHOW REPLICAS on m1)"
$sb sql 1 "SHOW REPLICAS"

say "Converged: same GTID set and the same data on both masters"
