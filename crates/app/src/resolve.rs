//! Applies identity merges to columnar journeys. Events stay stored under their write-time
//! keys (one per primary identifier); the overlay maps each key that belongs to a larger
//! cluster to the cluster's canonical customer id, and this module regroups the columns so
//! that every analysis sees one customer per cluster, without rewriting stored data.

use omnitrail_model::journeys::{Codes, Dictionary, Journeys, Nums, PropertyColumn};
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
///
/// Built one column at a time, each taken out of `raw` once every partition has it: the
/// columns are held about once, plus one column twice, instead of all of them twice.
pub fn regroup(
    project: ProjectId,
    mut raw: Vec<Journeys>,
    overlay: &Overlay,
) -> Vec<Arc<Journeys>> {
    let partitions = raw.len() as u32;
    // Keys filed under another customer than their own sit in that customer's partition.
    let in_place = || {
        raw.iter().enumerate().all(|(p, j)| {
            j.customers
                .iter()
                .all(|&key| partition_of(project, key, partitions) as usize == p)
        })
    };
    if overlay.is_empty() && in_place() {
        return raw.into_iter().map(Arc::new).collect();
    }
    // Where each (canonical customer) gathers its pieces from: (partition, customer index).
    let mut pieces: Vec<Vec<(CustomerId, u32, u32)>> = vec![Vec::new(); raw.len()];
    for (p, j) in raw.iter().enumerate() {
        for (i, &key) in j.customers.iter().enumerate() {
            let canonical = overlay.get(&key).copied().unwrap_or(key);
            let target = partition_of(project, canonical, partitions) as usize;
            pieces[target].push((canonical, p as u32, i as u32));
        }
    }
    let layouts: Vec<Layout> = pieces
        .into_par_iter()
        .map(|mut list| {
            list.sort_unstable_by_key(|&(c, p, i)| (c, raw[p as usize].customers[i as usize]));
            Layout::new(&raw, &list)
        })
        .collect();

    let ts: Vec<Vec<i64>> = gather(&layouts, |l| l.rows(|p, e| raw[p].ts[e]));
    for j in &mut raw {
        j.ts = Vec::new();
    }
    let (activity, activities) = unzip(gather(&layouts, |l| recode_activity(l, &raw)));
    for j in &mut raw {
        (j.activity, j.activities) = Default::default();
    }
    let (channel, channels) = unzip(gather(&layouts, |l| {
        let mut dict = Dictionary::default();
        let mut remaps = Remaps::new(raw.iter().map(|j| j.channels.len()));
        let codes = l.rows(|p, e| {
            let j = &raw[p];
            let c = j.channel[e] as usize;
            remaps.code(p, c, || dict.code(&j.channels.values[c])) as u16
        });
        (codes, dict)
    }));
    for j in &mut raw {
        (j.channel, j.channels) = Default::default();
    }
    let properties = columns(&layouts, &mut raw, |j| &mut j.properties);
    let traits = columns(&layouts, &mut raw, |j| &mut j.traits);

    let mut columns = ts
        .into_iter()
        .zip(activity.into_iter().zip(activities))
        .zip(channel.into_iter().zip(channels))
        .zip(properties.into_iter().zip(traits));
    layouts
        .into_iter()
        .enumerate()
        .map(|(target, layout)| {
            let (((ts, (activity, activities)), (channel, channels)), (properties, traits)) =
                columns.next().expect("one set of columns per partition");
            Arc::new(Journeys {
                project,
                partition: target as u32,
                customers: layout.customers,
                offsets: layout.offsets,
                ts,
                activity,
                activities,
                channel,
                channels,
                properties,
                traits,
            })
        })
        .collect()
}

/// One target partition's customers and, in its order, where each of its events comes
/// from: runs of consecutive rows of one source partition, (partition, first row, rows).
/// Most customers are one run, and a merged one a few, so this costs far less than a
/// location per event.
struct Layout {
    customers: Vec<CustomerId>,
    offsets: Vec<u32>,
    runs: Vec<(u32, u32, u32)>,
}

impl Layout {
    /// From pieces sorted by (canonical customer, key): a cluster's pieces merged by time;
    /// the stable sort keeps key order among ties and each key's own arrival order.
    fn new(raw: &[Journeys], pieces: &[(CustomerId, u32, u32)]) -> Layout {
        let mut layout = Layout {
            customers: Vec::new(),
            offsets: vec![0],
            runs: Vec::new(),
        };
        let mut events = 0u32;
        let mut order: Vec<(i64, u32, u32)> = Vec::new();
        let mut start = 0;
        while start < pieces.len() {
            let customer = pieces[start].0;
            let end = start
                + pieces[start..]
                    .iter()
                    .take_while(|(c, _, _)| *c == customer)
                    .count();
            if end - start == 1 {
                let (_, p, i) = pieces[start];
                let range = raw[p as usize].customer_range(i as usize);
                layout.push_run(p, range.start as u32, range.len() as u32);
                events += range.len() as u32;
            } else {
                order.clear();
                for &(_, p, i) in &pieces[start..end] {
                    let j = &raw[p as usize];
                    order.extend(j.customer_range(i as usize).map(|e| (j.ts[e], p, e as u32)));
                }
                order.sort_by_key(|&(ts, _, _)| ts);
                for &(_, p, e) in &order {
                    layout.push_run(p, e, 1);
                }
                events += order.len() as u32;
            }
            layout.customers.push(customer);
            layout.offsets.push(events);
            start = end;
        }
        layout
    }

