//! GTIDs being applied to one target, shared by every channel into it.
//!
//! In a mesh the same transaction reaches a target by several channels. MySQL
//! would make the second session's `SET GTID_NEXT` wait, with no timeout, until
//! the first commits or rolls back. Channels of one relay take turns here
//! instead, so that such a wait happens in the relay, where it is bounded by
//! the relay's own sessions. A session that committed its GTID records it in
//! the target's executed set before it lets go of the claim, so the session
//! that waited learns here that there is nothing left to do, without a round
//! trip to the target.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

use crate::gtid::{Gtid, GtidSet};

pub struct Claims {
    held: Mutex<HashSet<Gtid>>,
    released: Notify,
    /// The target's executed set as the relay knows it (shared with the channels).
    executed: Arc<Mutex<GtidSet>>,
}

/// What [`Claims::claim`] found.
pub enum Claimed {
    /// The GTID is this session's to apply until the claim is dropped.
    Held(Claim),
    /// The target already has the GTID: there is nothing to apply.
    Executed,
}

/// A GTID claimed for one apply session, released on drop.
pub struct Claim {
    claims: Arc<Claims>,
    gtid: Gtid,
}

impl Claims {
    pub fn new(executed: Arc<Mutex<GtidSet>>) -> Claims {
        Claims {
            held: Mutex::new(HashSet::new()),
            released: Notify::new(),
            executed,
        }
    }

    /// Wait until no other session of this relay applies `gtid`, then claim it,
    /// unless the target has it by then.
    pub async fn claim(self: &Arc<Self>, gtid: &Gtid) -> Claimed {
        loop {
            let released = self.released.notified();
            {
                let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
                if self
                    .executed
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .contains(gtid)
                {
                    return Claimed::Executed;
                }
                if held.insert(gtid.clone()) {
                    return Claimed::Held(Claim {
                        claims: self.clone(),
                        gtid: gtid.clone(),
                    });
                }
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

    fn held(c: Claimed) -> Claim {
        match c {
            Claimed::Held(c) => c,
            Claimed::Executed => panic!("claimed GTID reported executed"),
        }
    }

    fn claim_in_background(claims: &Arc<Claims>, gtid: &Gtid) -> tokio::task::JoinHandle<Claimed> {
        let (claims, gtid) = (claims.clone(), gtid.clone());
        tokio::spawn(async move { claims.claim(&gtid).await })
    }

    #[tokio::test]
    async fn a_second_claim_waits_for_the_first_to_be_released() {
        let claims = Arc::new(Claims::new(Arc::default()));
        let gtid: Gtid = "11111111-1111-1111-1111-111111111111:7".parse().unwrap();
        let first = held(claims.claim(&gtid).await);
        let waiting = claim_in_background(&claims, &gtid);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiting.is_finished(), "claimed twice at once");
        drop(first);
        let second = tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("released claim is taken")
            .expect("task");
        drop(held(second));
        assert!(claims.held.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_waiter_learns_that_the_holder_committed() {
        let executed = Arc::new(Mutex::new(GtidSet::new()));
        let claims = Arc::new(Claims::new(executed.clone()));
        let gtid: Gtid = "11111111-1111-1111-1111-111111111111:8".parse().unwrap();
        let first = held(claims.claim(&gtid).await);
        let waiting = claim_in_background(&claims, &gtid);
        tokio::time::sleep(Duration::from_millis(50)).await;
        executed.lock().unwrap().insert(&gtid);
        drop(first);
        let second = tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("released claim is seen")
            .expect("task");
        assert!(matches!(second, Claimed::Executed));
        assert!(matches!(claims.claim(&gtid).await, Claimed::Executed));
        assert!(claims.held.lock().unwrap().is_empty());
    }
}
