//! The connection phase, written here rather than taken from opensrv-mysql (see
//! docs/admin-endpoint.md): greeting with a fresh nonce, optional TLS upgrade,
//! `require_secure_transport`, and `caching_sha2_password` / `mysql_native_password`
//! authentication against the configured hashes.

use std::net::SocketAddr;

use mysql_common::constants::CapabilityFlags;
use mysql_common::io::ParseBuf;
use mysql_common::packets::HandshakeResponse;
use rand::Rng;
use tracing::{debug, info};

use super::Shared;
use super::auth::PasswordHash;
use super::wire::{Io, MAX_PACKET, Packets, SqlError, WireError, ok_packet, status_flags};

const CACHING_SHA2: &str = "caching_sha2_password";
const NATIVE: &str = "mysql_native_password";
/// caching_sha2_password's one-byte messages inside AuthMoreData (0x01) packets.
const FAST_AUTH_SUCCESS: u8 = 0x03;
const PERFORM_FULL_AUTHENTICATION: u8 = 0x04;
/// utf8mb4_0900_ai_ci, MySQL 9.7's default collation.
const COLLATION: u8 = 255;

/// Who is logged in on a connection, and what was negotiated.
#[derive(Debug, Clone)]
pub struct Session {
    pub connection_id: u32,
    pub user: String,
    pub host: String,
    pub db: Option<String>,
    pub caps: CapabilityFlags,
    pub tls: Option<TlsInfo>,
}

/// `Ssl_version` / `Ssl_cipher` in MySQL's spelling ("TLSv1.3", "TLS_AES_256_GCM_SHA384").
#[derive(Debug, Clone)]
pub struct TlsInfo {
    pub version: String,
    pub cipher: String,
}