    /// Appends rows `first..first + len` of partition `p`, extending the last run when they
    /// follow it.
    fn push_run(&mut self, p: u32, first: u32, len: u32) {
        match self.runs.last_mut() {
            Some((lp, lfirst, llen)) if *lp == p && *lfirst + *llen == first => *llen += len,
            _ => self.runs.push((p, first, len)),
        }
    }

    /// One value per event, in order, from (source partition, row).
    fn rows<T>(&self, mut value: impl FnMut(usize, usize) -> T) -> Vec<T> {
        let mut out = Vec::with_capacity(self.events());
        for &(p, first, len) in &self.runs {
            out.extend((first..first + len).map(|e| value(p as usize, e as usize)));
        }
        out
    }

    fn events(&self) -> usize {
        *self.offsets.last().unwrap_or(&0) as usize
    }
}

/// `f` of every target partition, in parallel.
fn gather<T: Send>(layouts: &[Layout], f: impl Fn(&Layout) -> T + Sync) -> Vec<T> {
    layouts.par_iter().map(&f).collect()
}

fn unzip<A, B>(pairs: Vec<(A, B)>) -> (Vec<A>, Vec<B>) {
    pairs.into_iter().unzip()
}

/// The activity column gathered for one target, coded on first use so a partition's
/// dictionary holds only the values it uses.
fn recode_activity(layout: &Layout, raw: &[Journeys]) -> (Codes, Dictionary) {
    let mut dict = Dictionary::default();
    let mut remaps = Remaps::new(raw.iter().map(|j| j.activities.len()));
    let mut codes = Codes::with_capacity(layout.events());
    for &(p, first, len) in &layout.runs {
        let (p, j) = (p as usize, &raw[p as usize]);
        codes.extend((first..first + len).map(|e| {
            let c = j.activity.get(e as usize) as usize;
            remaps.code(p, c, || dict.code(&j.activities.values[c]))
        }));
    }
    (codes, dict)
}

