//! The authentication exchange after the handshake response, as the mysql
//! client runs it: caching_sha2_password (fast path, or full authentication
//! with the password in cleartext over TLS and RSA-encrypted otherwise),
//! mysql_native_password, and one switch to another plugin.
//! The password never goes into an error or a log line.

use mysql_common::io::ParseBuf;
use mysql_common::packets::{AuthMoreData, AuthPlugin, AuthSwitchRequest};
use mysql_common::scramble::{scramble_native, scramble_sha256};

use super::{Client, ClientError, server_error};

/// caching_sha2_password's messages inside AuthMoreData packets.
const FAST_AUTH_SUCCESS: u8 = 0x03;
const PERFORM_FULL_AUTHENTICATION: u8 = 0x04;
/// Asks the server for its RSA public key.
const REQUEST_PUBLIC_KEY: u8 = 0x02;

/// The auth data `plugin` sends for `password` and the server's `nonce`; none
/// for an empty password, as the mysql client does.
pub(super) fn scramble(plugin: &AuthPlugin<'_>, password: &str, nonce: &[u8]) -> Option<Vec<u8>> {
    if password.is_empty() {
        return None;
    }
    match plugin {
        AuthPlugin::CachingSha2Password => {
            scramble_sha256(nonce, password.as_bytes()).map(|s| s.to_vec())
        }
        AuthPlugin::MysqlNativePassword => {
            scramble_native(nonce, password.as_bytes()).map(|s| s.to_vec())
        }
        _ => None,
    }
}

/// Read the server's answers until it accepts (OK) or refuses (ERR).
pub(super) async fn complete(
    client: &mut Client,
    mut plugin: AuthPlugin<'static>,
    mut nonce: Vec<u8>,
    password: &str,
    secure: bool,
) -> Result<(), ClientError> {
    let mut switched = false;
    loop {
        let packet = client.packets.read().await?;
        match packet.first() {
            Some(0x00) => return Ok(()),
            Some(0xff) => return Err(server_error(&packet, client.caps)),
            Some(0xfe) if !switched => {
                switched = true;
                let request: AuthSwitchRequest<'_> =
                    ParseBuf(&packet)
                        .parse(())
                        .map_err(|_| ClientError::Protocol {
                            what: "auth switch request",
                        })?;
                plugin = match request.auth_plugin() {
                    p @ (AuthPlugin::CachingSha2Password | AuthPlugin::MysqlNativePassword) => {
                        p.into_owned()
                    }
                    other => {
                        return Err(ClientError::Auth(format!(
                            "the server asks for authentication plugin {}, which the relay does not speak \
                             (use caching_sha2_password or mysql_native_password for its account)",
                            String::from_utf8_lossy(other.as_bytes())
                        )));
                    }
                };
                nonce = request.plugin_data().to_vec();
                let data = scramble(&plugin, password, &nonce).unwrap_or_default();
                client.packets.write(&data);
                client.packets.flush().await?;
            }
            Some(0x01) if plugin == AuthPlugin::CachingSha2Password => {
                let more: AuthMoreData<'_> = ParseBuf(&packet)
                    .parse(())
                    .map_err(|_| ClientError::Protocol { what: "auth data" })?;
                match more.data() {
                    // The OK packet follows.
                    [FAST_AUTH_SUCCESS] => {}
                    [PERFORM_FULL_AUTHENTICATION] => {
                        full_authentication(client, &nonce, password, secure).await?;
                    }
                    _ => {
                        return Err(ClientError::Protocol {
                            what: "caching_sha2_password message",
                        });
                    }
                }
            }
            _ => {
                return Err(ClientError::Protocol {
                    what: "packet during authentication",
                });
            }
        }
    }
}

/// The server's cache does not hold the account: send the password itself,
/// NUL-terminated, over TLS as is, else XORed with the nonce and RSA-encrypted
/// with the server's public key.
async fn full_authentication(
    client: &mut Client,
    nonce: &[u8],
    password: &str,
    secure: bool,
) -> Result<(), ClientError> {
    let mut clear = password.as_bytes().to_vec();
    clear.push(0);
    if secure {
        client.packets.write(&clear);
        return Ok(client.packets.flush().await?);
    }
    client.packets.write(&[REQUEST_PUBLIC_KEY]);
    client.packets.flush().await?;
    let packet = client.packets.read().await?;
    if packet.first() == Some(&0xff) {
        return Err(server_error(&packet, client.caps));
    }
    let key: AuthMoreData<'_> = ParseBuf(&packet)
        .parse(())
        .map_err(|_| ClientError::Protocol { what: "public key" })?;
    if !nonce.is_empty() {
        for (i, byte) in clear.iter_mut().enumerate() {
            *byte ^= nonce[i % nonce.len()];
        }
    }
    let encrypted = encrypt(&clear, key.data())?;
    client.packets.write(&encrypted);
    Ok(client.packets.flush().await?)
}

/// mysql_common's RSA panics on a malformed key or an over-long message
/// instead of returning an error; the key comes from the network, so the
/// panic is contained here and reported as an authentication error.
fn encrypt(message: &[u8], pem: &[u8]) -> Result<Vec<u8>, ClientError> {
    std::panic::catch_unwind(|| mysql_common::crypto::encrypt(message, pem)).map_err(|_| {
        ClientError::Auth(
            "the server's RSA public key is unusable for caching_sha2_password; \
             connect over TLS instead"
                .into(),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_plugin_gets_its_own_scramble_and_empty_passwords_none() {
        let nonce = b"abcdefghijklmnopqrst";
        let sha2 = scramble(&AuthPlugin::CachingSha2Password, "pw", nonce).unwrap();
        let native = scramble(&AuthPlugin::MysqlNativePassword, "pw", nonce).unwrap();
        assert_eq!(sha2.len(), 32);
        assert_eq!(native.len(), 20);
        // What the admin endpoint's server side accepts for the same password.
        let hash = crate::admin::PasswordHash::from_password("pw");
        assert!(hash.check_caching_sha2_scramble(nonce, &sha2));
        assert!(hash.check_native_scramble(nonce, &native));
        assert_eq!(scramble(&AuthPlugin::CachingSha2Password, "", nonce), None);
        assert_eq!(scramble(&AuthPlugin::MysqlClearPassword, "pw", nonce), None);
    }

    #[test]
    fn a_malformed_public_key_is_an_error_not_a_panic() {
        assert!(matches!(
            encrypt(b"pw\0", b"not a key"),
            Err(ClientError::Auth(_))
        ));
    }
}
