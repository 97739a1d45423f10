//! Iceberg's bucket transform: which bucket a row belongs to.
//!
//! We hash exactly as Iceberg's bucket transform does (MurmurHash3 x86 32-bit, seed 0, on
//! the value's canonical bytes), so a bucket computed by terrace is the bucket Iceberg,
//! Trino or Spark would compute for the same value, and a point lookup on a bucket column
//! can be planned to read one bucket by anyone who knows the spec.
//!
//! Canonical bytes, per Iceberg's spec:
//! - every integer type that fits in `i64` (`Int8`..`Int64`, `UInt8`..`UInt32`) and
//!   `Date32` (days since the epoch) is widened to `i64` and hashed as 8 little-endian
//!   bytes. Iceberg hashes `int` and `long` alike so that promoting a column from `int`
//!   to `long` does not move any row to another bucket; we widen every integer width for
//!   the same reason. `UInt64` is refused: its upper half has no `i64` image.
//! - timestamps of any unit are converted to microseconds (Iceberg's `timestamp`), except
//!   nanoseconds, which are hashed as nanoseconds (Iceberg v3 `timestamp_ns`). Seconds and
//!   milliseconds are multiplied with wrapping arithmetic: only timestamps hundreds of
//!   thousands of years away overflow, and the result stays deterministic.
//! - strings are hashed as their UTF-8 bytes, binaries as their bytes.
//! - `Decimal128` is hashed as the minimal big-endian two's-complement bytes of the
//!   unscaled value (Java's `BigInteger.toByteArray()`), so the scale does not matter.
//!
//! The bucket of a value is `(hash & i32::MAX) % num_buckets`; a null goes to bucket 0.
//!
//! **Several bucket columns** (Iceberg has no multi-argument bucket transform, so this is
//! terrace's own rule): each column's Iceberg hash (null contributing 0) is written as 4
//! little-endian bytes, the bytes are concatenated in `bucket_by` order and hashed again
//! with `murmur3_x86_32(.., 0)`, and the bucket is `(hash & i32::MAX) % num_buckets`. With
//! a single column the plain Iceberg rule applies (no second hash), so a dataset bucketed
//! by one column matches Iceberg exactly.

use arrow::array::{Array, ArrayRef, AsArray};
use arrow::datatypes::{
    DataType, Date32Type, Decimal128Type, Int8Type, Int16Type, Int32Type, Int64Type, TimeUnit,
    TimestampMicrosecondType, TimestampMillisecondType, TimestampNanosecondType,
    TimestampSecondType, UInt8Type, UInt16Type, UInt32Type,
};
use arrow::error::ArrowError;
use datafusion::common::ScalarValue;

use crate::error::{Error, Result};

const C1: u32 = 0xcc9e_2d51;
const C2: u32 = 0x1b87_3593;

/// MurmurHash3 x86 32-bit, as Iceberg/Guava use it.
///
/// ```
/// # use terrace_format::murmur3_x86_32;
/// assert_eq!(murmur3_x86_32(b"iceberg", 0) as i32, 1210000089);
/// ```
pub fn murmur3_x86_32(data: &[u8], seed: u32) -> u32 {
    let mut h = seed;
    let mut blocks = data.chunks_exact(4);
    for block in &mut blocks {
        let k = u32::from_le_bytes([block[0], block[1], block[2], block[3]]);
        h ^= mix_k(k);
        h = h.rotate_left(13).wrapping_mul(5).wrapping_add(0xe654_6b64);
    }
    let tail = blocks.remainder();
    if !tail.is_empty() {
        let mut k = 0u32;
        for (i, byte) in tail.iter().enumerate() {
            k |= u32::from(*byte) << (8 * i);
        }
        h ^= mix_k(k);
    }
    // Lengths beyond u32 wrap, as in the reference implementation (which takes an int).
    h ^= data.len() as u32;
    fmix32(h)
}

#[inline]
fn mix_k(k: u32) -> u32 {
    k.wrapping_mul(C1).rotate_left(15).wrapping_mul(C2)
}

#[inline]
fn fmix32(mut h: u32) -> u32 {
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^= h >> 16;
    h
}

