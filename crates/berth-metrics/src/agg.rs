//! The unit the store keeps per series and interval: count, sum, min, max and a sparse
//! log-bucketed histogram of the values. Every statistic of the contract comes out of it, and two
//! of them merge exactly (counts and sums add, min/max compare, buckets add), so downsampling and
//! merging series lose nothing but the position of a value inside its bucket. Pure, no I/O.

use std::collections::BTreeMap;

/// Buckets per power of two: a bucket is 2^(1/8) ≈ 9% wide, so a percentile is within ~4.5% of
/// the true value (then clamped to the period's min and max, exact when they are equal).
const SUB_BUCKETS: f64 = 8.0;
/// Bucket exponents are clamped to ±this (2^±256 covers every value worth storing).
const MAX_EXPONENT: i32 = 2047;

/// The histogram key of `value`: 0 for 0, positive keys for positive values, negative for
/// negative ones, ordered like the values they stand for.
pub fn bucket_key(value: f64) -> i32 {
    if value == 0.0 || !value.is_finite() {
        return 0;
    }
    let b = (value.abs().log2() * SUB_BUCKETS).floor() as i64;
    let b = b.clamp(-(MAX_EXPONENT as i64) - 1, MAX_EXPONENT as i64) as i32;
    let magnitude = 1 + b + MAX_EXPONENT + 1; // 1..=2*MAX+2
    if value > 0.0 {
        magnitude
    } else {
        -magnitude
    }
}

/// The value a bucket stands for: its geometric middle.
pub fn bucket_value(key: i32) -> f64 {
    if key == 0 {
        return 0.0;
    }
    let b = key.abs() - 1 - MAX_EXPONENT - 1;
    let v = ((b as f64 + 0.5) / SUB_BUCKETS).exp2();
    if key > 0 {
        v
    } else {
        -v
    }
}

/// Datapoints of one series (or several merged) over one interval.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Agg {
    /// Values observed (a histogram observation counts each of its values).
    pub count: u64,
    pub sum: f64,
    pub min: f64,
    pub max: f64,
    /// Bucket key → how many values fell in it.
    pub hist: BTreeMap<i32, u64>,
}

impl Agg {
    /// One value.
    pub fn value(v: f64) -> Agg {
        let mut agg = Agg::default();
        agg.add(v, 1);
        agg
    }

    /// `count` values equal to `v` (non-finite values are ignored).
    pub fn add(&mut self, v: f64, count: u64) {
        if count == 0 || !v.is_finite() {
            return;
        }
        if self.count == 0 {
            self.min = v;
            self.max = v;
        } else {
            self.min = self.min.min(v);
            self.max = self.max.max(v);
        }
        self.count += count;
        self.sum += v * count as f64;
        *self.hist.entry(bucket_key(v)).or_insert(0) += count;
    }

    /// Adds everything `other` holds.
    pub fn merge(&mut self, other: &Agg) {
        if other.count == 0 {
            return;
        }
        if self.count == 0 {
            self.min = other.min;
            self.max = other.max;
        } else {
            self.min = self.min.min(other.min);
            self.max = self.max.max(other.max);
        }
        self.count += other.count;
        self.sum += other.sum;
        for (k, n) in &other.hist {
            *self.hist.entry(*k).or_insert(0) += n;
        }
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The mean; None when empty.
    pub fn avg(&self) -> Option<f64> {
        (self.count > 0).then(|| self.sum / self.count as f64)
    }

    /// The `q` quantile (0-1), as its bucket's middle clamped to [min, max]; None when empty.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let total: u64 = self.hist.values().sum();
        if self.count == 0 || total == 0 {
            return None;
        }
        let rank = ((total as f64) * q.clamp(0.0, 1.0)).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (k, n) in &self.hist {
            seen += n;
            if seen >= rank {
                return Some(bucket_value(*k).clamp(self.min, self.max));
            }
        }
        Some(self.max)
    }

    /// The histogram as stored: per bucket, the key (4 bytes LE) then the count (LEB128).
    pub fn encode_hist(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.hist.len() * 5);
        for (k, n) in &self.hist {
            out.extend_from_slice(&k.to_le_bytes());
            let mut n = *n;
            loop {
                let byte = (n & 0x7f) as u8;
                n >>= 7;
                if n == 0 {
                    out.push(byte);
                    break;
                }
                out.push(byte | 0x80);
            }
        }
        out
    }

    /// Reads [`Agg::encode_hist`]'s bytes; None when they are malformed.
    pub fn decode_hist(mut bytes: &[u8]) -> Option<BTreeMap<i32, u64>> {
        let mut hist = BTreeMap::new();
        while !bytes.is_empty() {
            let key = i32::from_le_bytes(bytes.get(..4)?.try_into().ok()?);
            bytes = &bytes[4..];
            let mut n: u64 = 0;
            let mut shift = 0;
            loop {
                let byte = *bytes.first()?;
                bytes = &bytes[1..];
                if shift > 63 {
                    return None;
                }
                n |= ((byte & 0x7f) as u64) << shift;
                shift += 7;
                if byte & 0x80 == 0 {
                    break;
                }
            }
            *hist.entry(key).or_insert(0) += n;
        }
        Some(hist)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_order_like_values_and_stand_for_them_within_a_bucket() {
        let values = [-1e9, -3.5, -0.001, 0.0, 1e-6, 0.5, 1.0, 1.1, 70.0, 1e12];
        let keys: Vec<i32> = values.iter().map(|v| bucket_key(*v)).collect();
        let mut sorted = keys.clone();
        sorted.sort();
        assert_eq!(keys, sorted);
        for v in values {
            let back = bucket_value(bucket_key(v));
            assert!(
                (back - v).abs() <= v.abs() * 0.05,
                "{v} came back as {back}"
            );
        }
    }

    #[test]
    fn merges_are_exact_and_quantiles_come_from_buckets() {
        let mut a = Agg::default();
        for i in 1..=98 {
            a.add(10.0 + (i % 3) as f64, 1);
        }
        let mut b = Agg::default();
        b.add(500.0, 2);
        let mut merged = a.clone();
        merged.merge(&b);
        assert_eq!(merged.count, 100);
        assert_eq!(merged.max, 500.0);
        assert_eq!(merged.min, 10.0);
        let p50 = merged.quantile(0.5).unwrap();
        assert!((10.0..=12.0).contains(&p50), "{p50}");
        let p99 = merged.quantile(0.99).unwrap();
        assert!((470.0..=500.0).contains(&p99), "{p99}");
        // One value: its quantiles are exact (clamped to min = max).
        assert_eq!(Agg::value(37.3).quantile(0.99), Some(37.3));
        assert_eq!(Agg::default().quantile(0.5), None);
        assert_eq!(Agg::default().avg(), None);
    }

    #[test]
    fn histograms_round_trip_and_garbage_is_refused() {
        let mut a = Agg::default();
        a.add(1.0, 1);
        a.add(-2.0, 300);
        a.add(1e6, u64::MAX / 2);
        let bytes = a.encode_hist();
        assert_eq!(Agg::decode_hist(&bytes), Some(a.hist.clone()));
        assert_eq!(Agg::decode_hist(&bytes[..bytes.len() - 1]), None);
        assert_eq!(Agg::decode_hist(&[1, 2]), None);
    }
}
