//! Client connections to masters: options, TLS modes with MySQL's `--ssl-mode`
//! meanings, timeouts, and error classification shared by the source and apply sides.

use std::time::Duration;

use mysql_async::{ClientIdentity, Conn, DriverError, IoError, Opts, OptsBuilder, SslOpts};

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

/// A driver error's text: the server's message alone for a server error
/// (its number is reported beside it).
pub fn message_of(e: &mysql_async::Error) -> String {
    match e {
        mysql_async::Error::Server(s) => s.message.clone(),
        other => other.to_string(),
    }
}

/// Errors after which the same connection attempt may succeed later (the server
/// restarts, the network heals) rather than errors in what was sent.
pub fn is_transient(e: &mysql_async::Error) -> bool {
    match e {
        mysql_async::Error::Io(_) => true,
        mysql_async::Error::Driver(DriverError::ConnectionClosed) => true,
        mysql_async::Error::Driver(_) => false,
        mysql_async::Error::Server(s) => is_transient_server_code(s.code),
        mysql_async::Error::Other(_) | mysql_async::Error::Url(_) => false,
    }
}

/// 1053 shutdown in progress, 1152/1159/1161 aborted/timeouts, 1927 connection killed,
/// 2006/2013 gone away / lost, 3169 session killed, 4031 disconnected by server.
pub(crate) fn is_transient_server_code(code: u16) -> bool {
    matches!(
        code,
        1053 | 1152 | 1159 | 1161 | 1927 | 2006 | 2013 | 3169 | 4031
    )
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
    let driver_failed = |e: mysql_async::Error| {
        let errno = match &e {
            // What the mysql client reports for a failed TLS setup or handshake.
            mysql_async::Error::Io(IoError::Tls(_)) => CR_SSL_CONNECTION_ERROR,
            mysql_async::Error::Io(IoError::Io(io)) if rustls_error(io).is_some() => {
                CR_SSL_CONNECTION_ERROR
            }
            // A socket error while connecting is "can't connect", not "lost".
            mysql_async::Error::Io(_) => CR_CONN_HOST_ERROR,
            _ => errno_of(&e),
        };
        failed(master, errno, describe(&e, master))
    };
    check_tls_files(master)?;
    match attempt(master, tls_opts(master), timeout).await? {
        Ok(conn) => Ok(conn),
        // PREFERRED falls back to plaintext only when the server offers no TLS at all.
        Err(mysql_async::Error::Driver(DriverError::NoClientSslFlagFromServer))
            if master.tls.ssl_mode == SslMode::Preferred =>
        {
            attempt(master, None, timeout).await?.map_err(driver_failed)
        }
        // mysql_async implements VERIFY_CA by ignoring a name mismatch whose
        // message says "NotValidForName"; rustls 0.23 words it differently, so
        // a certificate that chains to the CA but does not name the host fails.
        // The mismatch error lists the names the certificate does hold (its
        // chain already verified): connect again verifying against one of them,
        // which checks the chain in full on the real connection.
        Err(e) if master.tls.ssl_mode == SslMode::VerifyCa => match certificate_name(&e) {
            Some(name) => {
                let tls = tls_opts(master).map(|o| o.with_danger_tls_hostname_override(Some(name)));
                attempt(master, tls, timeout).await?.map_err(driver_failed)
            }
            None => Err(driver_failed(e)),
        },
        Err(e) => Err(driver_failed(e)),
    }
}

/// A name the server's certificate holds, from a name-mismatch error.
fn certificate_name(e: &mysql_async::Error) -> Option<String> {
    let mysql_async::Error::Io(IoError::Io(io)) = e else {
        return None;
    };
    match rustls_error(io)? {
        rustls::Error::InvalidCertificate(rustls::CertificateError::NotValidForNameContext {
            presented,
            ..
        }) => presented.iter().find_map(|n| presented_name(n)),
        _ => None,
    }
}

/// rustls-webpki lists names as `DnsName("host")` or `IpAddress(127.0.0.1)`;
/// wildcard names cannot be connected to and are skipped.
fn presented_name(s: &str) -> Option<String> {
    let name = s
        .strip_prefix("DnsName(\"")
        .and_then(|r| r.strip_suffix("\")"))
        .filter(|n| !n.contains('*'))
        .or_else(|| s.strip_prefix("IpAddress(")?.strip_suffix(')'))?;
    rustls::pki_types::ServerName::try_from(name).ok()?;
    Some(name.to_string())
}

async fn attempt(
    master: &Master,
    tls: Option<SslOpts>,
    timeout: Duration,
) -> Result<mysql_async::Result<Conn>, ConnError> {
    tokio::time::timeout(timeout, Conn::new(opts(master, tls)))
        .await
        .map_err(|_| timed_out(master, timeout))
}

pub(crate) fn address(master: &Master) -> String {
    format!("{}:{}", master.host, master.port)
}

pub(crate) fn failed(master: &Master, errno: u32, message: String) -> ConnError {
    ConnError::Failed {
        master: master.name.clone(),
        addr: address(master),
        errno,
        message,
    }
}