#[inline]
fn hash_i64(v: i64) -> i32 {
    murmur3_x86_32(&v.to_le_bytes(), 0) as i32
}

#[inline]
fn hash_bytes(v: &[u8]) -> i32 {
    murmur3_x86_32(v, 0) as i32
}

/// Hash of the minimal big-endian two's-complement bytes of `v`, without allocating.
#[inline]
fn hash_decimal(v: i128) -> i32 {
    let bytes = v.to_be_bytes();
    let mut start = 0;
    // A leading 0x00 (0xFF) byte is redundant when the next byte already carries the sign.
    while start < bytes.len() - 1 {
        let (b, next) = (bytes[start], bytes[start + 1]);
        if (b == 0x00 && next & 0x80 == 0) || (b == 0xFF && next & 0x80 != 0) {
            start += 1;
        } else {
            break;
        }
    }
    hash_bytes(&bytes[start..])
}

/// Microseconds since the epoch (nanoseconds for `Nanosecond`), see the module docs.
#[inline]
fn timestamp_hash_value(v: i64, unit: TimeUnit) -> i64 {
    match unit {
        TimeUnit::Second => v.wrapping_mul(1_000_000),
        TimeUnit::Millisecond => v.wrapping_mul(1_000),
        TimeUnit::Microsecond | TimeUnit::Nanosecond => v,
    }
}

/// Whether a column of this type can be a bucket column.
pub(crate) fn is_bucket_type(data_type: &DataType) -> bool {
    matches!(
        data_type,
        DataType::Int8
            | DataType::Int16
            | DataType::Int32
            | DataType::Int64
            | DataType::UInt8
            | DataType::UInt16
            | DataType::UInt32
            | DataType::Date32
            | DataType::Timestamp(_, _)
            | DataType::Utf8
            | DataType::LargeUtf8
            | DataType::Utf8View
            | DataType::Binary
            | DataType::LargeBinary
            | DataType::BinaryView
            | DataType::FixedSizeBinary(_)
            | DataType::Decimal128(_, _)
    )
}

fn unsupported(data_type: DataType) -> Error {
    Error::UnsupportedColumnType {
        role: "bucket",
        column: String::new(),
        data_type,
    }
}

/// Iceberg's bucket-transform hash of one value; `None` for null.
///
/// See the module docs for the canonical bytes of each type. Floats, booleans and nested
/// types cannot be bucketed ([`Error::UnsupportedColumnType`]).
pub fn iceberg_hash_scalar(value: &ScalarValue) -> Result<Option<i32>> {
    use ScalarValue as S;
    let hash = match value {
        S::Int8(v) => v.map(|v| hash_i64(v.into())),
        S::Int16(v) => v.map(|v| hash_i64(v.into())),
        S::Int32(v) | S::Date32(v) => v.map(|v| hash_i64(v.into())),
        S::Int64(v) => v.map(hash_i64),
        S::UInt8(v) => v.map(|v| hash_i64(v.into())),
        S::UInt16(v) => v.map(|v| hash_i64(v.into())),
        S::UInt32(v) => v.map(|v| hash_i64(v.into())),
        S::TimestampSecond(v, _) => v.map(|v| hash_i64(timestamp_hash_value(v, TimeUnit::Second))),
        S::TimestampMillisecond(v, _) => {
            v.map(|v| hash_i64(timestamp_hash_value(v, TimeUnit::Millisecond)))
        }
        S::TimestampMicrosecond(v, _) | S::TimestampNanosecond(v, _) => v.map(hash_i64),
        S::Utf8(v) | S::LargeUtf8(v) | S::Utf8View(v) => {
            v.as_deref().map(str::as_bytes).map(hash_bytes)
        }
        S::Binary(v) | S::LargeBinary(v) | S::BinaryView(v) | S::FixedSizeBinary(_, v) => {
            v.as_deref().map(hash_bytes)
        }
        S::Decimal128(v, _, _) => v.map(hash_decimal),
        other => return Err(unsupported(other.data_type())),
    };
    Ok(hash)
}

