//! Admin accounts and the two scramble checks MySQL clients use.
//!
//! Passwords are kept only as the double hashes MySQL itself stores: SHA256(SHA256(pw))
//! (what `caching_sha2_password` keeps in its fast-authentication cache) and
//! SHA1(SHA1(pw)) (`mysql_native_password`'s `authentication_string`). Both let the
//! server check a scramble without ever holding the password.

use std::fmt;
use std::str::FromStr;

use sha1::Sha1;
use sha2::{Digest, Sha256};

/// One account allowed to log in to the admin endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub password_hash: PasswordHash,
}

/// The stored form of a password. Text form (for the configuration file):
/// `sha256x2=<64 hex>,sha1x2=<40 hex>`; make one with `PasswordHash::from_password`.
#[derive(Clone, PartialEq, Eq)]
pub struct PasswordHash {
    sha256x2: [u8; 32],
    sha1x2: [u8; 20],
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid password hash: expected sha256x2=<64 hex digits>,sha1x2=<40 hex digits>")]
pub struct ParsePasswordHashError;

impl PasswordHash {
    pub fn from_password(password: &str) -> PasswordHash {
        let pw = password.as_bytes();
        PasswordHash {
            sha256x2: Sha256::digest(Sha256::digest(pw)).into(),
            sha1x2: Sha1::digest(Sha1::digest(pw)).into(),
        }
    }

    /// Whether this is the hash of the empty password (clients then send no scramble).
    pub(crate) fn is_empty_password(&self) -> bool {
        *self == PasswordHash::from_password("")
    }

    /// `caching_sha2_password` fast authentication: the client sent
    /// SHA256(pw) XOR SHA256(SHA256(SHA256(pw)) || nonce).
    pub(crate) fn check_caching_sha2_scramble(&self, nonce: &[u8], scramble: &[u8]) -> bool {
        let Ok(scramble) = <[u8; 32]>::try_from(scramble) else {
            return false;
        };
        let mask: [u8; 32] = Sha256::new()
            .chain_update(self.sha256x2)
            .chain_update(nonce)
            .finalize()
            .into();
        let stage1 = xor(scramble, mask);
        ct_eq(&Sha256::digest(stage1), &self.sha256x2)
    }

    /// `caching_sha2_password` full authentication: the cleartext password, sent over TLS.
    pub(crate) fn check_cleartext(&self, password: &[u8]) -> bool {
        ct_eq(&Sha256::digest(Sha256::digest(password)), &self.sha256x2)
    }

    /// `mysql_native_password`: the client sent SHA1(pw) XOR SHA1(nonce || SHA1(SHA1(pw))).
    pub(crate) fn check_native_scramble(&self, nonce: &[u8], scramble: &[u8]) -> bool {
        let Ok(scramble) = <[u8; 20]>::try_from(scramble) else {
            return false;
        };
        let mask: [u8; 20] = Sha1::new()
            .chain_update(nonce)
            .chain_update(self.sha1x2)
            .finalize()
            .into();
        let stage1 = xor(scramble, mask);
        ct_eq(&Sha1::digest(stage1), &self.sha1x2)
    }
}

fn xor<const N: usize>(a: [u8; N], b: [u8; N]) -> [u8; N] {
    let mut out = a;
    for (o, m) in out.iter_mut().zip(b) {
        *o ^= m;
    }
    out
}

/// Comparison whose time does not depend on where the inputs differ.
fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl fmt::Debug for PasswordHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A stolen double hash plus one sniffed login is enough to log in: keep it out of logs.
        f.write_str("PasswordHash(<redacted>)")
    }
}

impl fmt::Display for PasswordHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "sha256x2={},sha1x2={}",
            hex(&self.sha256x2),
            hex(&self.sha1x2)
        )
    }
}

impl FromStr for PasswordHash {
    type Err = ParsePasswordHashError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (a, b) = s.trim().split_once(',').ok_or(ParsePasswordHashError)?;
        let a = a.strip_prefix("sha256x2=").ok_or(ParsePasswordHashError)?;
        let b = b.strip_prefix("sha1x2=").ok_or(ParsePasswordHashError)?;
        Ok(PasswordHash {
            sha256x2: unhex(a)?,
            sha1x2: unhex(b)?,
        })
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex<const N: usize>(s: &str) -> Result<[u8; N], ParsePasswordHashError> {
    let s = s.as_bytes();
    if s.len() != 2 * N {
        return Err(ParsePasswordHashError);
    }
    let mut out = [0u8; N];
    for (o, pair) in out.iter_mut().zip(s.chunks_exact(2)) {
        let digits = std::str::from_utf8(pair).map_err(|_| ParsePasswordHashError)?;
        *o = u8::from_str_radix(digits, 16).map_err(|_| ParsePasswordHashError)?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn native_scramble(pw: &str, nonce: &[u8]) -> Vec<u8> {
        let s1 = Sha1::digest(pw.as_bytes());
        let s2 = Sha1::digest(s1);
        let m = Sha1::new().chain_update(nonce).chain_update(s2).finalize();
        s1.iter().zip(m).map(|(a, b)| a ^ b).collect()
    }

    fn sha2_scramble(pw: &str, nonce: &[u8]) -> Vec<u8> {
        let s1 = Sha256::digest(pw.as_bytes());
        let s2 = Sha256::digest(s1);
        let m = Sha256::new()
            .chain_update(s2)
            .chain_update(nonce)
            .finalize();
        s1.iter().zip(m).map(|(a, b)| a ^ b).collect()
    }

    #[test]
    fn text_form_round_trips_and_debug_hides_it() {
        let h = PasswordHash::from_password("s3cret");
        let text = h.to_string();
        assert!(text.starts_with("sha256x2=") && text.len() == 9 + 64 + 8 + 40);
        assert_eq!(text.parse::<PasswordHash>(), Ok(h.clone()));
        assert!(!format!("{h:?}").contains(&text[9..20]));
        assert!("sha256x2=zz,sha1x2=00".parse::<PasswordHash>().is_err());
    }

    #[test]
    fn scrambles_check_out_only_for_the_right_password() {
        let h = PasswordHash::from_password("s3cret");
        let nonce = b"abcdefghijklmnopqrst";
        assert!(h.check_caching_sha2_scramble(nonce, &sha2_scramble("s3cret", nonce)));
        assert!(!h.check_caching_sha2_scramble(nonce, &sha2_scramble("other", nonce)));
        assert!(h.check_native_scramble(nonce, &native_scramble("s3cret", nonce)));
        assert!(!h.check_native_scramble(nonce, &native_scramble("other", nonce)));
        assert!(h.check_cleartext(b"s3cret") && !h.check_cleartext(b"s3cre"));
        assert!(!h.check_caching_sha2_scramble(nonce, b"short"));
    }
}
