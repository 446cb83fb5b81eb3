//! fraudops' compiled feature engine: the sliding velocity windows of the streaming feature
//! state (`fraudops.features.windows`), the consumer's hottest loop.
//!
//! `VelocityTable` keeps, per entity key, the count, sum and max of the entity's amounts over
//! each sliding window (t - w, t] and writes log1p of them into the caller's feature vector. It
//! is a drop-in for the pure-Python `PyVelocityTable`: the same operations on the same values
//! in the same order (integer cents, f64 `ln_1p`, which is C's `log1p` as Python's `math.log1p`
//! is), so the same floats; the same snapshot entries (`entry` / `load`), so a state written by
//! one engine restores in the other. The parity and property tests hold the two together.

use std::collections::{HashMap, VecDeque};

use pyo3::exceptions::{PyKeyError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyIterator, PyList};

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

    fn entry(&self) -> Entry {
        (
            self.times.iter().copied().collect(),
            self.cents.iter().copied().collect(),
            self.base,
            self.heads.clone(),
            self.sums.clone(),
            self.maxima.iter().map(|m| m.iter().copied().collect()).collect(),
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
            && maxima.iter().zip(&heads).all(|(m, &h)| {
                !m.is_empty() && m.iter().all(|&i| h <= i && i < end)
            });
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
        if widths.len() != slots.len() || widths.len() > MAX_WINDOWS || widths.iter().any(|&w| w <= 0)
        {
            return Err(PyValueError::new_err(
                "one (count, sum, max) slot triple per window, at most 8 windows, every width > 0",
            ));
        }
        Ok(VelocityTable { widths, slots, entries: HashMap::new() })
    }

    /// Record an event of entity `key` at `ts` (microseconds) for `cents`, write its window
    /// features into `vec` at the slots, and return the event's time clamped to the entity's
    /// watermark.
    fn add(&mut self, key: &str, ts: i64, cents: i64, vec: &Bound<'_, PyList>) -> PyResult<i64> {
        let windows = self.widths.len();
        let entity = match self.entries.get_mut(key) {
            Some(entity) => entity,
            None => self.entries.entry(key.to_owned()).or_insert_with(|| Windows::new(windows)),
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

    /// The snapshot entry of `key`: (times, cents, base, heads, sums, maxima).
    fn entry(&self, key: &str) -> PyResult<Entry> {
        match self.entries.get(key) {
            Some(entity) => Ok(entity.entry()),
            None => Err(PyKeyError::new_err(key.to_owned())),
        }
    }

    /// Put back a snapshot entry written by either engine.
    fn load(&mut self, key: String, values: Entry) -> PyResult<()> {
        let windows = Windows::from_entry(values, self.widths.len())?;
        self.entries.insert(key, windows);
        Ok(())
    }
}

#[pymodule]
fn fraudops_native(module: &Bound<'_, PyModule>) -> PyResult<()> {
    module.add_class::<VelocityTable>()?;
    Ok(())
}