fn check_num_buckets(num_buckets: u32) -> Result<()> {
    if num_buckets == 0 {
        return Err(Error::InvalidLayout {
            reason: "num_buckets must be at least 1, got 0".to_string(),
        });
    }
    Ok(())
}

#[inline]
fn bucket_of(hash: i32, num_buckets: u32) -> u32 {
    // Non-negative after the mask, so the cast is exact.
    ((hash & i32::MAX) as u32) % num_buckets
}

/// Combine per-column hashes as described in the module docs; `buf` is scratch space.
#[inline]
fn combine(hashes: impl Iterator<Item = i32>, buf: &mut Vec<u8>) -> i32 {
    buf.clear();
    for h in hashes {
        buf.extend_from_slice(&h.to_le_bytes());
    }
    murmur3_x86_32(buf, 0) as i32
}

/// The bucket of one row given its bucket-column values (in `bucket_by` order).
///
/// One column: `(hash & i32::MAX) % num_buckets`, null in bucket 0. Several columns: see
/// the module docs.
pub fn bucket_for_scalar(values: &[ScalarValue], num_buckets: u32) -> Result<u32> {
    check_num_buckets(num_buckets)?;
    let hash = match values {
        [] => {
            return Err(Error::InvalidLayout {
                reason: "bucketing needs at least one bucket column".to_string(),
            });
        }
        [value] => iceberg_hash_scalar(value)?.unwrap_or(0),
        values => {
            let hashes = values
                .iter()
                .map(|v| Ok(iceberg_hash_scalar(v)?.unwrap_or(0)))
                .collect::<Result<Vec<_>>>()?;
            combine(
                hashes.into_iter(),
                &mut Vec::with_capacity(4 * values.len()),
            )
        }
    };
    Ok(bucket_of(hash, num_buckets))
}

/// Per-row hashes of one column, null as 0 (which lands in bucket 0, like a null).
fn column_hashes(array: &dyn Array) -> Result<Vec<i32>> {
    fn map<T>(
        len: usize,
        array: &dyn Array,
        value: impl Fn(usize) -> T,
        hash: impl Fn(T) -> i32,
    ) -> Vec<i32> {
        match array.logical_nulls() {
            Some(nulls) if nulls.null_count() > 0 => (0..len)
                .map(|i| if nulls.is_null(i) { 0 } else { hash(value(i)) })
                .collect(),
            _ => (0..len).map(|i| hash(value(i))).collect(),
        }
    }
    let len = array.len();
    let hashes = match array.data_type() {
        DataType::Int8 => {
            let a = array.as_primitive::<Int8Type>();
            map(len, array, |i| a.value(i), |v| hash_i64(v.into()))
        }
        DataType::Int16 => {
            let a = array.as_primitive::<Int16Type>();
            map(len, array, |i| a.value(i), |v| hash_i64(v.into()))
        }
        DataType::Int32 => {
            let a = array.as_primitive::<Int32Type>();
            map(len, array, |i| a.value(i), |v| hash_i64(v.into()))
        }
        DataType::Int64 => {
            let a = array.as_primitive::<Int64Type>();
            map(len, array, |i| a.value(i), hash_i64)
        }
        DataType::UInt8 => {
            let a = array.as_primitive::<UInt8Type>();
            map(len, array, |i| a.value(i), |v| hash_i64(v.into()))
        }
        DataType::UInt16 => {
            let a = array.as_primitive::<UInt16Type>();
            map(len, array, |i| a.value(i), |v| hash_i64(v.into()))
        }
        DataType::UInt32 => {
            let a = array.as_primitive::<UInt32Type>();
            map(len, array, |i| a.value(i), |v| hash_i64(v.into()))
        }
        DataType::Date32 => {
            let a = array.as_primitive::<Date32Type>();
            map(len, array, |i| a.value(i), |v| hash_i64(v.into()))
        }
        DataType::Timestamp(unit, _) => {
            let unit = *unit;
            let hash = |v| hash_i64(timestamp_hash_value(v, unit));
            match unit {
                TimeUnit::Second => {
                    let a = array.as_primitive::<TimestampSecondType>();
                    map(len, array, |i| a.value(i), hash)
                }
                TimeUnit::Millisecond => {
                    let a = array.as_primitive::<TimestampMillisecondType>();
                    map(len, array, |i| a.value(i), hash)
                }
                TimeUnit::Microsecond => {
                    let a = array.as_primitive::<TimestampMicrosecondType>();
                    map(len, array, |i| a.value(i), hash)
                }
                TimeUnit::Nanosecond => {
                    let a = array.as_primitive::<TimestampNanosecondType>();
                    map(len, array, |i| a.value(i), hash)
                }
            }
        }
        DataType::Utf8 => {
            let a = array.as_string::<i32>();
            map(len, array, |i| a.value(i).as_bytes(), hash_bytes)
        }
        DataType::LargeUtf8 => {
            let a = array.as_string::<i64>();
            map(len, array, |i| a.value(i).as_bytes(), hash_bytes)
        }
        DataType::Utf8View => {
            let a = array.as_string_view();
            map(len, array, |i| a.value(i).as_bytes(), hash_bytes)
        }
        DataType::Binary => {
            let a = array.as_binary::<i32>();
            map(len, array, |i| a.value(i), hash_bytes)
        }
        DataType::LargeBinary => {
            let a = array.as_binary::<i64>();
            map(len, array, |i| a.value(i), hash_bytes)
        }
        DataType::BinaryView => {
            let a = array.as_binary_view();
            map(len, array, |i| a.value(i), hash_bytes)
        }
        DataType::FixedSizeBinary(_) => {
            let a = array.as_fixed_size_binary();
            map(len, array, |i| a.value(i), hash_bytes)
        }
        DataType::Decimal128(_, _) => {
            let a = array.as_primitive::<Decimal128Type>();
            map(len, array, |i| a.value(i), hash_decimal)
        }
        other => return Err(unsupported(other.clone())),
    };
    Ok(hashes)
}

