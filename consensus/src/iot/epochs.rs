//! The epoch table: which leader epoch wrote each index, and where two logs part.
//!
//! Within one epoch only that epoch's leader originates entries, and a replica accepts an
//! entry only after checking that its log agrees with the sender's up to the entry before
//! it (same epoch at that index). So two logs that carry the same epoch at index `i` agree
//! on every index `1..=i` (the Kafka leader-epoch argument). The table stores that label
//! compactly, as ascending `(epoch, first index of the epoch)` pairs: index `i` belongs to
//! the last pair whose first index is `<= i`.
//!
//! [`Epochs::common_prefix`] uses this to find the longest prefix two logs share from
//! their tables alone; a replica holding entries past that point has a divergent suffix.
//!
//! The table is bounded ([`Epochs::trim`] drops the oldest pairs). An index below the
//! first kept pair has no known epoch, which only makes the comparison more conservative:
//! an unknown label never counts as agreement, so the worst case is an extra snapshot.

use super::{Epoch, Index};

/// Ascending `(epoch, first index)` pairs, plus the highest epoch this replica was ever
/// named leader of (`leader_fence`, see [`Epochs::leader_fence`]).
///
/// Both epochs and first indexes strictly increase from pair to pair. Persisted by the
/// driver on `Command::PersistEpochs`, recovered into `Recovered::epochs`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Epochs {
    pairs: Vec<(Epoch, Index)>,
    leader_fence: Epoch,
}

impl Epochs {
    /// An empty table (an empty log).
    pub fn new() -> Epochs {
        Epochs::default()
    }

    /// A table from pairs; `None` unless epochs and first indexes strictly increase and
    /// every first index is at least 1.
    pub fn from_pairs(pairs: Vec<(Epoch, Index)>, leader_fence: Epoch) -> Option<Epochs> {
        let ascending = pairs
            .windows(2)
            .all(|pair| pair[0].0 < pair[1].0 && pair[0].1 < pair[1].1);
        let positive = pairs.iter().all(|&(_, first)| first >= 1);
        (ascending && positive).then_some(Epochs {
            pairs,
            leader_fence,
        })
    }

    pub fn pairs(&self) -> &[(Epoch, Index)] {
        &self.pairs
    }

    /// The highest epoch this replica began to lead. A replica never leads that epoch (or
    /// an older one) again after a restart: it cannot know what it shipped before it
    /// crashed, so reusing the epoch could give one index two different entries.
    pub fn leader_fence(&self) -> Epoch {
        self.leader_fence
    }

    pub fn set_leader_fence(&mut self, epoch: Epoch) {
        self.leader_fence = self.leader_fence.max(epoch);
    }

    /// The highest epoch in the table or the fence.
    pub fn max_epoch(&self) -> Epoch {
        self.pairs
            .last()
            .map_or(0, |&(epoch, _)| epoch)
            .max(self.leader_fence)
    }

    /// The epoch that wrote `index`: `Some(0)` for index 0 (the empty prefix), `None` when
    /// `index` lies below the first kept pair.
    pub fn epoch_at(&self, index: Index) -> Option<Epoch> {
        if index == 0 {
            return Some(0);
        }
        let position = self.pairs.partition_point(|&(_, first)| first <= index);
        (position > 0).then(|| self.pairs[position - 1].0)
    }

    /// The first index the table still labels (1 if it was never trimmed).
    pub fn first_labelled(&self) -> Index {
        self.pairs.first().map_or(1, |&(_, first)| first)
    }

    /// Starts `epoch` at `first`, for a log whose last index is `first - 1`: pairs that
    /// start at or after `first` label nothing any more and are dropped.
    ///
    /// Panics if `epoch` is not above the epoch of the pair it follows (a bug).
    pub fn begin(&mut self, epoch: Epoch, first: Index) {
        assert!(first >= 1);
        self.truncate_from(first);
        if let Some(&(last_epoch, _)) = self.pairs.last() {
            if last_epoch == epoch {
                return;
            }
            assert!(
                last_epoch < epoch,
                "epoch {epoch} begins after epoch {last_epoch}"
            );
        }
        self.pairs.push((epoch, first));
    }

