//! Applies identity merges to columnar journeys. Events stay stored under their write-time
//! keys (one per primary identifier); the overlay maps each key that belongs to a larger
//! cluster to the cluster's canonical customer id, and this module regroups the columns so
//! that every analysis sees one customer per cluster, without rewriting stored data.

use omnitrail_model::journeys::{Dictionary, Journeys, PropertyColumn};
use omnitrail_model::{CustomerId, ProjectId};
use omnitrail_store::partition_of;
use rayon::prelude::*;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// Write-time key → canonical customer id, only for keys that differ.
pub type Overlay = HashMap<CustomerId, CustomerId>;

/// The journeys of `raw` (one value per partition, in partition order) with every key
/// replaced by its canonical customer: a cluster's events are merged into one journey in
/// time order, in the partition of the canonical id. Events at the same microsecond under
/// different keys are ordered by key (arrival order is only known within a key).
pub fn regroup(project: ProjectId, raw: &[Arc<Journeys>], overlay: &Overlay) -> Vec<Arc<Journeys>> {
    if overlay.is_empty() {
        return raw.to_vec();
    }
    let partitions = raw.len() as u32;
    // Where each (canonical customer) gathers its pieces from: (partition, customer index).
    let mut pieces: Vec<Vec<(CustomerId, u32, u32)>> = vec![Vec::new(); raw.len()];
    for (p, j) in raw.iter().enumerate() {
        for (i, &key) in j.customers.iter().enumerate() {
            let canonical = overlay.get(&key).copied().unwrap_or(key);
            let target = partition_of(project, canonical, partitions) as usize;
            pieces[target].push((canonical, p as u32, i as u32));
        }
    }
    pieces
        .into_par_iter()
        .enumerate()
        .map(|(target, mut list)| {
            list.sort_unstable_by_key(|&(c, p, i)| (c, raw[p as usize].customers[i as usize]));
            Arc::new(build(project, target as u32, raw, &list))
        })
        .collect()
}

/// One partition from pieces sorted by (canonical customer, key).
fn build(
    project: ProjectId,
    partition: u32,
    raw: &[Arc<Journeys>],
    pieces: &[(CustomerId, u32, u32)],
) -> Journeys {
    let mut out = Journeys {
        project,
        partition,
        customers: Vec::new(),
        offsets: vec![0],
        ts: Vec::new(),
        activity: Vec::new(),
        activities: Dictionary::default(),
        channel: Vec::new(),
        channels: Dictionary::default(),
        properties: BTreeMap::new(),
        traits: BTreeMap::new(),
    };
    let Some(first) = raw.first() else {
        return out;
    };
    // Per source partition, its dictionary codes translated into this partition's, coded
    // on first use so a partition's dictionaries hold only the values it uses.
    let mut activity_codes = Remaps::new(raw.iter().map(|j| j.activities.len()));
    let mut channel_codes = Remaps::new(raw.iter().map(|j| j.channels.len()));
    let mut properties = Columns::new(&first.properties, raw, |j| &j.properties);
    let mut traits = Columns::new(&first.traits, raw, |j| &j.traits);

    let mut order: Vec<(i64, usize, usize)> = Vec::new();
    let mut start = 0;
    while start < pieces.len() {
        let customer = pieces[start].0;
        let end = start
            + pieces[start..]
                .iter()
                .take_while(|(c, _, _)| *c == customer)
                .count();
        // Merge the cluster's pieces by time; the stable sort keeps key order among ties
        // and each key's own arrival order.
        order.clear();
        for &(_, p, i) in &pieces[start..end] {
            let j = &raw[p as usize];
            order.extend(
                j.customer_range(i as usize)
                    .map(|e| (j.ts[e], p as usize, e)),
            );
        }
        if end - start > 1 {
            order.sort_by_key(|&(ts, _, _)| ts);
        }
        for &(ts, p, e) in &order {
            let j = &raw[p];
            out.ts.push(ts);
            let a = j.activity[e] as usize;
            out.activity
                .push(activity_codes.code(p, a, || out.activities.code(&j.activities.values[a])));
            let c = j.channel[e] as usize;
            out.channel
                .push(channel_codes.code(p, c, || out.channels.code(&j.channels.values[c])) as u16);
            properties.push(p, e);
            traits.push(p, e);
        }
        out.customers.push(customer);
        out.offsets.push(out.ts.len() as u32);
        start = end;
    }
    out.properties = properties.finish();
    out.traits = traits.finish();
    out
}

/// Source dictionary code → target code, per source partition, filled on first use.
struct Remaps(Vec<Vec<u32>>);

impl Remaps {
    const UNSET: u32 = u32::MAX;

    fn new(sizes: impl Iterator<Item = usize>) -> Remaps {
        Remaps(sizes.map(|n| vec![Self::UNSET; n]).collect())
    }

    fn code(&mut self, partition: usize, code: usize, new: impl FnOnce() -> u32) -> u32 {
        let slot = &mut self.0[partition][code];
        if *slot == Self::UNSET {
            *slot = new();
        }
        *slot
    }
}

/// Property (or trait) columns being gathered from several partitions.
struct Columns<'a> {
    /// Per column, each source partition's column.
    sources: Vec<Vec<&'a PropertyColumn>>,
    /// Per column: name, the column being built, and for text columns the code remaps.
    out: Vec<(String, PropertyColumn, Remaps)>,
}

impl<'a> Columns<'a> {
    fn new(
        names: &BTreeMap<String, PropertyColumn>,
        raw: &'a [Arc<Journeys>],
        pick: impl Fn(&'a Journeys) -> &'a BTreeMap<String, PropertyColumn>,
    ) -> Columns<'a> {
        let mut sources = Vec::new();
        let mut out = Vec::new();
        for (name, shape) in names {
            let cols: Vec<&PropertyColumn> = raw.iter().map(|j| &pick(j)[name]).collect();
            let remaps = Remaps::new(cols.iter().map(|c| match c {
                PropertyColumn::Text { dict, .. } => dict.len(),
                PropertyColumn::Num(_) => 0,
            }));
            let col = match shape {
                PropertyColumn::Num(_) => PropertyColumn::Num(Vec::new()),
                PropertyColumn::Text { .. } => PropertyColumn::Text {
                    codes: Vec::new(),
                    dict: Dictionary::default(),
                },
            };
            sources.push(cols);
            out.push((name.clone(), col, remaps));
        }
        Columns { sources, out }
    }

    fn push(&mut self, p: usize, e: usize) {
        for (k, (_, col, remaps)) in self.out.iter_mut().enumerate() {
            match (col, self.sources[k][p]) {
                (PropertyColumn::Num(v), PropertyColumn::Num(src)) => v.push(src[e]),
                (
                    PropertyColumn::Text { codes, dict },
                    PropertyColumn::Text {
                        codes: src,
                        dict: src_dict,
                    },
                ) => {
                    let c = src[e] as usize;
                    codes.push(if c == 0 {
                        0
                    } else {
                        remaps.code(p, c - 1, || dict.code(&src_dict.values[c - 1])) + 1
                    });
                }
                _ => unreachable!("a column has one type in every partition of one scan"),
            }
        }
    }

    fn finish(self) -> BTreeMap<String, PropertyColumn> {
        self.out
            .into_iter()
            .map(|(name, col, _)| (name, col))
            .collect()
    }
}
