//! System and status variables: what `SELECT @@x`, `SHOW VARIABLES` and `SHOW STATUS`
//! answer. The values describe the admin endpoint itself, with MySQL 9.7's defaults where
//! a client only needs a plausible session (character sets, timeouts, isolation).

use std::sync::atomic::Ordering;

use super::Shared;
use super::handshake::Session;
use super::wire::MAX_PACKET;

/// All system variables, sorted by name (SHOW VARIABLES order). Global and session
/// values are the same: `SET SESSION` is accepted and has no effect.
pub fn system(shared: &Shared) -> Vec<(&'static str, String)> {
    let s = &shared.settings;
    let on_off = |b: bool| if b { "ON" } else { "OFF" }.to_string();
    let mut v: Vec<(&'static str, String)> = vec![
        ("auto_increment_increment", "1".into()),
        ("auto_increment_offset", "1".into()),
        ("autocommit", "1".into()),
        ("character_set_client", "utf8mb4".into()),
        ("character_set_connection", "utf8mb4".into()),
        ("character_set_database", "utf8mb4".into()),
        ("character_set_filesystem", "binary".into()),
        ("character_set_results", "utf8mb4".into()),
        ("character_set_server", "utf8mb4".into()),
        ("character_set_system", "utf8mb3".into()),
        ("collation_connection", "utf8mb4_0900_ai_ci".into()),
        ("collation_database", "utf8mb4_0900_ai_ci".into()),
        ("collation_server", "utf8mb4_0900_ai_ci".into()),
        ("enforce_gtid_consistency", "ON".into()),
        ("gtid_mode", "ON".into()),
        (
            "have_ssl",
            if shared.tls.is_some() {
                "YES"
            } else {
                "DISABLED"
            }
            .into(),
        ),
        ("hostname", s.hostname.clone()),
        ("init_connect", String::new()),
        ("interactive_timeout", "28800".into()),
        ("license", "Apache-2.0".into()),
        ("lower_case_table_names", "0".into()),
        ("max_allowed_packet", MAX_PACKET.to_string()),
        ("max_connections", s.max_connections.to_string()),
        ("net_buffer_length", "16384".into()),
        ("net_read_timeout", "30".into()),
        ("net_write_timeout", "60".into()),
        ("performance_schema", "ON".into()),
        ("port", shared.port.to_string()),
        ("protocol_version", "10".into()),
        // The endpoint accepts no writes.
        ("read_only", "ON".into()),
        (
            "require_secure_transport",
            on_off(s.require_secure_transport),
        ),
        ("server_id", s.server_id.to_string()),
        ("server_uuid", s.server_uuid.clone()),
        ("socket", String::new()),
        (
            "sql_mode",
            "ONLY_FULL_GROUP_BY,STRICT_TRANS_TABLES,NO_ZERO_IN_DATE,NO_ZERO_DATE,\
             ERROR_FOR_DIVISION_BY_ZERO,NO_ENGINE_SUBSTITUTION"
                .into(),
        ),
        ("super_read_only", "ON".into()),
        ("system_time_zone", "UTC".into()),
        ("time_zone", "SYSTEM".into()),
        ("tls_version", "TLSv1.2,TLSv1.3".into()),
        ("transaction_isolation", "REPEATABLE-READ".into()),
        ("transaction_read_only", "OFF".into()),
        ("version", s.version.clone()),
        ("version_comment", "gtid-relay admin endpoint".into()),
        ("version_compile_machine", std::env::consts::ARCH.into()),
        ("version_compile_os", "Linux".into()),
        ("wait_timeout", "28800".into()),
    ];
    v.sort_by_key(|(name, _)| *name);
    v
}

/// `@@name` as `SELECT` returns it (`None` if there is no such variable): booleans as
/// 0/1, like MySQL, and `@@socket` NULL — there is no Unix socket, and a NULL keeps
/// connectors that prefer sockets (mysql_async) on TCP.
pub fn select_value(shared: &Shared, name: &str) -> Option<Option<String>> {
    let value = system(shared).into_iter().find(|(n, _)| *n == name)?.1;
    Some(match value.as_str() {
        "ON" if is_boolean(name) => Some("1".into()),
        "OFF" if is_boolean(name) => Some("0".into()),
        "" if name == "socket" => None,
        _ => Some(value),
    })
}

fn is_boolean(name: &str) -> bool {
    matches!(
        name,
        "read_only" | "super_read_only" | "require_secure_transport" | "transaction_read_only"
    )
}

/// SHOW STATUS counters (and this session's TLS), sorted by name.
pub fn status(shared: &Shared, session: &Session) -> Vec<(&'static str, String)> {
    let st = &shared.stats;
    let uptime = shared.started.elapsed().as_secs().to_string();
    let get = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed).to_string();
    vec![
        ("Aborted_connects", get(&st.aborted_connects)),
        ("Connections", get(&st.connections)),
        ("Max_used_connections", get(&st.max_used_connections)),
        ("Queries", get(&st.questions)),
        ("Questions", get(&st.questions)),
        (
            "Ssl_cipher",
            session
                .tls
                .as_ref()
                .map_or(String::new(), |t| t.cipher.clone()),
        ),
        (
            "Ssl_version",
            session
                .tls
                .as_ref()
                .map_or(String::new(), |t| t.version.clone()),
        ),
        ("Threads_connected", get(&st.threads_connected)),
        ("Threads_running", "1".into()),
        ("Uptime", uptime.clone()),
        ("Uptime_since_flush_status", uptime),
    ]
}

/// SQL `LIKE` with `%`, `_` and `\` escapes, case-insensitive as variable names are.
pub fn like(pattern: &str, name: &str) -> bool {
    fn go(p: &[char], s: &[char]) -> bool {
        match p.split_first() {
            None => s.is_empty(),
            Some(('%', rest)) => (0..=s.len()).any(|i| go(rest, &s[i..])),
            Some(('_', rest)) => !s.is_empty() && go(rest, &s[1..]),
            Some(('\\', rest)) if !rest.is_empty() => {
                !s.is_empty() && s[0] == rest[0] && go(&rest[1..], &s[1..])
            }
            Some((c, rest)) => !s.is_empty() && s[0] == *c && go(rest, &s[1..]),
        }
    }
    let p: Vec<char> = pattern.to_lowercase().chars().collect();
    let s: Vec<char> = name.to_lowercase().chars().collect();
    // Patterns come from clients: bound the backtracking.
    p.iter().filter(|&&c| c == '%').count() <= 8 && go(&p, &s)
}

#[cfg(test)]
mod tests {
    use super::like;

    #[test]
    fn like_patterns() {
        assert!(like("version%", "version_comment"));
        assert!(like("VERSION", "version"));
        assert!(like("server\\_id", "server_id"));
        assert!(!like("server\\_id", "serverXid"));
        assert!(like("%_timeout", "wait_timeout"));
        assert!(!like("port", "protocol_version"));
    }
}
