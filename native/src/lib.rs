//! fraudops' compiled feature engine: the per-entity tables of the streaming feature state
//! (`fraudops.features.engine`), the consumer's hottest code.
//!
//! `VelocityTable` keeps, per entity key, the count, sum and max of the entity's amounts over
//! each sliding window (t - w, t] and writes log1p of them into the caller's feature vector;
//! `AccountTable` keeps each account's novelty sets, amount statistics and last-K feature
//! history. Each is a drop-in for its pure-Python twin (`PyVelocityTable`, `PyAccountTable`):
//! the same operations on the same values in the same order (integer cents, f64 arithmetic,
//! `ln_1p`, which is C's `log1p` as Python's `math.log1p` is), so the same floats; the same
//! snapshot entries (`entry` / `load`), so a state written by one engine restores in the other.
//! The parity and property tests hold each pair together.

mod pickle;

use std::collections::{HashMap, HashSet, VecDeque};
use std::mem::size_of;

use pyo3::exceptions::{PyKeyError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyBytes, PyIterator, PyList, PyTuple};

use crate::pickle::Pickler;

const MAX_WINDOWS: usize = 8;

/// One entity's windows. Events are kept from the widest window's oldest on; indices are
/// absolute (the index of `times[0]` is `base`), as in the snapshot entries.
struct Windows {
    times: VecDeque<i64>,
    cents: VecDeque<i64>,
    base: i64,
    /// Absolute index of each window's oldest event.
    heads: Vec<i64>,
    sums: Vec<i64>,
    /// Per window, the absolute indices of the events that can still be its maximum
    /// (amounts decreasing from front to back).
    maxima: Vec<VecDeque<i64>>,
}

/// A snapshot entry: (times, cents, base, heads, sums, maxima), plain lists and ints.
type Entry = (Vec<i64>, Vec<i64>, i64, Vec<i64>, Vec<i64>, Vec<Vec<i64>>);

impl Windows {
    fn new(windows: usize) -> Self {
        Windows {
            times: VecDeque::new(),
            cents: VecDeque::new(),
            base: 0,
            heads: vec![0; windows],
            sums: vec![0; windows],
            maxima: vec![VecDeque::new(); windows],
        }
    }

    /// Record an event (clamped to the entity's watermark, the event-time policy) and return
    /// its time and log1p(count, sum / 100, max / 100) per window.
    fn add(&mut self, ts: i64, cents: i64, widths: &[i64], out: &mut [[f64; 3]]) -> i64 {
        let ts = match self.times.back() {
            Some(&last) if ts < last => last,
            _ => ts,
        };
        self.times.push_back(ts);
        self.cents.push_back(cents);
        let base = self.base;
        let newest = base + self.times.len() as i64 - 1;
        for (w, &width) in widths.iter().enumerate() {
            let mut head = self.heads[w];
            let mut total = self.sums[w] + cents;
            let horizon = ts - width;
            while self.times[(head - base) as usize] <= horizon {
                total -= self.cents[(head - base) as usize];
                head += 1;
            }
            let maxima = &mut self.maxima[w];
            while let Some(&last) = maxima.back() {
                if self.cents[(last - base) as usize] <= cents {
                    maxima.pop_back();
                } else {
                    break;
                }
            }
            maxima.push_back(newest);
            while maxima[0] < head {
                maxima.pop_front();
            }
            self.heads[w] = head;
            self.sums[w] = total;
            let max = self.cents[(maxima[0] - base) as usize];
            out[w] = [
                ((newest - head + 1) as f64).ln_1p(),
                (total as f64 / 100.0).ln_1p(),
                (max as f64 / 100.0).ln_1p(),
            ];
        }
        // Events that left every window go now (the Python engine drops them now and then:
        // its snapshot entries leave them out, so both write the same entries).
        let oldest = self.heads.iter().copied().min().unwrap_or(self.base);
        while self.base < oldest {
            self.times.pop_front();
            self.cents.pop_front();
            self.base += 1;
        }
        ts
    }

    /// `entry`, pickled (see `pickle`).
    fn dump(&self) -> Vec<u8> {
        let mut out = Pickler::new(10 * (self.times.len() + self.cents.len()) + 128);
        out.mark();
        out.ints(self.times.iter().copied());
        out.ints(self.cents.iter().copied());
        out.int(self.base);
        out.ints(self.heads.iter().copied());
        out.ints(self.sums.iter().copied());
        out.list_start();
        for maxima in &self.maxima {
            out.ints(maxima.iter().copied());
        }
        out.list_end();
        out.tuple();
        out.finish()
    }