    /// Forgets labels of indexes `>= first` (the log is cut to `first - 1`).
    pub fn truncate_from(&mut self, first: Index) {
        while self.pairs.last().is_some_and(|&(_, start)| start >= first) {
            self.pairs.pop();
        }
    }

    /// Copies `source`'s labels for `from..=through` onto this table, whose log ends at
    /// `from - 1`. False (and nothing changed) if `source` does not label `from`.
    pub fn adopt(&mut self, source: &Epochs, from: Index, through: Index) -> bool {
        let Some(first_epoch) = source.epoch_at(from) else {
            return false;
        };
        if from > through {
            return true;
        }
        self.truncate_from(from);
        if self
            .epoch_at(from - 1)
            .is_some_and(|epoch| epoch > first_epoch)
            || self
                .pairs
                .last()
                .is_some_and(|&(epoch, _)| epoch > first_epoch)
        {
            // Our older labels claim a later epoch than the source gives what follows
            // them: the logs do not share this prefix. The caller checked they do.
            return false;
        }
        if self.pairs.last().map(|&(epoch, _)| epoch) != Some(first_epoch) {
            self.pairs.push((first_epoch, from));
        }
        for &(epoch, first) in &source.pairs {
            if first > from && first <= through {
                self.pairs.push((epoch, first));
            }
        }
        true
    }

    /// The pairs that label `from..=through` (the one covering `from` and those starting
    /// inside the range): what a message carrying those entries needs.
    pub fn slice(&self, from: Index, through: Index) -> Epochs {
        let start = self
            .pairs
            .partition_point(|&(_, first)| first <= from.max(1))
            .saturating_sub(1);
        let pairs = self.pairs[start..]
            .iter()
            .copied()
            .take_while(|&(_, first)| first <= through.max(from))
            .collect();
        Epochs {
            pairs,
            leader_fence: 0,
        }
    }

    /// Drops the oldest pairs beyond `max` (the bound of the table).
    pub fn trim(&mut self, max: usize) {
        let max = max.max(1);
        if self.pairs.len() > max {
            let excess = self.pairs.len() - max;
            self.pairs.drain(..excess);
        }
    }