/// The bucket of every row of these bucket columns (in `bucket_by` order, all the same
/// length). Equal to [`bucket_for_scalar`] row by row, without per-row allocation.
pub fn bucket_ids(columns: &[ArrayRef], num_buckets: u32) -> Result<Vec<u32>> {
    check_num_buckets(num_buckets)?;
    let Some(first) = columns.first() else {
        return Err(Error::InvalidLayout {
            reason: "bucketing needs at least one bucket column".to_string(),
        });
    };
    let len = first.len();
    if let Some(other) = columns.iter().find(|c| c.len() != len) {
        return Err(Error::arrow(
            "computing bucket ids",
            ArrowError::InvalidArgumentError(format!(
                "bucket columns have different lengths ({len} and {})",
                other.len()
            )),
        ));
    }
    let hashes = columns
        .iter()
        .map(|c| column_hashes(c.as_ref()))
        .collect::<Result<Vec<_>>>()?;
    let ids = match hashes.as_slice() {
        [single] => single.iter().map(|&h| bucket_of(h, num_buckets)).collect(),
        several => {
            let mut buf = Vec::with_capacity(4 * several.len());
            (0..len)
                .map(|row| {
                    let hash = combine(several.iter().map(|col| col[row]), &mut buf);
                    bucket_of(hash, num_buckets)
                })
                .collect()
        }
    };
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{
        BinaryArray, BinaryViewArray, Date32Array, Decimal128Array, FixedSizeBinaryArray,
        Float64Array, Int8Array, Int16Array, Int32Array, Int64Array, LargeBinaryArray,
        LargeStringArray, StringArray, StringViewArray, TimestampMicrosecondArray,
        TimestampMillisecondArray, TimestampNanosecondArray, TimestampSecondArray, UInt8Array,
        UInt16Array, UInt32Array,
    };
    use proptest::prelude::*;

    use super::*;

    fn h(v: ScalarValue) -> i32 {
        match iceberg_hash_scalar(&v) {
            Ok(Some(h)) => h,
            other => panic!("no hash for {v:?}: {other:?}"),
        }
    }

    #[test]
    fn iceberg_spec_vectors() {
        assert_eq!(h(ScalarValue::Int32(Some(34))), 2017239379);
        assert_eq!(h(ScalarValue::Int64(Some(34))), 2017239379);
        assert_eq!(h(ScalarValue::Int8(Some(34))), 2017239379);
        assert_eq!(h(ScalarValue::UInt32(Some(34))), 2017239379);
        assert_eq!(h(ScalarValue::Utf8(Some("iceberg".into()))), 1210000089);
        assert_eq!(
            h(ScalarValue::LargeUtf8(Some("iceberg".into()))),
            1210000089
        );
        assert_eq!(h(ScalarValue::Utf8View(Some("iceberg".into()))), 1210000089);
        // 2017-11-16 is day 17486.
        assert_eq!(h(ScalarValue::Date32(Some(17486))), -653330422);
        assert_eq!(h(ScalarValue::Decimal128(Some(1420), 4, 2)), -500754589);
        assert_eq!(h(ScalarValue::Binary(Some(vec![0, 1, 2, 3]))), -188683207);
        assert_eq!(
            h(ScalarValue::FixedSizeBinary(4, Some(vec![0, 1, 2, 3]))),
            -188683207
        );
        // 2017-11-16T22:31:08, in every unit but nanoseconds.
        let micros = 1_510_871_468_000_000;
        assert_eq!(
            h(ScalarValue::TimestampMicrosecond(Some(micros), None)),
            -2047944441
        );
        assert_eq!(
            h(ScalarValue::TimestampMillisecond(
                Some(micros / 1000),
                Some("UTC".into())
            )),
            -2047944441
        );
        assert_eq!(
            h(ScalarValue::TimestampSecond(Some(micros / 1_000_000), None)),
            -2047944441
        );
        // Iceberg v3 timestamp_ns hashes nanoseconds as they are.
        assert_eq!(
            h(ScalarValue::TimestampNanosecond(Some(34), None)),
            2017239379
        );
    }

    #[test]
    fn murmur3_reference_values() {
        // From the reference implementation (SMHasher) and Guava's tests.
        assert_eq!(murmur3_x86_32(b"", 0), 0);
        assert_eq!(murmur3_x86_32(b"", 1), 0x514E_28B7);
        assert_eq!(murmur3_x86_32(b"", 0xffff_ffff), 0x81F1_6F39);
        assert_eq!(murmur3_x86_32(&[0, 0, 0, 0], 0), 0x2362_F9DE);
        assert_eq!(murmur3_x86_32(b"Hello, world!", 0x9747_b28c), 0x2488_4CBA);
        assert_eq!(murmur3_x86_32(b"aaaa", 0x9747_b28c), 0x5A97_808A);
        assert_eq!(murmur3_x86_32(b"aaa", 0x9747_b28c), 0x283E_0130);
        assert_eq!(murmur3_x86_32(b"aa", 0x9747_b28c), 0x5D21_1726);
        assert_eq!(murmur3_x86_32(b"a", 0x9747_b28c), 0x7FA0_9EA6);
    }

    #[test]
    fn decimal_bytes_are_minimal_twos_complement() {
        // Negative, zero and sign-boundary values hash like their Java toByteArray() bytes.
        let cases: [(i128, &[u8]); 7] = [
            (0, &[0x00]),
            (-1, &[0xFF]),
            (127, &[0x7F]),
            (128, &[0x00, 0x80]),
            (-128, &[0x80]),
            (-129, &[0xFF, 0x7F]),
            (1420, &[0x05, 0x8C]),
        ];
        for (v, bytes) in cases {
            assert_eq!(hash_decimal(v), hash_bytes(bytes), "{v}");
        }
    }

    #[test]
    fn buckets_of_single_values_and_nulls() {
        let b = |v: ScalarValue| bucket_for_scalar(&[v], 16).ok();
        assert_eq!(b(ScalarValue::Int64(Some(34))), Some(2017239379 % 16));
        assert_eq!(b(ScalarValue::Int64(None)), Some(0));
        assert_eq!(b(ScalarValue::Utf8(None)), Some(0));
        // Negative hash: the sign bit is masked away, not the absolute value taken.
        let neg = -653330422_i32;
        assert_eq!(
            b(ScalarValue::Date32(Some(17486))),
            Some(((neg & i32::MAX) as u32) % 16)
        );
    }

    #[test]
    fn several_columns_hash_the_concatenated_hashes() {
        let values = [
            ScalarValue::Int32(Some(34)),
            ScalarValue::Utf8(None),
            ScalarValue::Utf8(Some("iceberg".into())),
        ];
        let mut bytes = Vec::new();
        for hash in [2017239379_i32, 0, 1210000089] {
            bytes.extend_from_slice(&hash.to_le_bytes());
        }
        let expected = ((murmur3_x86_32(&bytes, 0) as i32 & i32::MAX) as u32) % 7;
        assert_eq!(bucket_for_scalar(&values, 7).ok(), Some(expected));
        // Order matters: swapping columns is a different bucketing.
        let swapped = [values[2].clone(), values[1].clone(), values[0].clone()];
        let mut bytes = Vec::new();
        for hash in [1210000089_i32, 0, 2017239379] {
            bytes.extend_from_slice(&hash.to_le_bytes());
        }
        let expected = ((murmur3_x86_32(&bytes, 0) as i32 & i32::MAX) as u32) % 7;
        assert_eq!(bucket_for_scalar(&swapped, 7).ok(), Some(expected));
    }

    #[test]
    fn unsupported_types_and_bad_arguments_are_refused() {
        for v in [
            ScalarValue::Float64(Some(1.0)),
            ScalarValue::Boolean(Some(true)),
            ScalarValue::UInt64(Some(1)),
        ] {
            assert!(
                matches!(
                    iceberg_hash_scalar(&v),
                    Err(Error::UnsupportedColumnType { role: "bucket", .. })
                ),
                "{v:?}"
            );
            assert!(bucket_for_scalar(&[v], 4).is_err());
        }
        let floats: ArrayRef = Arc::new(Float64Array::from(vec![1.0]));
        assert!(matches!(
            bucket_ids(&[floats], 4),
            Err(Error::UnsupportedColumnType { role: "bucket", .. })
        ));
        let ints: ArrayRef = Arc::new(Int32Array::from(vec![1, 2]));
        let short: ArrayRef = Arc::new(Int32Array::from(vec![1]));
        assert!(matches!(
            bucket_ids(std::slice::from_ref(&ints), 0),
            Err(Error::InvalidLayout { .. })
        ));
        assert!(matches!(
            bucket_for_scalar(&[ScalarValue::Int32(Some(1))], 0),
            Err(Error::InvalidLayout { .. })
        ));
        assert!(bucket_ids(&[], 4).is_err());
        assert!(bucket_for_scalar(&[], 4).is_err());
        assert!(matches!(
            bucket_ids(&[ints, short], 4),
            Err(Error::Arrow { .. })
        ));
    }

    #[test]
    fn bucket_types_match_hashable_scalars() {
        for dt in [
            DataType::Int8,
            DataType::UInt32,
            DataType::Date32,
            DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into())),
            DataType::Utf8View,
            DataType::FixedSizeBinary(3),
            DataType::Decimal128(10, 2),
        ] {
            assert!(is_bucket_type(&dt), "{dt}");
        }
        for dt in [
            DataType::Float32,
            DataType::Boolean,
            DataType::UInt64,
            DataType::Date64,
        ] {
            assert!(!is_bucket_type(&dt), "{dt}");
        }
    }

    /// `len` values of `s`, about a fifth of them null.
    fn col<T: std::fmt::Debug>(
        s: impl Strategy<Value = T>,
        len: usize,
    ) -> impl Strategy<Value = Vec<Option<T>>> {
        proptest::collection::vec(proptest::option::weighted(0.8, s), len..=len)
    }

    fn arc(a: impl Array + 'static) -> ArrayRef {
        Arc::new(a)
    }

    /// A random array of `len` rows of any supported bucket type, with nulls.
    fn any_array(len: usize) -> impl Strategy<Value = ArrayRef> {
        let ints = prop_oneof![
            col(any::<i8>(), len).prop_map(|v| arc(Int8Array::from(v))),
            col(any::<i16>(), len).prop_map(|v| arc(Int16Array::from(v))),
            col(any::<i32>(), len).prop_map(|v| arc(Int32Array::from(v))),
            col(any::<i64>(), len).prop_map(|v| arc(Int64Array::from(v))),
            col(any::<u8>(), len).prop_map(|v| arc(UInt8Array::from(v))),
            col(any::<u16>(), len).prop_map(|v| arc(UInt16Array::from(v))),
            col(any::<u32>(), len).prop_map(|v| arc(UInt32Array::from(v))),
            col(any::<i32>(), len).prop_map(|v| arc(Date32Array::from(v))),
            col(any::<i128>(), len).prop_map(|v| arc(Decimal128Array::from(v)
                .with_precision_and_scale(38, 3)
                .unwrap_or_else(|e| panic!("{e}")))),
        ];
        let timestamps = prop_oneof![
            col(any::<i64>(), len).prop_map(|v| arc(TimestampSecondArray::from(v))),
            col(any::<i64>(), len)
                .prop_map(|v| arc(TimestampMillisecondArray::from(v).with_timezone("UTC"))),
            col(any::<i64>(), len).prop_map(|v| arc(TimestampMicrosecondArray::from(v))),
            col(any::<i64>(), len)
                .prop_map(|v| arc(TimestampNanosecondArray::from(v).with_timezone("+01:00"))),
        ];
        let bytes = prop_oneof![
            col(any::<String>(), len).prop_map(|v| arc(StringArray::from(v))),
            col(any::<String>(), len).prop_map(|v| arc(LargeStringArray::from(v))),
            col(any::<String>(), len).prop_map(|v| arc(StringViewArray::from(v))),
            col(any::<Vec<u8>>(), len).prop_map(|v| arc(BinaryArray::from_iter(v))),
            col(any::<Vec<u8>>(), len).prop_map(|v| arc(LargeBinaryArray::from_iter(v))),
            col(any::<Vec<u8>>(), len).prop_map(|v| arc(BinaryViewArray::from_iter(v))),
            col(any::<[u8; 5]>(), len).prop_map(|v| arc(
                FixedSizeBinaryArray::try_from_sparse_iter_with_size(v.into_iter(), 5)
                    .unwrap_or_else(|e| panic!("{e}"))
            )),
        ];
        prop_oneof![ints, timestamps, bytes]
    }

    fn scalar_buckets(columns: &[ArrayRef], n: u32) -> Vec<u32> {
        let len = columns.first().map_or(0, |c| c.len());
        (0..len)
            .map(|row| {
                let values = columns
                    .iter()
                    .map(|c| {
                        ScalarValue::try_from_array(c.as_ref(), row)
                            .unwrap_or_else(|e| panic!("{e}"))
                    })
                    .collect::<Vec<_>>();
                bucket_for_scalar(&values, n).unwrap_or_else(|e| panic!("{e}"))
            })
            .collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn vectorised_single_column_equals_scalar(
            (array, n) in (0usize..40).prop_flat_map(|len| (any_array(len), 1u32..100)),
        ) {
            let columns = [array];
            let ids = bucket_ids(&columns, n).unwrap_or_else(|e| panic!("{e}"));
            prop_assert_eq!(ids.len(), columns[0].len());
            prop_assert!(ids.iter().all(|&b| b < n));
            prop_assert_eq!(ids, scalar_buckets(&columns, n));
        }

        #[test]
        fn vectorised_several_columns_equal_scalar(
            (columns, n) in (0usize..40).prop_flat_map(|len| {
                (proptest::collection::vec(any_array(len), 2..4), 1u32..100)
            }),
        ) {
            let ids = bucket_ids(&columns, n).unwrap_or_else(|e| panic!("{e}"));
            prop_assert_eq!(ids, scalar_buckets(&columns, n));
        }

        #[test]
        fn sliced_arrays_hash_their_own_rows(
            (array, offset) in (1usize..40).prop_flat_map(|len| (any_array(len), 0..len)),
        ) {
            let sliced = array.slice(offset, array.len() - offset);
            let columns = [sliced];
            let ids = bucket_ids(&columns, 13).unwrap_or_else(|e| panic!("{e}"));
            prop_assert_eq!(ids, scalar_buckets(&columns, 13));
        }
    }
}
