//! GTIDs being applied to one target, shared by every channel into it.
//!
//! In a mesh the same transaction reaches a target by several channels. MySQL
//! would make the second session's `SET GTID_NEXT` wait, with no timeout, until
//! the first commits or rolls back. Channels of one relay take turns here
//! instead, so that such a wait happens in the relay, where it is bounded by
//! the relay's own sessions: once the first has committed or rolled back, the
//! server reports the GTID executed (and skips it) or lets the second apply it.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

use crate::gtid::Gtid;

#[derive(Default)]
pub struct Claims {
    held: Mutex<HashSet<Gtid>>,
    released: Notify,
}

/// A GTID claimed for one apply session, released on drop.
pub struct Claim {
    claims: Arc<Claims>,
    gtid: Gtid,
}

impl Claims {
    /// Wait until no other session of this relay applies `gtid`, then claim it.
    pub async fn claim(self: &Arc<Self>, gtid: &Gtid) -> Claim {
        loop {
            let released = self.released.notified();
            if self
                .held
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(gtid.clone())
            {
                return Claim {
                    claims: self.clone(),
                    gtid: gtid.clone(),
                };
            }
            released.await;
        }
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        self.claims
            .held
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.gtid);
        self.claims.released.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn a_second_claim_waits_for_the_first_to_be_released() {
        let claims = Arc::new(Claims::default());
        let gtid: Gtid = "11111111-1111-1111-1111-111111111111:7".parse().unwrap();
        let first = claims.claim(&gtid).await;
        let waiting = tokio::spawn({
            let claims = claims.clone();
            let gtid = gtid.clone();
            async move { claims.claim(&gtid).await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiting.is_finished(), "claimed twice at once");
        drop(first);
        let second = tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("released claim is taken")
            .expect("task");
        drop(second);
        assert!(claims.held.lock().unwrap().is_empty());
    }
}
