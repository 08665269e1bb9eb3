//! Client connections to masters: options, TLS modes with MySQL's `--ssl-mode`
//! meanings, timeouts, and error classification shared by the source and apply sides.

use std::time::Duration;

use mysql_async::{ClientIdentity, Conn, DriverError, Opts, OptsBuilder, SslOpts};

use crate::config::{Master, SslMode};

/// MySQL client error numbers the relay reports for its own connection failures.
pub const CR_CONN_HOST_ERROR: u32 = 2003;
pub const CR_SSL_CONNECTION_ERROR: u32 = 2026;
pub const CR_SERVER_LOST: u32 = 2013;

#[derive(Debug, thiserror::Error)]
pub enum ConnError {
    #[error("cannot connect to {master} ({addr}) within {timeout:?}")]
    Timeout {
        master: String,
        addr: String,
        timeout: Duration,
    },
    #[error("cannot connect to {master} ({addr}): {message}")]
    Failed {
        master: String,
        addr: String,
        errno: u32,
        message: String,
    },
}

impl ConnError {
    pub fn errno(&self) -> u32 {
        match self {
            ConnError::Timeout { .. } => CR_CONN_HOST_ERROR,
            ConnError::Failed { errno, .. } => *errno,
        }
    }
}

/// The MySQL error number of a driver error: the server's code, or the client
/// code closest to what the `mysql` client would report.
pub fn errno_of(e: &mysql_async::Error) -> u32 {
    match e {
        mysql_async::Error::Server(s) => u32::from(s.code),
        mysql_async::Error::Io(_) => CR_SERVER_LOST,
        mysql_async::Error::Driver(DriverError::NoClientSslFlagFromServer) => {
            CR_SSL_CONNECTION_ERROR
        }
        _ => CR_SERVER_LOST,
    }
}

/// Errors after which the same connection attempt may succeed later (the server
/// restarts, the network heals) rather than errors in what was sent.
pub fn is_transient(e: &mysql_async::Error) -> bool {
    match e {
        mysql_async::Error::Io(_) => true,
        mysql_async::Error::Driver(DriverError::ConnectionClosed) => true,
        mysql_async::Error::Driver(_) => false,
        // 1053 shutdown in progress, 1152/1159/1161 aborted/timeouts, 1927 connection killed,
        // 2006/2013 gone away / lost, 3169 session killed, 4031 disconnected by server.
        mysql_async::Error::Server(s) => {
            matches!(
                s.code,
                1053 | 1152 | 1159 | 1161 | 1927 | 2006 | 2013 | 3169 | 4031
            )
        }
        mysql_async::Error::Other(_) | mysql_async::Error::Url(_) => false,
    }
}

fn tls_opts(master: &Master) -> Option<SslOpts> {
    let tls = &master.tls;
    let mut opts = match tls.ssl_mode {
        SslMode::Disabled => return None,
        // Encryption without verification, like the mysql client's REQUIRED/PREFERRED.
        SslMode::Preferred | SslMode::Required => SslOpts::default()
            .with_danger_accept_invalid_certs(true)
            .with_danger_skip_domain_validation(true),
        SslMode::VerifyCa => SslOpts::default().with_danger_skip_domain_validation(true),
        SslMode::VerifyIdentity => SslOpts::default(),
    };
    if let Some(ca) = &tls.ca {
        opts = opts
            .with_root_certs(vec![ca.clone().into()])
            .with_disable_built_in_roots(true);
    }
    if let (Some(cert), Some(key)) = (&tls.cert, &tls.key) {
        opts = opts.with_client_identity(Some(ClientIdentity::new(
            cert.clone().into(),
            key.clone().into(),
        )));
    }
    Some(opts)
}

fn opts(master: &Master, tls: Option<SslOpts>) -> Opts {
    OptsBuilder::default()
        .ip_or_hostname(master.host.clone())
        .tcp_port(master.port)
        .user(Some(master.user.clone()))
        .pass(Some(master.password.expose().to_string()))
        .prefer_socket(false)
        .stmt_cache_size(0)
        .ssl_opts(tls)
        .into()
}

/// Connect to `master` honouring its ssl_mode, within `timeout`.
pub async fn connect(master: &Master, timeout: Duration) -> Result<Conn, ConnError> {
    let addr = format!("{}:{}", master.host, master.port);
    let failed = |e: mysql_async::Error| ConnError::Failed {
        master: master.name.clone(),
        addr: addr.clone(),
        // A socket error while connecting is "can't connect", not "lost".
        errno: match e {
            mysql_async::Error::Io(_) => CR_CONN_HOST_ERROR,
            _ => errno_of(&e),
        },
        message: describe(&e, master.tls.ssl_mode),
    };
    match attempt(master, &addr, tls_opts(master), timeout).await? {
        Ok(conn) => Ok(conn),
        // PREFERRED falls back to plaintext only when the server offers no TLS at all.
        Err(mysql_async::Error::Driver(DriverError::NoClientSslFlagFromServer))
            if master.tls.ssl_mode == SslMode::Preferred =>
        {
            attempt(master, &addr, None, timeout).await?.map_err(failed)
        }
        Err(e) => Err(failed(e)),
    }
}

async fn attempt(
    master: &Master,
    addr: &str,
    tls: Option<SslOpts>,
    timeout: Duration,
) -> Result<mysql_async::Result<Conn>, ConnError> {
    tokio::time::timeout(timeout, Conn::new(opts(master, tls)))
        .await
        .map_err(|_| ConnError::Timeout {
            master: master.name.clone(),
            addr: addr.to_string(),
            timeout,
        })
}

/// A driver error in the words a DBA expects; passwords never reach it.
fn describe(e: &mysql_async::Error, mode: SslMode) -> String {
    match e {
        mysql_async::Error::Server(s) => format!("error {} ({}): {}", s.code, s.state, s.message),
        mysql_async::Error::Driver(DriverError::NoClientSslFlagFromServer) => format!(
            "ssl_mode={} but the server does not support TLS (start it with TLS certificates, or lower ssl_mode)",
            mode.as_str()
        ),
        mysql_async::Error::Io(io) => {
            let text = io.to_string();
            if text.contains("certificate") || text.contains("Certificate") || text.contains("tls")
            {
                format!(
                    "TLS handshake failed under ssl_mode={}: {text}",
                    mode.as_str()
                )
            } else {
                text
            }
        }
        other => other.to_string(),
    }
}

/// Quote an identifier with backticks.
pub fn quote_ident(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

/// Quote a string literal by doubling quotes only, which means the same with and
/// without NO_BACKSLASH_ESCAPES. Used for values without backslashes (GTIDs, time
/// zone names, UUIDs).
pub fn quote_str(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}
