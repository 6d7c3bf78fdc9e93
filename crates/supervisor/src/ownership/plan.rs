//! What a replica takes and gives up, as pure data: a fair share each
//! (`ceil(enabled / live replicas)`), the rest left for others.
//! Connections are ranked per replica by rendezvous hashing, so that each
//! replica prefers "its own" connections and a change of membership moves
//! few of them.

use std::collections::{HashMap, HashSet};
use store::LeaseView;

/// The decision of one keeper tick.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct LeasePlan {
    /// Free or expired leases to take.
    pub acquire: Vec<i64>,
    /// Leases to give up (after their connections are closed): beyond the
    /// fair share, or of rows no longer enabled.
    pub release: Vec<i64>,
}

/// Gives up at most this share of the fair share per tick, so that a new
/// replica receives its connections gradually.
const RELEASE_PER_TICK_DIVISOR: usize = 4;

/// The plan for replica `me` holding `held`, given `view`.
pub fn plan(view: &LeaseView, me: &str, held: &HashSet<i64>) -> LeasePlan {
    let enabled: HashSet<i64> = view.enabled.iter().copied().collect();
    let mut replicas: Vec<&str> = view.replicas.iter().map(String::as_str).collect();
    if !replicas.contains(&me) {
        replicas.push(me);
    }
    let share = view.enabled.len().div_ceil(replicas.len());
    let owner: HashMap<i64, &str> = view
        .leases
        .iter()
        .map(|(id, o)| (*id, o.as_str()))
        .collect();

    let mut release: Vec<i64> = held
        .iter()
        .filter(|id| !enabled.contains(id))
        .copied()
        .collect();
    let mut mine: Vec<i64> = held
        .iter()
        .filter(|id| enabled.contains(id))
        .copied()
        .collect();
    let mut acquire = Vec::new();
    if mine.len() < share {
        let mut free: Vec<i64> = view
            .enabled
            .iter()
            .filter(|id| !owner.contains_key(id) && !held.contains(id))
            .copied()
            .collect();
        // Ours first: where we rank highest among the live replicas.
        free.sort_by_key(|id| std::cmp::Reverse(preference(*id, me, &replicas)));
        acquire = free.into_iter().take(share - mine.len()).collect();
    } else if mine.len() > share {
        let extra = mine.len() - share;
        let step = (share / RELEASE_PER_TICK_DIVISOR).max(1).min(extra);
        mine.sort_by_key(|id| preference(*id, me, &replicas));
        release.extend(mine.into_iter().take(step));
    }
    release.sort_unstable();
    acquire.sort_unstable();
    LeasePlan { acquire, release }
}

/// How much `me` wants `id` compared to the other replicas: its hash
/// weight's rank (higher is more), then the weight itself.
fn preference(id: i64, me: &str, replicas: &[&str]) -> (usize, u64) {
    let mine = weight(id, me);
    let rank = replicas.iter().filter(|r| weight(id, r) < mine).count();
    (rank, mine)
}

/// FNV-1a over the id and the replica: the same in every process.
fn weight(id: i64, replica: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in id.to_le_bytes().iter().chain(replica.as_bytes()) {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(replicas: &[&str], enabled: i64, leases: &[(i64, &str)]) -> LeaseView {
        LeaseView {
            replicas: replicas.iter().map(|r| (*r).to_owned()).collect(),
            enabled: (1..=enabled).collect(),
            leases: leases.iter().map(|(i, o)| (*i, (*o).to_owned())).collect(),
            next_expiry: None,
        }
    }

    #[test]
    fn replicas_taking_turns_end_with_fair_shares_and_no_overlap() {
        let names = ["a", "b", "c"];
        let mut held: HashMap<&str, HashSet<i64>> =
            names.iter().map(|n| (*n, HashSet::new())).collect();
        for _ in 0..20 {
            for me in names {
                let leases: Vec<(i64, &str)> = held
                    .iter()
                    .flat_map(|(o, ids)| ids.iter().map(move |i| (*i, *o)))
                    .collect();
                let p = plan(&view(&names, 300, &leases), me, &held[me]);
                let mine = held.get_mut(me).unwrap();
                for id in &p.release {
                    mine.remove(id);
                }
                mine.extend(p.acquire);
            }
        }
        let all: Vec<i64> = held.values().flatten().copied().collect();
        let distinct: HashSet<i64> = all.iter().copied().collect();
        assert_eq!(all.len(), 300, "each connection once");
        assert_eq!(distinct.len(), 300);
        for me in names {
            assert_eq!(held[me].len(), 100, "{me}");
        }
    }

    #[test]
    fn a_new_replica_receives_a_share_gradually() {
        let leases: Vec<(i64, &str)> = (1..=300)
            .map(|i| (i, ["a", "b", "c"][(i % 3) as usize]))
            .collect();
        let held_a: HashSet<i64> = leases
            .iter()
            .filter(|(_, o)| *o == "a")
            .map(|(i, _)| *i)
            .collect();
        let p = plan(&view(&["a", "b", "c", "d"], 300, &leases), "a", &held_a);
        assert!(p.acquire.is_empty());
        assert_eq!(p.release.len(), 18, "75 / 4 per tick, of 25 extra");
        let p = plan(
            &view(&["a", "b", "c", "d"], 300, &leases),
            "d",
            &HashSet::new(),
        );
        assert!(p.acquire.is_empty(), "nothing is free yet");
    }

    #[test]
    fn rows_no_longer_enabled_are_released() {
        let held: HashSet<i64> = [1, 2, 400].into();
        let p = plan(
            &view(&["a"], 2, &[(1, "a"), (2, "a"), (400, "a")]),
            "a",
            &held,
        );
        assert_eq!(p.release, vec![400]);
        assert!(p.acquire.is_empty());
    }
}
