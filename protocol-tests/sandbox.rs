//! The sandbox itself: what every other test relies on.

use crate::support::Sandbox;

#[test]
fn instances_are_durable_gtid_masters_with_distinct_identities() {
    let sb = Sandbox::start(2, &[]);
    let row = sb.sql(
        1,
        "SELECT @@gtid_mode, @@enforce_gtid_consistency, @@binlog_format, @@sync_binlog, \
         @@innodb_flush_log_at_trx_commit, @@auto_increment_increment, @@auto_increment_offset",
    );
    assert_eq!(row.trim(), "ON\tON\tROW\t1\t1\t7\t1");
    assert_eq!(sb.value(2, "SELECT @@auto_increment_offset"), "2");
    assert_ne!(sb.server_uuid(1), sb.server_uuid(2));
    assert_ne!(
        sb.value(1, "SELECT @@server_id"),
        sb.value(2, "SELECT @@server_id")
    );
    // The relay account exists and was not binlogged.
    assert_eq!(sb.gtid_executed(1), "");
    assert_eq!(
        sb.value(1, "SELECT COUNT(*) FROM mysql.user WHERE user = 'relay'"),
        "2"
    );
}

#[test]
fn kill_and_restart_keep_committed_data() {
    let sb = Sandbox::start(1, &[]);
    sb.sql(
        1,
        "CREATE DATABASE d; CREATE TABLE d.t (id INT PRIMARY KEY); INSERT INTO d.t VALUES (1)",
    );
    let before = sb.gtid_executed(1);
    sb.kill(1);
    assert!(
        sb.try_sql(1, "SELECT 1").is_err(),
        "instance still answers after kill"
    );
    sb.restart(1);
    assert_eq!(sb.gtid_executed(1), before);
    assert_eq!(sb.value(1, "SELECT COUNT(*) FROM d.t"), "1");
}