pub(crate) fn timed_out(master: &Master, timeout: Duration) -> ConnError {
    ConnError::Timeout {
        master: master.name.clone(),
        addr: address(master),
        timeout,
    }
}

/// A missing file named with its role: the TLS libraries' errors say neither.
pub(crate) fn check_tls_files(master: &Master) -> Result<(), ConnError> {
    for (key, path) in [
        ("ca", &master.tls.ca),
        ("cert", &master.tls.cert),
        ("key", &master.tls.key),
    ] {
        if let Some(path) = path
            && let Err(e) = std::fs::File::open(path)
        {
            return Err(failed(
                master,
                CR_SSL_CONNECTION_ERROR,
                format!("cannot read tls.{key} {}: {e}", path.display()),
            ));
        }
    }
    Ok(())
}

/// The server's error, as the mysql client shows it.
pub(crate) fn server_error(code: u16, state: &str, message: &str) -> String {
    format!("error {code} ({state}): {message}")
}

pub(crate) fn no_tls(master: &Master) -> String {
    format!(
        "ssl_mode={} but the server does not support TLS (start it with TLS certificates, or lower ssl_mode)",
        master.tls.ssl_mode.as_str()
    )
}

pub(crate) fn tls_setup_failed(master: &Master, e: &dyn std::fmt::Display) -> String {
    format!(
        "TLS setup failed under ssl_mode={}: {e}",
        master.tls.ssl_mode.as_str()
    )
}

/// A failed TLS handshake explained, or `None` when `io` is not a TLS error.
pub(crate) fn tls_handshake_failed(master: &Master, io: &std::io::Error) -> Option<String> {
    let tls = rustls_error(io)?;
    Some(format!(
        "TLS handshake failed under ssl_mode={}: {} ({tls})",
        master.tls.ssl_mode.as_str(),
        explain_tls(tls, master)
    ))
}

/// A driver error in the words a DBA expects; passwords never reach it (the
/// driver's errors carry no credentials, and the options are not a URL).
fn describe(e: &mysql_async::Error, master: &Master) -> String {
    match e {
        mysql_async::Error::Server(s) => server_error(s.code, &s.state, &s.message),
        mysql_async::Error::Driver(DriverError::NoClientSslFlagFromServer) => no_tls(master),
        mysql_async::Error::Io(IoError::Io(io)) => {
            tls_handshake_failed(master, io).unwrap_or_else(|| io.to_string())
        }
        mysql_async::Error::Io(IoError::Tls(tls)) => tls_setup_failed(master, tls),
        other => other.to_string(),
    }
}

/// tokio-rustls reports a failed handshake as an io::Error wrapping rustls's error.
fn rustls_error(io: &std::io::Error) -> Option<&rustls::Error> {
    io.get_ref()?.downcast_ref::<rustls::Error>()
}

fn explain_tls(e: &rustls::Error, master: &Master) -> String {
    use rustls::{CertificateError as C, Error as E};
    let ca = master.tls.ca.as_ref().map_or_else(
        || "the built-in roots".to_string(),
        |p| p.display().to_string(),
    );
    match e {
        E::InvalidCertificate(C::UnknownIssuer) => {
            format!("the server's certificate is not signed by the CA in tls.ca ({ca})")
        }
        E::InvalidCertificate(C::NotValidForName | C::NotValidForNameContext { .. }) => format!(
            "the server's certificate does not name the host '{}' (VERIFY_IDENTITY checks the host against the certificate's subjectAltName: connect by a name or address it lists, or use VERIFY_CA)",
            master.host
        ),
        E::InvalidCertificate(C::Expired | C::ExpiredContext { .. }) => {
            "the server's certificate has expired".to_string()
        }
        E::InvalidCertificate(C::NotValidYet | C::NotValidYetContext { .. }) => {
            "the server's certificate is not valid yet (check the clocks)".to_string()
        }
        E::InvalidCertificate(other) => format!("the server's certificate was rejected: {other:?}"),
        E::AlertReceived(alert) => format!(
            "the server aborted the handshake ({alert:?}); if it requires a client certificate, set tls.cert and tls.key"
        ),
        _ => "the TLS handshake failed".to_string(),
    }
}

/// Quote an identifier with backticks.
pub fn quote_ident(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

/// Bytes as upper-case hex digits, for `X'…'` literals.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02X}");
    }
    s
}

/// Quote a string literal by doubling quotes only, which means the same with and
/// without NO_BACKSLASH_ESCAPES. Used for values without backslashes (GTIDs, time
/// zone names, UUIDs).
pub fn quote_str(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_presented_by_webpki_are_parsed() {
        assert_eq!(
            presented_name("DnsName(\"db1.example\")").as_deref(),
            Some("db1.example")
        );
        assert_eq!(
            presented_name("IpAddress(127.0.0.1)").as_deref(),
            Some("127.0.0.1")
        );
        assert_eq!(presented_name("DnsName(\"*.example\")"), None);
        assert_eq!(presented_name("DirectoryName"), None);
    }
}
