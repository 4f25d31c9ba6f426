//! Exact summary statistics over durations.

use serde::Serialize;

/// Median, mean and 90th percentile of durations, in seconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct DurationSummary {
    pub median_s: f64,
    pub mean_s: f64,
    pub p90_s: f64,
}

/// Quantile `q` of `values` by linear interpolation between closest ranks (numpy's default,
/// DuckDB's `quantile_cont`), so figures compare one to one with those tools. `None` when
/// empty.
pub fn quantile(values: &mut [i64], q: f64) -> Option<f64> {
    quantiles(values, &[q]).map(|v| v[0])
}

/// Several quantiles at once (see [`quantile`]), sharing the passes over `values`.
pub fn quantiles(values: &mut [i64], qs: &[f64]) -> Option<Vec<f64>> {
    if values.is_empty() {
        return None;
    }
    let last = values.len() - 1;
    let positions: Vec<(usize, f64)> = qs
        .iter()
        .map(|q| {
            let pos = q.clamp(0.0, 1.0) * last as f64;
            (pos.floor() as usize, pos - pos.floor())
        })
        .collect();
    let mut ranks: Vec<usize> = positions
        .iter()
        .flat_map(|&(lo, frac)| [lo, if frac > 0.0 { (lo + 1).min(last) } else { lo }])
        .collect();
    ranks.sort_unstable();
    ranks.dedup();
    let found = select_ranks(values, &ranks);
    let at = |r: usize| found[ranks.binary_search(&r).expect("rank was selected")] as f64;
    Some(
        positions
            .iter()
            .map(|&(lo, frac)| {
                let v = at(lo);
                if frac > 0.0 {
                    v + (at((lo + 1).min(last)) - v) * frac
                } else {
                    v
                }
            })
            .collect(),
    )
}

/// Buckets of one radix pass.
const RADIX_BUCKETS: usize = 4096;
/// Below this many values, sorting beats another radix pass.
const SORT_BELOW: usize = 2048;

/// The values at the given sorted ranks (0-based, in ascending order) of `values`.
///
/// A radix select: one pass for the range, one to count values per bucket of that range, one
/// to gather the few buckets that hold wanted ranks, then the same on each gathered bucket
/// (whose range is 4096 times smaller) until it is small enough to sort. About three cheap
/// passes in all, where a quickselect per rank makes several passes of unpredictable
/// branches and swaps.
fn select_ranks(values: &mut [i64], ranks: &[usize]) -> Vec<i64> {
    if values.len() <= SORT_BELOW {
        values.sort_unstable();
        return ranks.iter().map(|&r| values[r]).collect();
    }
    let (mut min, mut max) = (i64::MAX, i64::MIN);
    for &v in values.iter() {
        min = min.min(v);
        max = max.max(v);
    }
    if min == max {
        return vec![min; ranks.len()];
    }
    let span = (max as i128 - min as i128) as u128;
    let bits = 128 - span.leading_zeros();
    let shift = bits.saturating_sub(RADIX_BUCKETS.trailing_zeros());
    let bucket = |v: i64| ((v as i128 - min as i128) as u128 >> shift) as usize;
    let mut counts = vec![0usize; RADIX_BUCKETS];
    for &v in values.iter() {
        counts[bucket(v)] += 1;
    }
    // For each wanted rank: its bucket and its rank inside the bucket.
    let mut starts = Vec::with_capacity(RADIX_BUCKETS);
    let mut acc = 0;
    for &c in &counts {
        starts.push(acc);
        acc += c;
    }
    let wanted: Vec<(usize, usize)> = ranks
        .iter()
        .map(|&r| {
            let b = starts.partition_point(|&s| s <= r) - 1;
            (b, r - starts[b])
        })
        .collect();
    let mut buckets: Vec<usize> = wanted.iter().map(|&(b, _)| b).collect();
    buckets.dedup();
    let mut gathered: Vec<Vec<i64>> = buckets
        .iter()
        .map(|&b| Vec::with_capacity(counts[b]))
        .collect();
    let mut slot = vec![usize::MAX; RADIX_BUCKETS];
    for (i, &b) in buckets.iter().enumerate() {
        slot[b] = i;
    }
    for &v in values.iter() {
        let s = slot[bucket(v)];
        if s != usize::MAX {
            gathered[s].push(v);
        }
    }
    let mut out = Vec::with_capacity(ranks.len());
    for (i, &b) in buckets.iter().enumerate() {
        let inner: Vec<usize> = wanted
            .iter()
            .filter(|&&(wb, _)| wb == b)
            .map(|&(_, r)| r)
            .collect();
        out.extend(select_ranks(&mut gathered[i], &inner));
    }
    out
}

