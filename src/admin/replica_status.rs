//! `SHOW REPLICA STATUS` / `SHOW SLAVE STATUS`: MySQL 9.7's columns, in its order, filled
//! from the channel snapshots.

use crate::status::{ChannelStatus, IoRunning, LastError};

use super::clock::replica_status_timestamp;
use super::sql::Naming;
use super::wire::{Col, ColKind, ResultSet};

/// (9.7 name, `SHOW SLAVE STATUS` name, kind) in MySQL 9.7's order (checked against
/// `SHOW REPLICA STATUS` on 9.7.4 and 8.0's legacy names).
const COLUMNS: &[(&str, &str, ColKind)] = &[
    ("Replica_IO_State", "Slave_IO_State", ColKind::Text),
    ("Source_Host", "Master_Host", ColKind::Text),
    ("Source_User", "Master_User", ColKind::Text),
    ("Source_Port", "Master_Port", ColKind::Int),
    ("Connect_Retry", "Connect_Retry", ColKind::Int),
    ("Source_Log_File", "Master_Log_File", ColKind::Text),
    ("Read_Source_Log_Pos", "Read_Master_Log_Pos", ColKind::Int),
    ("Relay_Log_File", "Relay_Log_File", ColKind::Text),
    ("Relay_Log_Pos", "Relay_Log_Pos", ColKind::Int),
    (
        "Relay_Source_Log_File",
        "Relay_Master_Log_File",
        ColKind::Text,
    ),
    ("Replica_IO_Running", "Slave_IO_Running", ColKind::Text),
    ("Replica_SQL_Running", "Slave_SQL_Running", ColKind::Text),
    ("Replicate_Do_DB", "Replicate_Do_DB", ColKind::Text),
    ("Replicate_Ignore_DB", "Replicate_Ignore_DB", ColKind::Text),
    ("Replicate_Do_Table", "Replicate_Do_Table", ColKind::Text),
    (
        "Replicate_Ignore_Table",
        "Replicate_Ignore_Table",
        ColKind::Text,
    ),
    (
        "Replicate_Wild_Do_Table",
        "Replicate_Wild_Do_Table",
        ColKind::Text,
    ),
    (
        "Replicate_Wild_Ignore_Table",
        "Replicate_Wild_Ignore_Table",
        ColKind::Text,
    ),
    ("Last_Errno", "Last_Errno", ColKind::Int),
    ("Last_Error", "Last_Error", ColKind::Text),
    ("Skip_Counter", "Skip_Counter", ColKind::Int),
    ("Exec_Source_Log_Pos", "Exec_Master_Log_Pos", ColKind::Int),
    ("Relay_Log_Space", "Relay_Log_Space", ColKind::Int),
    ("Until_Condition", "Until_Condition", ColKind::Text),
    ("Until_Log_File", "Until_Log_File", ColKind::Text),
    ("Until_Log_Pos", "Until_Log_Pos", ColKind::Int),
    ("Source_SSL_Allowed", "Master_SSL_Allowed", ColKind::Text),
    ("Source_SSL_CA_File", "Master_SSL_CA_File", ColKind::Text),
    ("Source_SSL_CA_Path", "Master_SSL_CA_Path", ColKind::Text),
    ("Source_SSL_Cert", "Master_SSL_Cert", ColKind::Text),
    ("Source_SSL_Cipher", "Master_SSL_Cipher", ColKind::Text),
    ("Source_SSL_Key", "Master_SSL_Key", ColKind::Text),
    (
        "Seconds_Behind_Source",
        "Seconds_Behind_Master",
        ColKind::Int,
    ),
    (
        "Source_SSL_Verify_Server_Cert",
        "Master_SSL_Verify_Server_Cert",
        ColKind::Text,
    ),
    ("Last_IO_Errno", "Last_IO_Errno", ColKind::Int),
    ("Last_IO_Error", "Last_IO_Error", ColKind::Text),
    ("Last_SQL_Errno", "Last_SQL_Errno", ColKind::Int),
    ("Last_SQL_Error", "Last_SQL_Error", ColKind::Text),
    (
        "Replicate_Ignore_Server_Ids",
        "Replicate_Ignore_Server_Ids",
        ColKind::Text,
    ),
    ("Source_Server_Id", "Master_Server_Id", ColKind::Int),
    ("Source_UUID", "Master_UUID", ColKind::Text),
    ("Source_Info_File", "Master_Info_File", ColKind::Text),
    ("SQL_Delay", "SQL_Delay", ColKind::Int),
    ("SQL_Remaining_Delay", "SQL_Remaining_Delay", ColKind::Int),
    (
        "Replica_SQL_Running_State",
        "Slave_SQL_Running_State",
        ColKind::Text,
    ),
    ("Source_Retry_Count", "Master_Retry_Count", ColKind::Int),
    ("Source_Bind", "Master_Bind", ColKind::Text),
    (
        "Last_IO_Error_Timestamp",
        "Last_IO_Error_Timestamp",
        ColKind::Text,
    ),
    (
        "Last_SQL_Error_Timestamp",
        "Last_SQL_Error_Timestamp",
        ColKind::Text,
    ),
    ("Source_SSL_Crl", "Master_SSL_Crl", ColKind::Text),
    ("Source_SSL_Crlpath", "Master_SSL_Crlpath", ColKind::Text),
    ("Retrieved_Gtid_Set", "Retrieved_Gtid_Set", ColKind::Text),
    ("Executed_Gtid_Set", "Executed_Gtid_Set", ColKind::Text),
    ("Auto_Position", "Auto_Position", ColKind::Int),
    (
        "Replicate_Rewrite_DB",
        "Replicate_Rewrite_DB",
        ColKind::Text,
    ),
    ("Channel_Name", "Channel_Name", ColKind::Text),
    ("Source_TLS_Version", "Master_TLS_Version", ColKind::Text),
    (
        "Source_public_key_path",
        "Master_public_key_path",
        ColKind::Text,
    ),
    (
        "Get_Source_public_key",
        "Get_master_public_key",
        ColKind::Int,
    ),
    ("Network_Namespace", "Network_Namespace", ColKind::Text),
];

