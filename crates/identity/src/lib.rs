//! The identity graph.