    fn entry(&self) -> Entry {
        (
            self.times.iter().copied().collect(),
            self.cents.iter().copied().collect(),
            self.base,
            self.heads.clone(),
            self.sums.clone(),
            self.maxima
                .iter()
                .map(|m| m.iter().copied().collect())
                .collect(),
        )
    }

    fn from_entry(entry: Entry, windows: usize) -> PyResult<Self> {
        let (times, cents, base, heads, sums, maxima) = entry;
        let end = base + times.len() as i64;
        let valid = times.len() == cents.len()
            && !times.is_empty()
            && times.windows(2).all(|pair| pair[0] <= pair[1])
            && heads.len() == windows
            && sums.len() == windows
            && maxima.len() == windows
            && heads.iter().all(|&h| base <= h && h < end)
            && maxima
                .iter()
                .zip(&heads)
                .all(|(m, &h)| !m.is_empty() && m.iter().all(|&i| h <= i && i < end));
        if !valid {
            return Err(PyValueError::new_err("not a velocity windows entry"));
        }
        let mut loaded = Windows {
            times: times.into(),
            cents: cents.into(),
            base,
            heads,
            sums,
            maxima: maxima.into_iter().map(VecDeque::from).collect(),
        };
        let oldest = loaded.heads.iter().copied().min().unwrap_or(base);
        while loaded.base < oldest {
            loaded.times.pop_front();
            loaded.cents.pop_front();
            loaded.base += 1;
        }
        Ok(loaded)
    }
}

/// The velocity windows of one entity kind (accounts, merchants or devices), by key.
///
/// `widths`: the windows in microseconds; `slots`: per window, the feature-vector positions
/// of (count, sum, max).
#[pyclass(module = "fraudops_native")]
pub struct VelocityTable {
    widths: Vec<i64>,
    slots: Vec<[usize; 3]>,
    entries: HashMap<String, Windows>,
}

#[pymethods]
impl VelocityTable {
    #[new]
    fn new(widths: Vec<i64>, slots: Vec<[usize; 3]>) -> PyResult<Self> {
        if widths.len() != slots.len()
            || widths.len() > MAX_WINDOWS
            || widths.iter().any(|&w| w <= 0)
        {
            return Err(PyValueError::new_err(
                "one (count, sum, max) slot triple per window, at most 8 windows, every width > 0",
            ));
        }
        Ok(VelocityTable {
            widths,
            slots,
            entries: HashMap::new(),
        })
    }

    /// Record an event of entity `key` at `ts` (microseconds) for `cents`, write its window
    /// features into `vec` at the slots, and return the event's time clamped to the entity's
    /// watermark.
    fn add(&mut self, key: &str, ts: i64, cents: i64, vec: &Bound<'_, PyList>) -> PyResult<i64> {
        let windows = self.widths.len();
        let entity = match self.entries.get_mut(key) {
            Some(entity) => entity,
            None => self
                .entries
                .entry(key.to_owned())
                .or_insert_with(|| Windows::new(windows)),
        };
        let mut out = [[0.0f64; 3]; MAX_WINDOWS];
        let out = &mut out[..windows];
        let clamped = entity.add(ts, cents, &self.widths, out);
        for (values, slots) in out.iter().zip(&self.slots) {
            for (&value, &slot) in values.iter().zip(slots) {
                vec.set_item(slot, value)?;
            }
        }
        Ok(clamped)
    }

    fn __len__(&self) -> usize {
        self.entries.len()
    }

    fn __contains__(&self, key: &str) -> bool {
        self.entries.contains_key(key)
    }

    /// The keys with windows.
    fn __iter__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyIterator>> {
        PyList::new(py, self.entries.keys())?.try_iter()
    }

    /// Bytes the table holds outside Python's allocator (which tracemalloc cannot see): the
    /// map's slots and every key's and entry's buffers, by capacity.
    fn nbytes(&self) -> usize {
        let slot = size_of::<String>() + size_of::<Windows>() + 1;
        self.entries.capacity() * slot
            + self
                .entries
                .iter()
                .map(|(key, w)| {
                    key.capacity()
                        + (w.times.capacity() + w.cents.capacity()) * size_of::<i64>()
                        + (w.heads.capacity() + w.sums.capacity()) * size_of::<i64>()
                        + w.maxima.capacity() * size_of::<VecDeque<i64>>()
                        + w.maxima
                            .iter()
                            .map(|m| m.capacity() * size_of::<i64>())
                            .sum::<usize>()
                })
                .sum::<usize>()
    }