pub fn result_set<'a>(
    naming: Naming,
    channels: impl Iterator<Item = &'a ChannelStatus>,
) -> ResultSet {
    let columns = COLUMNS
        .iter()
        .map(|&(replica, slave, kind)| Col {
            name: match naming {
                Naming::Replica => replica,
                Naming::Slave => slave,
            }
            .to_string(),
            kind,
        })
        .collect();
    ResultSet {
        columns,
        rows: channels.map(row).collect(),
    }
}

fn yes_no(b: bool) -> &'static str {
    if b { "Yes" } else { "No" }
}

fn row(c: &ChannelStatus) -> Vec<Option<String>> {
    let s = |v: &str| Some(v.to_string());
    let n = |v: u64| Some(v.to_string());
    let errno = |e: &Option<LastError>| n(e.as_ref().map_or(0, |e| u64::from(e.errno)));
    let error = |e: &Option<LastError>| s(e.as_ref().map_or("", |e| e.message.as_str()));
    let error_at = |e: &Option<LastError>| {
        Some(
            e.as_ref()
                .map_or(String::new(), |e| replica_status_timestamp(e.at)),
        )
    };
    // MySQL: NULL unless the applier runs and the receiver is connected.
    let behind = if c.sql_running && c.io_running == IoRunning::Yes {
        c.seconds_behind_source.map(|v| v.to_string())
    } else {
        None
    };
    let ssl_allowed = if c.tls.allowed.is_empty() {
        "No"
    } else {
        c.tls.allowed
    };
    vec![
        s(&c.io_state),
        s(&c.source_host),
        s(&c.source_user),
        n(u64::from(c.source_port)),
        n(u64::from(c.connect_retry_secs)),
        s(&c.source_log_file),
        n(c.read_source_log_pos),
        s(""), // Relay_Log_File: the relay keeps no relay log
        n(0),
        s(&c.source_log_file),
        s(c.io_running.as_str()),
        s(yes_no(c.sql_running)),
        s(""),
        s(""),
        s(""),
        s(""),
        s(""),
        s(""),
        errno(&c.last_sql_error), // Last_Errno is an alias of Last_SQL_Errno
        error(&c.last_sql_error),
        n(0),
        // Events are applied in the order received; no separate executed position is kept.
        n(c.read_source_log_pos),
        n(0),
        s("None"),
        s(""),
        n(0),
        s(ssl_allowed),
        s(&c.tls.ca_file),
        s(""),
        s(&c.tls.cert),
        s(""),
        s(&c.tls.key),
        behind,
        s(yes_no(c.tls.verify_server_cert)),
        errno(&c.last_io_error),
        error(&c.last_io_error),
        errno(&c.last_sql_error),
        error(&c.last_sql_error),
        s(""),
        n(u64::from(c.source_server_id.unwrap_or(0))),
        s(c.source_uuid.as_deref().unwrap_or("")),
        s(""),
        n(0),
        None, // SQL_Remaining_Delay: no delay configured
        s(&c.sql_state),
        n(c.retry_count),
        s(""),
        error_at(&c.last_io_error),
        error_at(&c.last_sql_error),
        s(""),
        s(""),
        s(&c.retrieved_gtid_set),
        s(&c.executed_gtid_set),
        n(1),
        s(""),
        s(&c.name),
        s(""),
        s(""),
        n(0),
        s(""),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_row_matches_the_column_list() {
        assert_eq!(COLUMNS.len(), 60);
        let rs = result_set(Naming::Slave, std::iter::empty());
        assert_eq!(rs.columns[32].name, "Seconds_Behind_Master");
    }
}
