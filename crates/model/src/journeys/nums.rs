//! Numeric property columns that store only the events that have a value. Properties such
//! as `wait_seconds` or `sentiment` are on a few events in a hundred; as a dense `f64` per
//! event they were the largest columns an analysis loaded.

/// One value per event, NaN where the event has none: a presence bit per event, the
/// present values in event order, and per 64 events the number of values before them, so
/// [`Nums::get`] is a word read and a popcount. About 0.19 bytes an event plus 8 per value.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Nums {
    len: usize,
    present: Vec<u64>,
    /// `rank[w]`: values of the events before word `w`.
    rank: Vec<u32>,
    values: Vec<f64>,
}

impl Nums {
    pub fn with_capacity(events: usize) -> Nums {
        Nums {
            len: 0,
            present: Vec::with_capacity(events.div_ceil(64)),
            rank: Vec::with_capacity(events.div_ceil(64)),
            values: Vec::new(),
        }
    }

    /// Appends one event's value; NaN stands for none.
    #[inline]
    pub fn push(&mut self, value: f64) {
        let i = self.len;
        if i.is_multiple_of(64) {
            self.present.push(0);
            self.rank.push(self.values.len() as u32);
        }
        if !value.is_nan() {
            self.present[i / 64] |= 1 << (i % 64);
            self.values.push(value);
        }
        self.len += 1;
    }

    /// Event `i`'s value, NaN when it has none.
    #[inline]
    pub fn get(&self, i: usize) -> f64 {
        assert!(i < self.len, "event {i} of a column of {}", self.len);
        let word = self.present[i / 64];
        let bit = 1u64 << (i % 64);
        if word & bit == 0 {
            return f64::NAN;
        }
        let before = (word & (bit - 1)).count_ones();
        self.values[(self.rank[i / 64] + before) as usize]
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn iter(&self) -> impl Iterator<Item = f64> + '_ {
        (0..self.len).map(move |i| self.get(i))
    }

    pub fn heap_bytes(&self) -> usize {
        self.present.len() * 8 + self.rank.len() * 4 + self.values.len() * 8
    }
}

impl FromIterator<f64> for Nums {
    fn from_iter<I: IntoIterator<Item = f64>>(iter: I) -> Nums {
        let iter = iter.into_iter();
        let mut nums = Nums::with_capacity(iter.size_hint().0);
        for v in iter {
            nums.push(v);
        }
        nums
    }
}

impl Extend<f64> for Nums {
    fn extend<I: IntoIterator<Item = f64>>(&mut self, iter: I) {
        for v in iter {
            self.push(v);
        }
    }
}

impl From<Vec<f64>> for Nums {
    fn from(values: Vec<f64>) -> Nums {
        values.into_iter().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn nums_keep_only_present_values() {
        let mut v: Vec<f64> = vec![f64::NAN; 1000];
        v[3] = 1.5;
        v[999] = -2.0;
        let nums = Nums::from(v);
        assert_eq!(nums.len(), 1000);
        assert_eq!((nums.get(3), nums.get(999)), (1.5, -2.0));
        assert!(nums.get(0).is_nan() && nums.get(998).is_nan());
        assert_eq!(nums.heap_bytes(), 16 * 8 + 16 * 4 + 2 * 8);
    }

    #[test]
    #[should_panic(expected = "event 5 of a column of 5")]
    fn nums_refuse_an_event_past_the_end() {
        Nums::from(vec![1.0; 5]).get(5);
    }

    proptest! {
        #[test]
        fn nums_read_back_what_was_pushed(values in prop::collection::vec(
            prop_oneof![Just(f64::NAN), any::<f64>().prop_filter("a value", |v| !v.is_nan())],
            0..300,
        )) {
            let nums: Nums = values.iter().copied().collect();
            prop_assert_eq!(nums.len(), values.len());
            for (i, &v) in values.iter().enumerate() {
                let got = nums.get(i);
                prop_assert!(got == v || (got.is_nan() && v.is_nan()), "event {}: {} vs {}", i, got, v);
            }
        }
    }
}