    /// The snapshot entry of `key`: (times, cents, base, heads, sums, maxima).
    fn entry(&self, key: &str) -> PyResult<Entry> {
        match self.entries.get(key) {
            Some(entity) => Ok(entity.entry()),
            None => Err(PyKeyError::new_err(key.to_owned())),
        }
    }

    /// The snapshot entries of `keys`, pickled: `pickle.loads` of each gives its `entry`.
    fn dump<'py>(&self, py: Python<'py>, keys: Vec<String>) -> PyResult<Vec<Bound<'py, PyBytes>>> {
        dump_keys(py, &self.entries, &keys, Windows::dump)
    }

    /// Put back a snapshot entry written by either engine.
    fn load(&mut self, key: String, values: Entry) -> PyResult<()> {
        let windows = Windows::from_entry(values, self.widths.len())?;
        self.entries.insert(key, windows);
        Ok(())
    }
}

/// What the stream remembers about one account.
struct Account {
    /// Per novelty field (merchant, device, country), the values the account used.
    seen: [HashSet<String>; 3],
    last_ts: Option<i64>,
    n: i64,
    sum: f64,
    sumsq: f64,
    /// The last K feature vectors, oldest first ([K, F] float32, row-major).
    history: Vec<f32>,
    filled: usize,
}

/// An account's snapshot entry as `load` takes it: (seen sets, last_ts, n, sum, sumsq, history
/// as float32 bytes, its shape, filled).
type AccountEntry<'py> = (
    (HashSet<String>, HashSet<String>, HashSet<String>),
    Option<i64>,
    i64,
    f64,
    f64,
    &'py [u8],
    (usize, usize),
    usize,
);

/// Feature-vector positions of the account features.
struct AccountSlots {
    novelty: [usize; 3],
    first_seen: usize,
    gap: usize,
    history: usize,
    z: usize,
    diff: usize,
}

/// The accounts' state by account id: novelty, gap, history length, amount z-score and
/// difference to the mean, and the last-K feature history.
///
/// `slots`: positions of (new merchant, new device, new country, first seen, gap, history
/// length, amount z, amount difference); `z_clip`, `z_floor`: the z-score's clip and variance
/// floor.
#[pyclass(module = "fraudops_native")]
pub struct AccountTable {
    seq_len: usize,
    dim: usize,
    slots: AccountSlots,
    z_clip: f64,
    z_floor: f64,
    entries: HashMap<String, Account>,
}

impl AccountTable {
    fn account(&mut self, key: &str) -> &mut Account {
        let size = self.seq_len * self.dim;
        if !self.entries.contains_key(key) {
            self.entries.insert(
                key.to_owned(),
                Account {
                    seen: Default::default(),
                    last_ts: None,
                    n: 0,
                    sum: 0.0,
                    sumsq: 0.0,
                    history: vec![0.0; size],
                    filled: 0,
                },
            );
        }
        self.entries.get_mut(key).expect("inserted above")
    }

    /// `entry`, pickled (see `pickle`).
    fn dump_account(&self, account: &Account) -> Vec<u8> {
        let history = as_bytes(&account.history);
        let names = account.seen.iter().map(HashSet::len).sum::<usize>();
        let mut out = Pickler::new(history.len() + 64 * names + 128);
        out.mark();
        out.mark();
        for seen in &account.seen {
            out.strs(seen);
        }
        out.tuple();
        match account.last_ts {
            Some(ts) => out.int(ts),
            None => out.none(),
        }
        out.int(account.n);
        out.float(account.sum);
        out.float(account.sumsq);
        out.bytes(history);
        out.mark();
        out.int(self.seq_len as i64);
        out.int(self.dim as i64);
        out.tuple();
        out.int(account.filled as i64);
        out.tuple();
        out.finish()
    }
}

