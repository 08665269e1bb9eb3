//! The relay's own identity: the server_id and UUIDs it presents to masters
//! (per channel) and to clients of its admin endpoint.

/// FNV-1a: stable across Rust versions and platforms, unlike DefaultHasher.
pub fn seed(parts: &[&str]) -> u64 {
    parts.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, part| {
        part.bytes().chain(std::iter::once(0)).fold(h, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
        })
    })
}

/// A server_id from a seed, in a range clear of small hand-assigned ids.
pub fn server_id(seed: u64) -> u32 {
    0x4000_0000 | u32::try_from(seed & 0x3FFF_FFFF).unwrap_or(0)
}

/// A version-5-shaped UUID (RFC 9562 layout) from a seed.
pub fn uuid(seed: u64) -> String {
    let a = seed.to_be_bytes();
    let b = seed
        .rotate_left(29)
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .to_be_bytes();
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&a);
    bytes[8..].copy_from_slice(&b);
    bytes[6] = 0x50 | (bytes[6] & 0x0F);
    bytes[8] = 0x80 | (bytes[8] & 0x3F);
    uuid::Uuid::from_bytes(bytes).hyphenated().to_string()
}

pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "localhost".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identities_are_stable_and_distinct() {
        let a = seed(&["host", "m1->m2"]);
        let b = seed(&["host", "m2->m1"]);
        assert_ne!(a, b);
        assert_eq!(a, seed(&["host", "m1->m2"]));
        assert_ne!(seed(&["ab", "c"]), seed(&["a", "bc"]));
        let u = uuid(a);
        assert_eq!(u.len(), 36);
        assert_eq!(&u[14..15], "5");
        assert!(server_id(a) >= 0x4000_0000);
    }
}
