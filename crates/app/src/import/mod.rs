//! File readers: written next.