/// Sub-buckets per power of two in [`log_bucket`]. Four keeps the histograms of a few
/// hundred edges small enough to stay in cache (pass 1 touches one per transition) while a
/// bucket still holds a small share of a series, which pass 2 must keep.
const SUB_BITS: u32 = 2;
const SUB: usize = 1 << SUB_BITS;

/// Buckets of [`log_bucket`]: negatives, the values below `SUB` exactly, then `SUB` buckets
/// per power of two up to `i64::MAX`.
pub const LOG_BUCKETS: usize = 1 + SUB + (63 - SUB_BITS as usize) * SUB;

/// A bucket of a log-scale histogram (quarter-octave resolution); larger values never get a
/// smaller bucket.
#[inline]
pub fn log_bucket(v: i64) -> usize {
    if v < 0 {
        return 0;
    }
    if v < SUB as i64 {
        return 1 + v as usize;
    }
    let e = 63 - v.leading_zeros(); // SUB_BITS..=62
    let mantissa = ((v >> (e - SUB_BITS)) as usize) & (SUB - 1);
    1 + SUB + (e - SUB_BITS) as usize * SUB + mantissa
}

/// The (at most four) buckets a [`RankPlan`] wants; `u16::MAX` marks an unused slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BucketFilter([u16; 4]);

impl BucketFilter {
    #[inline]
    pub fn wants(self, v: i64) -> bool {
        let b = log_bucket(v) as u16;
        self.0.contains(&b)
    }
}

/// Exact quantiles in two passes without keeping every value: pass 1 counts values per
/// [`log_bucket`] (a mergeable histogram), [`RankPlan::new`] finds the buckets holding the
/// ranks the quantiles need, pass 2 keeps only values in those buckets ([`RankPlan::wants`]),
/// and [`RankPlan::finish`] selects the exact values among them.
#[derive(Clone, Debug)]
pub struct RankPlan {
    /// Wanted buckets, ascending (at most two per quantile, and at most four in all as
    /// [`BucketFilter`] holds them; [`RankPlan::new`] takes at most two quantiles).
    buckets: Vec<usize>,
    /// Per quantile: positions of its lower and upper rank within the gathered values
    /// (sorted), and the interpolation fraction.
    picks: Vec<(usize, usize, f64)>,
}

impl RankPlan {
    /// Plans `qs` (at most two quantiles) over a series whose per-bucket counts are `hist`
    /// (length [`LOG_BUCKETS`]).
    pub fn new(hist: &[u64], qs: &[f64]) -> RankPlan {
        assert!(qs.len() <= 2, "a rank plan serves at most two quantiles");
        let n: u64 = hist.iter().sum();
        if n == 0 {
            return RankPlan {
                buckets: Vec::new(),
                picks: Vec::new(),
            };
        }
        let last = (n - 1) as usize;
        let mut starts = Vec::with_capacity(hist.len());
        let mut acc = 0usize;
        for &c in hist {
            starts.push(acc);
            acc += c as usize;
        }
        let bucket_of = |r: usize| starts.partition_point(|&s| s <= r) - 1;
        let wanted: Vec<(usize, usize, f64)> = qs
            .iter()
            .map(|q| {
                let pos = q.clamp(0.0, 1.0) * last as f64;
                let lo = pos.floor() as usize;
                let frac = pos - lo as f64;
                (lo, if frac > 0.0 { (lo + 1).min(last) } else { lo }, frac)
            })
            .collect();
        let mut buckets: Vec<usize> = wanted
            .iter()
            .flat_map(|&(lo, hi, _)| [bucket_of(lo), bucket_of(hi)])
            .collect();
        buckets.sort_unstable();
        buckets.dedup();
        // Gathered values, once sorted, are the wanted buckets end to end.
        let mut offset = Vec::with_capacity(buckets.len());
        let mut before = 0usize;
        for &b in &buckets {
            offset.push(before);
            before += hist[b] as usize;
        }
        let position = |r: usize| {
            let b = bucket_of(r);
            let i = buckets.binary_search(&b).expect("bucket was planned");
            offset[i] + (r - starts[b])
        };
        let picks = wanted
            .iter()
            .map(|&(lo, hi, frac)| (position(lo), position(hi), frac))
            .collect();
        RankPlan { buckets, picks }
    }

    /// Whether pass 2 must keep value `v`.
    #[inline]
    pub fn wants(&self, v: i64) -> bool {
        self.filter().wants(v)
    }

    /// The planned buckets as a small copyable value, for hot loops over many series.
    pub fn filter(&self) -> BucketFilter {
        let mut buckets = [u16::MAX; 4];
        for (slot, &b) in buckets.iter_mut().zip(&self.buckets) {
            *slot = b as u16;
        }
        BucketFilter(buckets)
    }

