//! Journey analytics over columnar journeys.
