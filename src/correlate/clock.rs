//! [`EventClock`]: how far a replayed stream (`import`) has progressed, read from its
//! events' times but not moved by an outlier or a clock step. The rule, and why it keeps
//! every clean pair, is in the [pairing module's doc](super::pairing); this is the
//! mechanism.
//!
//! Two numbers, in nanoseconds:
//! - the **reference** `M`: the highest median of the last [`WINDOW`] event times seen.
//!   Undefined until [`WINDOW`] events were seen, so that the first event alone (perhaps
//!   an outlier) does not set it. It never falls.
//! - the **progress** `E`: starts at 0 when `M` is first defined and rises with `M`, but by
//!   at most `max_step` per rise: a larger rise is a clock step forward or an idle gap, and
//!   counts as `max_step`.
//!
//! Entries measure their wait in progress: [`EventClock::anchor`] places an event on it.

/// Event times the reference is the median of. Odd, so that the median is one of them;
/// 9 means that 4 events in any 9 may be dated ahead of the others without lifting it.
pub const WINDOW: usize = 9;

/// One stream's event clock.
#[derive(Debug, Clone)]
pub struct EventClock {
    /// The last [`WINDOW`] event times, in a ring.
    window: [i64; WINDOW],
    /// Events seen, up to [`WINDOW`] (then the ring is full).
    filled: usize,
    /// The ring slot the next time goes to.
    next: usize,
    /// `M`; `None` until the ring is full.
    reference: Option<i64>,
    /// `E`.
    progress: i64,
    /// The most one rise of `M` adds to `E`.
    max_step: i64,
}

impl EventClock {
    /// A clock whose progress rises by at most `max_step` nanoseconds per rise of its
    /// reference.
    pub fn new(max_step: i64) -> EventClock {
        EventClock {
            window: [0; WINDOW],
            filled: 0,
            next: 0,
            reference: None,
            progress: 0,
            max_step: max_step.max(1),
        }
    }

    /// Takes one event's time. Returns true when this reading defined the reference (the
    /// ring just filled): entries that arrived before can be anchored now.
    pub fn observe(&mut self, time: i64) -> bool {
        self.window[self.next] = time;
        self.next = (self.next + 1) % WINDOW;
        if self.filled < WINDOW {
            self.filled += 1;
            if self.filled < WINDOW {
                return false;
            }
        }
        let mut sorted = self.window;
        let (_, &mut median, _) = sorted.select_nth_unstable(WINDOW / 2);
        match self.reference {
            None => {
                self.reference = Some(median);
                true
            }
            Some(reference) if median > reference => {
                let rise = median.saturating_sub(reference).min(self.max_step);
                self.progress = self.progress.saturating_add(rise);
                self.reference = Some(median);
                false
            }
            Some(_) => false,
        }
    }

    /// The progress `E` so far.
    pub fn progress(&self) -> i64 {
        self.progress
    }

    /// Where on the progress an event dated `time` that arrives now starts its wait: its own
    /// time where it is ahead of the reference (`E + time − M`), now (`E`) where it is
    /// behind it. `None` while the reference is undefined.
    pub fn anchor(&self, time: i64) -> Option<i64> {
        let reference = self.reference?;
        Some(
            self.progress
                .saturating_add(time.saturating_sub(reference).max(0)),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1_000_000_000;

    fn clock_after(times: &[i64]) -> EventClock {
        let mut clock = EventClock::new(S);
        for &t in times {
            clock.observe(t);
        }
        clock
    }

    /// Undefined until the ring is full; then the median, which one outlier cannot be.
    #[test]
    fn the_reference_is_the_median_once_the_ring_is_full() {
        let mut clock = EventClock::new(S);
        for t in 0..8 {
            assert!(!clock.observe(t * S));
            assert_eq!(clock.anchor(0), None);
        }
        assert!(clock.observe(i64::MAX), "the ninth event defines it");
        // Times 0..7 s and one outlier: the median is 4 s.
        assert_eq!(clock.anchor(4 * S), Some(0));
        assert_eq!(clock.anchor(6 * S), Some(2 * S));
        assert_eq!(clock.anchor(-S), Some(0), "behind: waits from now");
        assert_eq!(clock.progress(), 0);
    }

    /// Progress follows the median's rises, each counted at most `max_step`; a falling
    /// median changes nothing.
    #[test]
    fn progress_counts_each_rise_up_to_the_step() {
        let times: Vec<i64> = (0..9).map(|t| t * S / 10).collect();
        let mut clock = clock_after(&times);
        let start = clock.progress();
        // 0.1 s steps: counted whole.
        for t in 9..20 {
            clock.observe(t * S / 10);
        }
        assert_eq!(clock.progress() - start, 11 * S / 10);
        // A jump of an hour, confirmed by five events: counted as one second (after the
        // 0.4 s by which the four older events still in the ring lift the median).
        let before = clock.progress();
        for t in 0..5 {
            clock.observe(3600 * S + t);
        }
        assert_eq!(clock.progress() - before, 4 * S / 10 + S);
        // Back by two hours: nothing moves until the times pass the reference again.
        let before = clock.progress();
        for t in 0..20 {
            clock.observe(-3600 * S + t * S);
        }
        assert_eq!(clock.progress(), before);
    }

    /// Fewer than half of the ring dated far ahead never lift the reference.
    #[test]
    fn four_outliers_in_nine_do_not_move_it() {
        let mut times = Vec::new();
        for t in 0..100 {
            times.push(t * S / 100);
            if t % 2 == 0 {
                times.push(i64::MAX - t);
            }
        }
        let clock = clock_after(&times);
        assert!(clock.anchor(S).is_some_and(|a| a <= S));
        assert!(clock.progress() <= S, "{}", clock.progress());
    }
}