    /// The quantiles, from every value pass 2 kept (in any order); empty when the series is.
    pub fn finish(&self, gathered: &mut [i64]) -> Vec<f64> {
        if self.picks.is_empty() {
            return Vec::new();
        }
        let mut positions: Vec<usize> = self
            .picks
            .iter()
            .flat_map(|&(lo, hi, _)| [lo, hi])
            .collect();
        positions.sort_unstable();
        positions.dedup();
        let values = select_ranks(gathered, &positions);
        let at = |p: usize| values[positions.binary_search(&p).expect("position selected")] as f64;
        self.picks
            .iter()
            .map(|&(lo, hi, frac)| {
                let v = at(lo);
                if frac > 0.0 {
                    v + (at(hi) - v) * frac
                } else {
                    v
                }
            })
            .collect()
    }
}

/// Median of µs durations, in seconds (0 when empty).
pub fn median_seconds(values: &mut [i64]) -> f64 {
    quantile(values, 0.5).map_or(0.0, micros_to_seconds)
}

/// Median, mean and p90 of µs durations, in seconds (zeros when empty).
pub fn summarize(values: &mut [i64]) -> DurationSummary {
    if values.is_empty() {
        return DurationSummary::default();
    }
    let sum: i128 = values.iter().map(|&v| i128::from(v)).sum();
    let mean = sum as f64 / values.len() as f64;
    let q = quantiles(values, &[0.5, 0.9]).expect("values is not empty");
    DurationSummary {
        median_s: micros_to_seconds(q[0]),
        mean_s: micros_to_seconds(mean),
        p90_s: micros_to_seconds(q[1]),
    }
}

pub fn micros_to_seconds(micros: f64) -> f64 {
    micros / 1_000_000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_interpolate_like_numpy() {
        let mut v = vec![40, 10, 30, 20];
        assert_eq!(quantile(&mut v, 0.5), Some(25.0));
        assert_eq!(quantile(&mut v, 0.9), Some(37.0));
        assert_eq!(quantile(&mut v, 0.0), Some(10.0));
        assert_eq!(quantile(&mut v, 1.0), Some(40.0));
        assert_eq!(quantile(&mut [7], 0.9), Some(7.0));
        assert_eq!(quantile(&mut [], 0.5), None);
    }

    #[test]
    fn radix_select_agrees_with_sorting() {
        // Skewed values over a wide range, with duplicates, negatives and a huge outlier.
        let mut x: u64 = 7;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for n in [1usize, 2, 3, 100, 2049, 5000, 70_000] {
            let mut v: Vec<i64> = (0..n)
                .map(|_| {
                    let r = next();
                    match r % 10 {
                        0 => -((r >> 20) as i64 % 1000),
                        1 => 42,
                        2 => i64::MAX / 3,
                        _ => ((r >> 8) % (1 << (r % 40))) as i64,
                    }
                })
                .collect();
            let mut sorted = v.clone();
            sorted.sort_unstable();
            let reference = |q: f64| {
                let pos = q * (n - 1) as f64;
                let lo = pos.floor() as usize;
                let hi = pos.ceil() as usize;
                sorted[lo] as f64 + (sorted[hi] - sorted[lo]) as f64 * (pos - lo as f64)
            };
            let qs = [0.0, 0.1, 0.5, 0.9, 0.99, 1.0];
            let got = quantiles(&mut v, &qs).unwrap();
            for (q, g) in qs.iter().zip(got) {
                assert_eq!(g, reference(*q), "n={n} q={q}");
            }
        }
        // The two-pass plan gives the same figures.
        for n in [1usize, 5, 3000, 40_000] {
            let v: Vec<i64> = (0..n)
                .map(|_| (next() % (1 << (next() % 45))) as i64)
                .collect();
            let mut hist = vec![0u64; LOG_BUCKETS];
            for &x in &v {
                hist[log_bucket(x)] += 1;
            }
            let qs = [0.5, 0.9];
            let plan = RankPlan::new(&hist, &qs);
            let mut kept: Vec<i64> = v.iter().copied().filter(|&x| plan.wants(x)).collect();
            let mut all = v.clone();
            assert_eq!(
                Some(plan.finish(&mut kept)),
                quantiles(&mut all, &qs),
                "n={n}"
            );
        }
        let mut prev = 0;
        for v in (-3..100_000).chain([i64::MAX / 2, i64::MAX]) {
            let b = log_bucket(v);
            assert!(b >= prev && b < LOG_BUCKETS, "{v}");
            prev = b;
        }
        let mut same = vec![5i64; 10_000];
        assert_eq!(quantiles(&mut same, &[0.5, 0.9]), Some(vec![5.0, 5.0]));
    }

    #[test]
    fn summaries_are_in_seconds() {
        let mut v = vec![1_000_000, 3_000_000];
        let s = summarize(&mut v);
        assert_eq!(s.median_s, 2.0);
        assert_eq!(s.mean_s, 2.0);
        assert!((s.p90_s - 2.8).abs() < 1e-9);
        assert_eq!(summarize(&mut []), DurationSummary::default());
    }
}