#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    #[error(transparent)]
    Wire(#[from] WireError),
    #[error("TLS handshake: {0}")]
    Tls(std::io::Error),
    #[error("protocol violation: {0}")]
    Protocol(&'static str),
    /// The client was sent this error and the connection ends.
    #[error("refused: {}", .0.message)]
    Refused(SqlError),
}

fn server_caps(tls: bool) -> CapabilityFlags {
    let caps = CapabilityFlags::CLIENT_LONG_PASSWORD
        | CapabilityFlags::CLIENT_FOUND_ROWS
        | CapabilityFlags::CLIENT_LONG_FLAG
        | CapabilityFlags::CLIENT_CONNECT_WITH_DB
        | CapabilityFlags::CLIENT_PROTOCOL_41
        | CapabilityFlags::CLIENT_TRANSACTIONS
        | CapabilityFlags::CLIENT_SECURE_CONNECTION
        | CapabilityFlags::CLIENT_PLUGIN_AUTH
        | CapabilityFlags::CLIENT_CONNECT_ATTRS
        | CapabilityFlags::CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA
        | CapabilityFlags::CLIENT_DEPRECATE_EOF;
    if tls {
        caps | CapabilityFlags::CLIENT_SSL
    } else {
        caps
    }
}

/// A per-connection nonce: 20 printable bytes (the greeting NUL-terminates it).
fn nonce() -> [u8; 20] {
    let mut rng = rand::rng();
    std::array::from_fn(|_| rng.random_range(0x21u8..0x7f))
}

fn greeting(shared: &Shared, connection_id: u32, nonce: &[u8; 20]) -> Vec<u8> {
    let caps = server_caps(shared.tls.is_some()).bits().to_le_bytes();
    let mut p = vec![10];
    p.extend_from_slice(shared.settings.version.as_bytes());
    p.push(0);
    p.extend_from_slice(&connection_id.to_le_bytes());
    p.extend_from_slice(&nonce[..8]);
    p.push(0);
    p.extend_from_slice(&caps[..2]);
    p.push(COLLATION);
    p.extend_from_slice(&status_flags().bits().to_le_bytes());
    p.extend_from_slice(&caps[2..]);
    p.push(21); // length of the auth data, with its NUL
    p.extend_from_slice(&[0; 10]);
    p.extend_from_slice(&nonce[8..]);
    p.push(0);
    p.extend_from_slice(CACHING_SHA2.as_bytes());
    p.push(0);
    p
}

async fn refuse(packets: &mut Packets, err: SqlError) -> HandshakeError {
    packets.write(&err.packet());
    // The connection ends either way; a failed write adds nothing.
    let _ = packets.flush().await;
    HandshakeError::Refused(err)
}

fn access_denied(user: &str, host: &str, with_password: bool) -> SqlError {
    let yes_no = if with_password { "YES" } else { "NO" };
    SqlError::new(
        1045,
        "28000",
        format!("Access denied for user '{user}'@'{host}' (using password: {yes_no})"),
    )
}

pub async fn handshake(
    stream: Box<dyn Io>,
    peer: SocketAddr,
    connection_id: u32,
    shared: &Shared,
) -> Result<(Packets, Session), HandshakeError> {
    let mut packets = Packets::new(stream, MAX_PACKET);
    let nonce = nonce();
    packets.write(&greeting(shared, connection_id, &nonce));
    packets.flush().await?;

    let mut response = packets.read().await?;
    let mut tls_info = None;
    let client_caps = |p: &[u8]| {
        p.get(..4).map(|b| {
            CapabilityFlags::from_bits_truncate(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        })
    };
    // An SSLRequest is the first 32 bytes of a handshake response, with CLIENT_SSL set.
    if response.len() == 32
        && client_caps(&response).is_some_and(|c| c.contains(CapabilityFlags::CLIENT_SSL))
    {
        let acceptor = shared
            .tls
            .clone()
            .ok_or(HandshakeError::Protocol("SSL requested but not offered"))?;
        let (stream, framing) = packets.into_parts();
        let tls = acceptor.accept(stream).await.map_err(HandshakeError::Tls)?;
        let conn = tls.get_ref().1;
        tls_info = Some(TlsInfo {
            version: match conn.protocol_version() {
                Some(rustls::ProtocolVersion::TLSv1_3) => "TLSv1.3".to_string(),
                Some(rustls::ProtocolVersion::TLSv1_2) => "TLSv1.2".to_string(),
                other => format!("{other:?}"),
            },
            cipher: conn.negotiated_cipher_suite().map_or(String::new(), |s| {
                // rustls says TLS13_AES_256_GCM_SHA384, MySQL TLS_AES_256_GCM_SHA384.
                format!("{:?}", s.suite()).replacen("TLS13_", "TLS_", 1)
            }),
        });
        packets = Packets::from_parts(Box::new(tls), framing);
        response = packets.read().await?;
    }

    let secure = tls_info.is_some();
    let host = peer.ip().to_string();
    if shared.settings.require_secure_transport && !secure {
        let err = SqlError::new(
            3159,
            "HY000",
            "Connections using insecure transport are prohibited while \
             --require_secure_transport=ON.",
        );
        return Err(refuse(&mut packets, err).await);
    }

    let hs: HandshakeResponse<'_> = ParseBuf(&response)
        .parse(())
        .map_err(|_| HandshakeError::Protocol("malformed handshake response"))?;
    let caps = hs.capabilities();
    if !caps.contains(CapabilityFlags::CLIENT_PROTOCOL_41) {
        return Err(HandshakeError::Protocol(
            "client does not speak protocol 4.1",
        ));
    }
    let user = String::from_utf8_lossy(hs.user()).into_owned();
    let db = hs
        .db_name()
        .filter(|d| !d.is_empty())
        .map(|d| String::from_utf8_lossy(d).into_owned());
    let plugin = hs
        .auth_plugin()
        .map(|p| String::from_utf8_lossy(p.as_bytes()).into_owned())
        .unwrap_or_else(|| CACHING_SHA2.to_string());
    let mut scramble = hs.scramble_buf().to_vec();
    let hash = shared
        .settings
        .users
        .iter()
        .find(|u| u.name == user)
        .map(|u| u.password_hash.clone());

    let ok = match plugin.as_str() {
        NATIVE => check_native(hash.as_ref(), &nonce, &scramble),
        CACHING_SHA2 => {
            caching_sha2(&mut packets, hash.as_ref(), &nonce, &scramble, secure).await?
        }
        other => {
            debug!(plugin = other, "switching client to caching_sha2_password");
            let mut p = vec![0xfe];
            p.extend_from_slice(CACHING_SHA2.as_bytes());
            p.push(0);
            p.extend_from_slice(&nonce);
            p.push(0);
            packets.write(&p);
            packets.flush().await?;
            scramble = packets.read().await?;
            caching_sha2(&mut packets, hash.as_ref(), &nonce, &scramble, secure).await?
        }
    };
    if !ok {
        info!(%user, %host, "admin login refused: wrong user or password");
        let err = access_denied(&user, &host, !scramble.is_empty());
        return Err(refuse(&mut packets, err).await);
    }
    packets.write(&ok_packet(0));
    packets.flush().await?;
    info!(%user, %host, secure, connection_id, "admin login");
    Ok((
        packets,
        Session {
            connection_id,
            user,
            host,
            db,
            caps: caps & server_caps(secure),
            tls: tls_info,
        },
    ))
}

fn check_native(hash: Option<&PasswordHash>, nonce: &[u8], scramble: &[u8]) -> bool {
    match hash {
        Some(h) if scramble.is_empty() => h.is_empty_password(),
        Some(h) => h.check_native_scramble(nonce, scramble),
        None => false,
    }
}

/// caching_sha2_password. The configuration holds SHA256(SHA256(pw)), exactly what
/// MySQL's fast-auth cache holds, so the scramble can always be checked ("cache hit").
/// A scramble that does not match gets MySQL's second chance only over TLS, where the
/// client sends the password itself; over plaintext that would need RSA, which the
/// endpoint does not offer, so the answer there is 1045 at once.
async fn caching_sha2(
    packets: &mut Packets,
    hash: Option<&PasswordHash>,
    nonce: &[u8],
    scramble: &[u8],
    secure: bool,
) -> Result<bool, HandshakeError> {
    if scramble.is_empty() {
        return Ok(hash.is_some_and(PasswordHash::is_empty_password));
    }
    if hash.is_some_and(|h| h.check_caching_sha2_scramble(nonce, scramble)) {
        packets.write(&[0x01, FAST_AUTH_SUCCESS]);
        return Ok(true);
    }
    if !secure {
        return Ok(false);
    }
    packets.write(&[0x01, PERFORM_FULL_AUTHENTICATION]);
    packets.flush().await?;
    let password = packets.read().await?;
    let password = password.strip_suffix(&[0]).unwrap_or(&password);
    Ok(hash.is_some_and(|h| h.check_cleartext(password)))
}