    /// The longest prefix `1..=k` that a log with this table and last index `last` shares
    /// with another (`other`, `other_last`), judged by labels: `k` is the largest index
    /// `<= min(last, other_last)` carrying the same known epoch in both (0 if none).
    pub fn common_prefix(&self, last: Index, other: &Epochs, other_last: Index) -> Index {
        let end = last.min(other_last);
        if end == 0 {
            return 0;
        }
        // Segment boundaries: every first index of either table inside 1..=end.
        let mut starts: Vec<Index> = self
            .pairs
            .iter()
            .chain(other.pairs.iter())
            .map(|&(_, first)| first)
            .filter(|&first| first <= end)
            .collect();
        starts.push(1);
        starts.sort_unstable();
        starts.dedup();
        let mut common = 0;
        for (position, &start) in starts.iter().enumerate() {
            let segment_end = starts.get(position + 1).map_or(end, |&next| next - 1);
            match (self.epoch_at(start), other.epoch_at(start)) {
                (Some(mine), Some(theirs)) if mine == theirs => common = segment_end,
                _ => {}
            }
        }
        common
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(pairs: &[(Epoch, Index)]) -> Epochs {
        Epochs::from_pairs(pairs.to_vec(), 0).expect("ascending")
    }

    #[test]
    fn labels_follow_the_last_pair_at_or_below_the_index() {
        let epochs = table(&[(1, 1), (3, 5), (4, 9)]);
        assert_eq!(epochs.epoch_at(0), Some(0));
        assert_eq!(epochs.epoch_at(1), Some(1));
        assert_eq!(epochs.epoch_at(4), Some(1));
        assert_eq!(epochs.epoch_at(5), Some(3));
        assert_eq!(epochs.epoch_at(100), Some(4));
        let trimmed = table(&[(3, 5), (4, 9)]);
        assert_eq!(trimmed.epoch_at(4), None, "below the first kept pair");
    }

    #[test]
    fn from_pairs_refuses_unordered_tables() {
        assert!(Epochs::from_pairs(vec![(2, 1), (1, 5)], 0).is_none());
        assert!(Epochs::from_pairs(vec![(1, 5), (2, 5)], 0).is_none());
        assert!(Epochs::from_pairs(vec![(1, 0)], 0).is_none());
    }

    #[test]
    fn a_prefix_agrees_up_to_its_end() {
        let leader = table(&[(1, 1), (2, 6)]);
        let follower = table(&[(1, 1)]);
        assert_eq!(leader.common_prefix(10, &follower, 4), 4);
        assert_eq!(follower.common_prefix(4, &leader, 10), 4);
        assert_eq!(leader.common_prefix(10, &follower, 5), 5);
        // A follower with entries of epoch 1 past where the leader left epoch 1.
        assert_eq!(leader.common_prefix(10, &follower, 8), 5);
    }

    #[test]
    fn a_divergent_suffix_is_found_at_the_epoch_change() {
        // Old leader (epoch 2) wrote 6..=9; the new leader (epoch 3) took over at 6.
        let old = table(&[(1, 1), (2, 6)]);
        let new = table(&[(1, 1), (3, 6)]);
        assert_eq!(old.common_prefix(9, &new, 12), 5);
        assert_eq!(new.common_prefix(12, &old, 9), 5);
        // A third log kept epoch-1 entries 6..=7 that the leader of epoch 2 never had.
        let third = table(&[(1, 1)]);
        assert_eq!(third.common_prefix(7, &old, 9), 5);
        assert_eq!(third.common_prefix(7, &new, 12), 5);
    }

    #[test]
    fn empty_logs_and_unknown_labels_share_nothing() {
        let empty = Epochs::new();
        let some = table(&[(1, 1)]);
        assert_eq!(empty.common_prefix(0, &some, 7), 0);
        let trimmed = table(&[(4, 9)]);
        let other = table(&[(1, 1), (5, 9)]);
        assert_eq!(trimmed.common_prefix(12, &other, 12), 0);
        // Agreement on a known label implies agreement below it, even unlabelled.
        let other = table(&[(1, 1), (4, 9)]);
        assert_eq!(trimmed.common_prefix(12, &other, 10), 10);
    }

    #[test]
    fn begin_replaces_empty_epochs_and_keeps_order() {
        let mut epochs = table(&[(1, 1), (2, 6)]);
        epochs.begin(3, 6); // epoch 2 wrote nothing
        assert_eq!(epochs.pairs(), &[(1, 1), (3, 6)]);
        epochs.begin(3, 6);
        assert_eq!(epochs.pairs(), &[(1, 1), (3, 6)]);
        epochs.begin(5, 9);
        assert_eq!(epochs.pairs(), &[(1, 1), (3, 6), (5, 9)]);
        epochs.trim(2);
        assert_eq!(epochs.pairs(), &[(3, 6), (5, 9)]);
        assert_eq!(epochs.first_labelled(), 6);
    }

    #[test]
    fn adopt_copies_the_labels_of_new_entries() {
        let leader = table(&[(1, 1), (2, 4), (5, 7)]);
        let mut follower = table(&[(1, 1)]);
        assert!(follower.adopt(&leader.slice(3, 8), 3, 8));
        assert_eq!(follower.pairs(), &[(1, 1), (2, 4), (5, 7)]);
        let mut follower = table(&[(1, 1), (2, 4)]);
        assert!(follower.adopt(&leader.slice(5, 5), 5, 5));
        assert_eq!(follower.pairs(), &[(1, 1), (2, 4)]);
        // A source that does not label the first entry is refused.
        let mut follower = table(&[(1, 1)]);
        assert!(!follower.adopt(&table(&[(5, 7)]), 3, 8));
        assert_eq!(follower.pairs(), &[(1, 1)]);
    }

    #[test]
    fn slice_keeps_the_covering_pair() {
        let leader = table(&[(1, 1), (2, 4), (5, 7), (6, 20)]);
        assert_eq!(leader.slice(5, 8).pairs(), &[(2, 4), (5, 7)]);
        assert_eq!(leader.slice(0, 3).pairs(), &[(1, 1)]);
        assert_eq!(leader.slice(21, 30).pairs(), &[(6, 20)]);
    }
}
