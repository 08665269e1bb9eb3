//! Which transactions a channel sends to its target.

use crate::gtid::{Gtid, GtidSet, Uuid};

/// What to do with a transaction, decided at its GTID event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Apply,
    /// It originated on the target: sending it back would be an echo.
    SkipLoop,
    /// The target already executed it (through this or another channel).
    SkipApplied,
}

/// The loop rule first, then the target's executed set.
pub fn decide(gtid: &Gtid, target_uuid: &Uuid, target_executed: &GtidSet) -> Verdict {
    if gtid.uuid == *target_uuid {
        Verdict::SkipLoop
    } else if target_executed.contains(gtid) {
        Verdict::SkipApplied
    } else {
        Verdict::Apply
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: &str = "11111111-1111-1111-1111-111111111111";
    const S: &str = "22222222-2222-2222-2222-222222222222";

    #[test]
    fn loop_rule_wins_over_everything() {
        let t: Uuid = T.parse().unwrap();
        let executed = GtidSet::parse(&format!("{S}:1-5")).unwrap();
        assert_eq!(
            decide(&format!("{T}:9").parse().unwrap(), &t, &executed),
            Verdict::SkipLoop
        );
        assert_eq!(
            decide(&format!("{S}:3").parse().unwrap(), &t, &executed),
            Verdict::SkipApplied
        );
        assert_eq!(
            decide(&format!("{S}:6").parse().unwrap(), &t, &executed),
            Verdict::Apply
        );
        assert_eq!(
            decide(&format!("{S}:tag:3").parse().unwrap(), &t, &executed),
            Verdict::Apply
        );
    }
}