/// Every property (or trait) column of `raw`, gathered per target partition, each taken
/// out of `raw` once gathered. Every partition of one scan has the same columns.
fn columns(
    layouts: &[Layout],
    raw: &mut [Journeys],
    pick: impl Fn(&mut Journeys) -> &mut BTreeMap<String, PropertyColumn>,
) -> Vec<BTreeMap<String, PropertyColumn>> {
    let mut out: Vec<BTreeMap<String, PropertyColumn>> = vec![BTreeMap::new(); layouts.len()];
    let Some(first) = raw.first_mut() else {
        return out;
    };
    let names: Vec<String> = pick(first).keys().cloned().collect();
    for name in names {
        let sources: Vec<PropertyColumn> = raw
            .iter_mut()
            .map(|j| {
                pick(j)
                    .remove(&name)
                    .expect("a column is in every partition of a scan")
            })
            .collect();
        let gathered = gather(layouts, |l| match &sources[0] {
            PropertyColumn::Num(_) => {
                let mut values = Nums::with_capacity(l.events());
                for &(p, first, len) in &l.runs {
                    let PropertyColumn::Num(source) = &sources[p as usize] else {
                        unreachable!("a column has one type in a scan")
                    };
                    values.extend((first..first + len).map(|e| source.get(e as usize)));
                }
                PropertyColumn::Num(values)
            }
            PropertyColumn::Text { .. } => {
                // Per source partition, source code → target code (0, missing, stays 0),
                // filled on first use so the target's dictionary holds what it uses.
                const UNSET: u32 = u32::MAX;
                let mut dict = Dictionary::default();
                let mut tables: Vec<Vec<u32>> = sources
                    .iter()
                    .map(|c| match c {
                        PropertyColumn::Text { dict, .. } => {
                            let mut t = vec![UNSET; dict.len() + 1];
                            t[0] = 0;
                            t
                        }
                        PropertyColumn::Num(_) => Vec::new(),
                    })
                    .collect();
                let mut codes = Codes::with_capacity(l.events());
                for &(p, first, len) in &l.runs {
                    let PropertyColumn::Text {
                        codes: source,
                        dict: source_dict,
                    } = &sources[p as usize]
                    else {
                        unreachable!("a column has one type in a scan")
                    };
                    let table = &mut tables[p as usize];
                    codes.extend((first..first + len).map(|e| {
                        let c = source.get(e as usize) as usize;
                        if table[c] == UNSET {
                            table[c] = dict.code(&source_dict.values[c - 1]) + 1;
                        }
                        table[c]
                    }));
                }
                PropertyColumn::Text { codes, dict }
            }
        });
        drop(sources);
        for (target, column) in out.iter_mut().zip(gathered) {
            target.insert(name.clone(), column);
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const PARTITIONS: u32 = 3;
    const P: ProjectId = ProjectId::DEFAULT;

    /// One event as an analysis sees it: time, activity, channel, a text and a number.
    type Row = (i64, String, String, Option<String>, Option<u64>);

    /// Journeys of `keys` (key → its events in arrival order) in their partitions.
    fn journeys(keys: &BTreeMap<u64, Vec<Row>>) -> Vec<Journeys> {
        (0..PARTITIONS)
            .map(|partition| {
                let mut j = Journeys {
                    project: P,
                    partition,
                    customers: Vec::new(),
                    offsets: vec![0],
                    ts: Vec::new(),
                    activity: Codes::default(),
                    activities: Dictionary::default(),
                    channel: Vec::new(),
                    channels: Dictionary::default(),
                    properties: BTreeMap::new(),
                    traits: BTreeMap::new(),
                };
                let (mut text, mut dict, mut num) =
                    (Codes::default(), Dictionary::default(), Nums::default());
                for (&key, rows) in keys {
                    if partition_of(P, CustomerId(key), PARTITIONS) != partition {
                        continue;
                    }
                    for (ts, activity, channel, t, n) in rows {
                        j.ts.push(*ts);
                        j.activity.push(j.activities.code(activity));
                        j.channel.push(j.channels.code(channel) as u16);
                        text.push(t.as_ref().map_or(0, |t| dict.code(t) + 1));
                        num.push(n.map_or(f64::NAN, |n| n as f64));
                    }
                    j.customers.push(CustomerId(key));
                    j.offsets.push(j.ts.len() as u32);
                }
                j.properties
                    .insert("topic".into(), PropertyColumn::Text { codes: text, dict });
                j.traits.insert("spend".into(), PropertyColumn::Num(num));
                j
            })
            .collect()
    }

    /// Per customer, in its partition, its rows.
    fn decoded(parts: &[Arc<Journeys>]) -> BTreeMap<u64, (u32, Vec<Row>)> {
        let mut out = BTreeMap::new();
        for j in parts {
            let (PropertyColumn::Text { codes, dict }, PropertyColumn::Num(num)) =
                (&j.properties["topic"], &j.traits["spend"])
            else {
                panic!("columns keep their types");
            };
            for (i, c) in j.customers.iter().enumerate() {
                let rows = j
                    .customer_range(i)
                    .map(|e| {
                        let code = codes.get(e) as usize;
                        let text = (code > 0).then(|| dict.values[code - 1].clone());
                        let n = (!num.get(e).is_nan()).then(|| num.get(e) as u64);
                        let (a, ch) = (j.activity.get(e) as usize, j.channel[e] as usize);
                        (
                            j.ts[e],
                            j.activities.values[a].clone(),
                            j.channels.values[ch].clone(),
                            text,
                            n,
                        )
                    })
                    .collect();
                assert!(out.insert(c.0, (j.partition, rows)).is_none(), "{c} twice");
            }
        }
        out
    }

    fn row() -> impl Strategy<Value = Row> {
        (
            0i64..6,
            prop::sample::select(vec!["view", "cart", "buy"]),
            prop::sample::select(vec!["web", "app", "phone"]),
            prop::option::of(prop::sample::select(vec!["billing", "delivery"])),
            prop::option::of(0u64..100),
        )
            .prop_map(|(ts, a, c, t, n)| (ts, a.into(), c.into(), t.map(String::from), n))
    }

    proptest! {
        #[test]
        fn regroup_equals_merging_each_clusters_events_by_time(
            keys in prop::collection::btree_map(1u64..40, prop::collection::vec(row(), 1..5), 1..25)
                // A key's journey is in time order, ties in arrival order.
                .prop_map(|mut keys| {
                    keys.values_mut().for_each(|rows| rows.sort_by_key(|r| r.0));
                    keys
                }),
            groups in prop::collection::vec(0usize..6, 25),
        ) {
            // Keys in the same group form one cluster; its canonical id is its smallest key.
            let mut clusters: BTreeMap<usize, Vec<u64>> = BTreeMap::new();
            for (i, &key) in keys.keys().enumerate() {
                clusters.entry(groups[i % groups.len()]).or_default().push(key);
            }
            let mut overlay = Overlay::new();
            let mut expected = BTreeMap::new();
            for members in clusters.values() {
                let canonical = members[0];
                for &k in &members[1..] {
                    overlay.insert(CustomerId(k), CustomerId(canonical));
                }
                // Key order, then each key's arrival order; a stable sort by time.
                let mut rows: Vec<Row> = members.iter().flat_map(|k| keys[k].clone()).collect();
                rows.sort_by_key(|r| r.0);
                let partition = partition_of(P, CustomerId(canonical), PARTITIONS);
                expected.insert(canonical, (partition, rows));
            }
            let parts = regroup(P, journeys(&keys), &overlay);
            prop_assert_eq!(parts.len(), PARTITIONS as usize);
            prop_assert_eq!(decoded(&parts), expected);
        }
    }
}