#[pymethods]
impl AccountTable {
    #[new]
    fn new(
        seq_len: usize,
        dim: usize,
        slots: [usize; 8],
        z_clip: f64,
        z_floor: f64,
    ) -> PyResult<Self> {
        if seq_len == 0 || slots.iter().any(|&s| s >= dim) {
            return Err(PyValueError::new_err(
                "seq_len must be > 0 and every slot below dim",
            ));
        }
        let slots = AccountSlots {
            novelty: [slots[0], slots[1], slots[2]],
            first_seen: slots[3],
            gap: slots[4],
            history: slots[5],
            z: slots[6],
            diff: slots[7],
        };
        Ok(AccountTable {
            seq_len,
            dim,
            slots,
            z_clip,
            z_floor,
            entries: HashMap::new(),
        })
    }

    /// Apply an event of account `key` at `ts` (microseconds) with `log_amount` and its
    /// (merchant, device, country) to the account's statistics and write its account features
    /// into `vec`. A late event's time is clamped to the account's watermark.
    fn features(
        &mut self,
        key: &str,
        ts: i64,
        log_amount: f64,
        novelty: (Option<&str>, Option<&str>, Option<&str>),
        vec: &Bound<'_, PyList>,
    ) -> PyResult<()> {
        let (z_clip, z_floor) = (self.z_clip, self.z_floor);
        let slots = [
            self.slots.novelty[0],
            self.slots.novelty[1],
            self.slots.novelty[2],
            self.slots.first_seen,
            self.slots.gap,
            self.slots.history,
            self.slots.z,
            self.slots.diff,
        ];
        let account = self.account(key);
        for (i, value) in [novelty.0, novelty.1, novelty.2].into_iter().enumerate() {
            if let Some(value) = value {
                if !account.seen[i].contains(value) {
                    account.seen[i].insert(value.to_owned());
                    vec.set_item(slots[i], 1.0)?;
                }
            }
        }
        let (first, ts) = match account.last_ts {
            None => (true, ts),
            Some(last) => (false, ts.max(last)),
        };
        let gap = match account.last_ts {
            None => 0.0,
            Some(last) => ((ts - last) as f64 / 1e6).ln_1p(),
        };
        let (z, diff) = amount_z(
            log_amount,
            account.n,
            account.sum,
            account.sumsq,
            z_clip,
            z_floor,
        );
        vec.set_item(slots[3], if first { 1.0 } else { 0.0 })?;
        vec.set_item(slots[4], gap)?;
        vec.set_item(slots[5], (account.n as f64).ln_1p())?;
        vec.set_item(slots[6], z)?;
        vec.set_item(slots[7], diff)?;
        account.last_ts = Some(ts);
        account.n += 1;
        account.sum += log_amount;
        account.sumsq += log_amount * log_amount;
        Ok(())
    }

