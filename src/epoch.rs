//! Time as ticks: nanoseconds since an epoch the state picks when it is built.
//!
//! Decisions depend only on differences between instants, so a cell stores ticks, which fit a
//! packed word, instead of an `Instant`, which does not. The epoch lies [`LOOKBACK`] before the
//! state was built, so an instant taken just before (`let now = Instant::now();` and then the
//! state) is exact. Ticks are exact for [`MAX_TICK`] nanoseconds from the epoch, about 36.5 years,
//! so at least 32.5 years after the state was built; later instants saturate at `MAX_TICK` and
//! earlier ones at 0.

use std::time::{Duration, Instant};

/// How many bits a tick may use: the rest of the packed word holds the crash count.
pub(crate) const TICK_BITS: u32 = 60;

/// The last exact tick: 2^60 - 2 ns, about 36.5 years. (Not 2^60 - 1: the packed word keeps
/// that window start, with every crash bit set, as the mark of a removed cell; see `cell.rs`.)
pub(crate) const MAX_TICK: u64 = (1 << TICK_BITS) - 2;

/// How far before the state's construction the epoch is placed: four years of 365.25 days.
///
/// Long enough for any instant a caller kept from before the state existed; short enough that
/// 36.5 - 4 = 32.5 years remain exact after it.
const LOOKBACK: Duration = Duration::from_secs(4 * 36_525 * 24 * 60 * 60 / 100);

/// The instant that tick 0 stands for.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Epoch {
    origin: Instant,
}

impl Epoch {
    /// An epoch up to [`LOOKBACK`] before `now`.
    ///
    /// On a platform whose monotonic clock cannot reach that far back (on some, `Instant` cannot
    /// go before boot), the lookback is halved until the subtraction succeeds: the epoch is then
    /// less far back than the platform could represent, by less than half.
    pub(crate) fn before(now: Instant) -> Self {
        let mut lookback = LOOKBACK;
        loop {
            if let Some(origin) = now.checked_sub(lookback) {
                return Self { origin };
            }
            if lookback.is_zero() {
                return Self { origin: now };
            }
            lookback /= 2;
        }
    }

    /// `at` as ticks since the epoch, saturating to `0..=MAX_TICK`.
    ///
    /// On every call's path, so in u64 arithmetic: `Duration::as_nanos` goes through u128.
    #[inline]
    pub(crate) fn ticks(&self, at: Instant) -> u64 {
        match at.checked_duration_since(self.origin) {
            Some(since) => since
                .as_secs()
                .checked_mul(1_000_000_000)
                .and_then(|nanos| nanos.checked_add(u64::from(since.subsec_nanos())))
                .map_or(MAX_TICK, |nanos| nanos.min(MAX_TICK)),
            None => 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const YEAR: Duration = Duration::from_secs(36_525 * 24 * 60 * 60 / 100);

    #[test]
    fn instants_just_before_construction_are_exact() {
        let earlier = Instant::now();
        let epoch = Epoch::before(Instant::now());
        let later = earlier + Duration::from_nanos(12_345);
        assert_eq!(epoch.ticks(later) - epoch.ticks(earlier), 12_345);
    }

    #[test]
    fn thirty_years_ahead_stay_exact() {
        let now = Instant::now();
        let epoch = Epoch::before(now);
        let far = now + 30 * YEAR;
        let one_more = far + Duration::from_nanos(1);
        assert_eq!(epoch.ticks(one_more) - epoch.ticks(far), 1);
        assert!(epoch.ticks(one_more) < MAX_TICK);
    }

    #[test]
    fn out_of_range_instants_saturate() {
        let now = Instant::now();
        let epoch = Epoch::before(now);
        assert_eq!(epoch.ticks(now + 100 * YEAR), MAX_TICK);
        if let Some(ancient) = now.checked_sub(10 * YEAR) {
            assert_eq!(epoch.ticks(ancient), 0);
        }
    }

    #[test]
    fn max_tick_fits_in_sixty_bits_and_covers_thirty_six_years() {
        assert_eq!(MAX_TICK >> TICK_BITS, 0);
        assert!(Duration::from_nanos(MAX_TICK) > 36 * YEAR);
        assert!(Duration::from_nanos(MAX_TICK) - LOOKBACK > 32 * YEAR);
    }
}
