//! Dictionary codes in the narrowest integer that holds them. Most text properties have a
//! few dozen values, so a code takes one byte an event instead of four: the columns an
//! analysis loads shrink by most of their size, and so does the time spent faulting in and
//! copying them.

/// A column of dictionary codes. Starts one byte wide and widens (once per width) when a
/// code no longer fits, so builders need not know the dictionary's size in advance.
#[derive(Clone, Debug)]
pub enum Codes {
    U8(Vec<u8>),
    U16(Vec<u16>),
    U32(Vec<u32>),
}

impl Default for Codes {
    fn default() -> Self {
        Codes::U8(Vec::new())
    }
}

impl Codes {
    pub fn with_capacity(capacity: usize) -> Codes {
        Codes::U8(Vec::with_capacity(capacity))
    }

    #[inline]
    pub fn get(&self, i: usize) -> u32 {
        match self {
            Codes::U8(v) => u32::from(v[i]),
            Codes::U16(v) => u32::from(v[i]),
            Codes::U32(v) => v[i],
        }
    }

    #[inline]
    pub fn push(&mut self, code: u32) {
        match self {
            Codes::U8(v) if code <= u32::from(u8::MAX) => v.push(code as u8),
            Codes::U16(v) if code <= u32::from(u16::MAX) => v.push(code as u16),
            Codes::U32(v) => v.push(code),
            _ => {
                self.widen(code);
                self.push(code);
            }
        }
    }

    /// Rewrites the column in the narrowest width that holds `code` too.
    fn widen(&mut self, code: u32) {
        let old = std::mem::take(self);
        let capacity = old.len() + old.len() / 2 + 1;
        *self = if code <= u32::from(u16::MAX) {
            let mut v = Vec::with_capacity(capacity);
            v.extend(old.iter().map(|c| c as u16));
            Codes::U16(v)
        } else {
            let mut v = Vec::with_capacity(capacity);
            v.extend(old.iter());
            Codes::U32(v)
        };
    }

    pub fn len(&self) -> usize {
        match self {
            Codes::U8(v) => v.len(),
            Codes::U16(v) => v.len(),
            Codes::U32(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        (0..self.len()).map(move |i| self.get(i))
    }

    pub fn heap_bytes(&self) -> usize {
        match self {
            Codes::U8(v) => v.len(),
            Codes::U16(v) => v.len() * 2,
            Codes::U32(v) => v.len() * 4,
        }
    }
}

/// Equal when they hold the same codes, whatever their widths.
impl PartialEq for Codes {
    fn eq(&self, other: &Codes) -> bool {
        self.len() == other.len() && self.iter().eq(other.iter())
    }
}

impl FromIterator<u32> for Codes {
    fn from_iter<I: IntoIterator<Item = u32>>(iter: I) -> Codes {
        let iter = iter.into_iter();
        let mut codes = Codes::with_capacity(iter.size_hint().0);
        codes.extend(iter);
        codes
    }
}

impl Extend<u32> for Codes {
    /// One tight loop per width; a code too wide for it widens the column and the loop goes
    /// on in the new width.
    fn extend<I: IntoIterator<Item = u32>>(&mut self, iter: I) {
        let mut iter = iter.into_iter();
        loop {
            let wider = match self {
                Codes::U8(v) => push_while_fits(v, &mut iter),
                Codes::U16(v) => push_while_fits(v, &mut iter),
                Codes::U32(v) => {
                    v.extend(iter);
                    return;
                }
            };
            match wider {
                Some(code) => self.push(code),
                None => return,
            }
        }
    }
}

/// Pushes codes while they fit in `T`; hands back the first that does not.
fn push_while_fits<T: TryFrom<u32>>(
    v: &mut Vec<T>,
    iter: &mut impl Iterator<Item = u32>,
) -> Option<u32> {
    v.reserve(iter.size_hint().0);
    for code in iter {
        match T::try_from(code) {
            Ok(narrow) => v.push(narrow),
            Err(_) => return Some(code),
        }
    }
    None
}

impl From<Vec<u32>> for Codes {
    fn from(codes: Vec<u32>) -> Codes {
        codes.into_iter().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn codes_start_one_byte_wide_and_widen_only_when_a_code_needs_it() {
        let mut c = Codes::default();
        c.extend([0, 255]);
        assert!(matches!(c, Codes::U8(_)));
        c.push(256);
        assert!(matches!(c, Codes::U16(_)));
        c.push(70_000);
        assert!(matches!(c, Codes::U32(_)));
        assert_eq!(c.iter().collect::<Vec<_>>(), [0, 255, 256, 70_000]);
        assert_eq!(c.heap_bytes(), 16);
    }

    proptest! {
        #[test]
        fn codes_read_back_what_was_pushed(values in prop::collection::vec(
            prop_oneof![0u32..300, 0u32..70_000, any::<u32>()], 0..200)
        ) {
            let codes: Codes = values.iter().copied().collect();
            prop_assert_eq!(codes.len(), values.len());
            for (i, &v) in values.iter().enumerate() {
                prop_assert_eq!(codes.get(i), v);
            }
            prop_assert_eq!(codes, Codes::from(values));
        }
    }
}