    /// Append the event's feature vector `vec` (F floats, stored as float32) to the account's
    /// history and return the history after it ([K, F] float32, oldest first, front-padded with
    /// zeros: a fresh bytearray) and how many rows are filled.
    fn push<'py>(
        &mut self,
        py: Python<'py>,
        key: &str,
        vec: &Bound<'py, PyList>,
    ) -> PyResult<(Bound<'py, PyByteArray>, usize)> {
        let dim = self.dim;
        if vec.len() != dim {
            return Err(PyValueError::new_err(format!(
                "a feature vector has {dim} values"
            )));
        }
        let mut row = Vec::with_capacity(dim);
        for value in vec.iter() {
            row.push(value.extract::<f64>()? as f32);
        }
        let seq_len = self.seq_len;
        let account = self.account(key);
        account.history.copy_within(dim.., 0);
        account.history[(seq_len - 1) * dim..].copy_from_slice(&row);
        account.filled = (account.filled + 1).min(seq_len);
        Ok((
            PyByteArray::new(py, as_bytes(&account.history)),
            account.filled,
        ))
    }

    /// The account's latest event time (None: no event yet, or an unknown account).
    fn last_ts(&self, key: &str) -> Option<i64> {
        self.entries.get(key).and_then(|account| account.last_ts)
    }

    fn __len__(&self) -> usize {
        self.entries.len()
    }

    fn __contains__(&self, key: &str) -> bool {
        self.entries.contains_key(key)
    }

    /// The account ids with state.
    fn __iter__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyIterator>> {
        PyList::new(py, self.entries.keys())?.try_iter()
    }

    /// Bytes the table holds outside Python's allocator (which tracemalloc cannot see): the
    /// map's slots and every key's, history's and novelty set's buffers, by capacity.
    fn nbytes(&self) -> usize {
        let slot = size_of::<String>() + size_of::<Account>() + 1;
        self.entries.capacity() * slot
            + self
                .entries
                .iter()
                .map(|(key, a)| {
                    key.capacity()
                        + a.history.capacity() * size_of::<f32>()
                        + a.seen
                            .iter()
                            .map(|set| {
                                set.capacity() * (size_of::<String>() + 1)
                                    + set.iter().map(String::capacity).sum::<usize>()
                            })
                            .sum::<usize>()
                })
                .sum::<usize>()
    }

    /// The snapshot entry of `key`: (seen sets, last_ts, n, sum, sumsq, history bytes, shape,
    /// filled).
    fn entry<'py>(&self, py: Python<'py>, key: &str) -> PyResult<Bound<'py, PyTuple>> {
        let account = self
            .entries
            .get(key)
            .ok_or_else(|| PyKeyError::new_err(key.to_owned()))?;
        let seen = (
            account.seen[0].clone(),
            account.seen[1].clone(),
            account.seen[2].clone(),
        );
        (
            seen,
            account.last_ts,
            account.n,
            account.sum,
            account.sumsq,
            PyBytes::new(py, as_bytes(&account.history)),
            (self.seq_len, self.dim),
            account.filled,
        )
            .into_pyobject(py)
    }

    /// The snapshot entries of `keys`, pickled: `pickle.loads` of each gives its `entry`.
    fn dump<'py>(&self, py: Python<'py>, keys: Vec<String>) -> PyResult<Vec<Bound<'py, PyBytes>>> {
        dump_keys(py, &self.entries, &keys, |account| {
            self.dump_account(account)
        })
    }

    /// Put back a snapshot entry written by either engine.
    fn load(&mut self, key: String, values: AccountEntry<'_>) -> PyResult<()> {
        let (seen, last_ts, n, sum, sumsq, history, shape, filled) = values;
        if shape != (self.seq_len, self.dim)
            || history.len() != self.seq_len * self.dim * 4
            || filled > self.seq_len
            || n < 0
        {
            return Err(PyValueError::new_err(format!(
                "not an account entry of shape ({}, {})",
                self.seq_len, self.dim
            )));
        }
        let history = history
            .chunks_exact(4)
            .map(|b| f32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        let account = Account {
            seen: [seen.0, seen.1, seen.2],
            last_ts,
            n,
            sum,
            sumsq,
            history,
            filled,
        };
        self.entries.insert(key, account);
        Ok(())
    }
}

/// The amount (log) against the account's previous amounts: (z-score, difference to the mean),
/// the operations of `fraudops.features.online._amount_z` in its order.
fn amount_z(
    log_amount: f64,
    n: i64,
    total: f64,
    total_sq: f64,
    clip: f64,
    floor: f64,
) -> (f64, f64) {
    if n == 0 {
        return (0.0, 0.0);
    }
    let mean = total / n as f64;
    let diff = log_amount - mean;
    if n < 2 {
        return (0.0, diff);
    }
    let var = (total_sq / n as f64 - mean * mean).max(0.0);
    ((diff / (var + floor).sqrt()).min(clip).max(-clip), diff)
}

/// The pickled entries of `keys` (`dump`), a KeyError for a key without state.
fn dump_keys<'py, T>(
    py: Python<'py>,
    entries: &HashMap<String, T>,
    keys: &[String],
    dump: impl Fn(&T) -> Vec<u8>,
) -> PyResult<Vec<Bound<'py, PyBytes>>> {
    keys.iter()
        .map(|key| match entries.get(key) {
            Some(entry) => Ok(PyBytes::new(py, &dump(entry))),
            None => Err(PyKeyError::new_err(key.clone())),
        })
        .collect()
}

fn as_bytes(values: &[f32]) -> &[u8] {
    // SAFETY: f32 has no padding and any byte is a valid u8; the slice covers the same memory.
    unsafe {
        std::slice::from_raw_parts(values.as_ptr().cast::<u8>(), std::mem::size_of_val(values))
    }
}

#[pymodule]
fn fraudops_native(module: &Bound<'_, PyModule>) -> PyResult<()> {
    module.add_class::<VelocityTable>()?;
    module.add_class::<AccountTable>()?;
    Ok(())
}
