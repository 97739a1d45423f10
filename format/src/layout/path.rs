//! Hive-style partition paths (`a=1/b=x%2Fy/part-00003-<uuid>.parquet`) and data-file names.
//!
//! Column names and values are percent-encoded: every byte outside `[A-Za-z0-9_.~-]`
//! becomes `%XX` (uppercase hex). That covers `/` (a value must never add a directory or
//! climb out of the dataset root with `..`), `=` (the key/value separator), `%` (so decoding
//! is the exact inverse) and spaces and non-ASCII text (which some stores and shells
//! mangle). A leading `.` is encoded too (`%2E`): many tools (Spark, Hadoop, pyarrow's
//! dataset discovery) skip hidden files and directories, and `.`/`..` are path syntax.
//!
//! A null value is written as [`NULL_PARTITION_MARKER`], the hive convention that DuckDB,
//! pyarrow and Spark read back as null. A real string equal to the marker would then read
//! back as null, so it is written with its first `_` as `%5F`: the directory differs from
//! the marker, other engines decode it to the marker text, and so do we.
//!
//! Values are written in a canonical text per type (decimal integers, `true`/`false`,
//! dates as `YYYY-MM-DD`) that other engines infer back to the same value.

use arrow::datatypes::{DataType, FieldRef};
use datafusion::common::ScalarValue;

use crate::error::{Error, Result};

/// Directory value of a null partition value (the hive convention).
pub const NULL_PARTITION_MARKER: &str = "__HIVE_DEFAULT_PARTITION__";

const HEX: &[u8; 16] = b"0123456789ABCDEF";

fn is_unreserved(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'_' | b'.' | b'~' | b'-')
}

/// Percent-encode a column name or partition value for use as (half of) a path segment.
///
/// Every byte outside `[A-Za-z0-9_.~-]` and a leading `.` become `%XX` (uppercase hex);
/// the exact string [`NULL_PARTITION_MARKER`] is written with its first `_` as `%5F` so
/// it does not read back as null.
///
/// ```
/// # use terrace_format::encode_path_segment;
/// assert_eq!(encode_path_segment("a/b c=%"), "a%2Fb%20c%3D%25");
/// assert_eq!(encode_path_segment(".."), "%2E.");
/// ```
pub fn encode_path_segment(value: &str) -> String {
    if value == NULL_PARTITION_MARKER {
        return format!("%5F{}", &NULL_PARTITION_MARKER[1..]);
    }
    let mut out = String::with_capacity(value.len());
    for (i, &byte) in value.as_bytes().iter().enumerate() {
        if is_unreserved(byte) && !(i == 0 && byte == b'.') {
            out.push(char::from(byte));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(byte >> 4)]));
            out.push(char::from(HEX[usize::from(byte & 0xF)]));
        }
    }
    out
}

/// The longest a partition directory's name (`column=value`, percent-encoded) may be,
/// in bytes: the limit of a file name on the file systems of Linux (ext4, xfs, btrfs),
/// macOS and Windows. Object stores take longer keys, but such a dataset could not be
/// copied to a disk nor read by a tool that maps it onto one, so the limit holds on
/// every store: a value over it is refused ([`check_partition_value`]) before anything
/// is written, not failed as "File name too long" by the store.
pub const MAX_PARTITION_SEGMENT_BYTES: usize = 255;

/// The length of [`encode_path_segment`]`(value)`, without building it.
pub fn encoded_segment_len(value: &str) -> usize {
    if value == NULL_PARTITION_MARKER {
        return NULL_PARTITION_MARKER.len() + 2;
    }
    value
        .as_bytes()
        .iter()
        .enumerate()
        .map(|(i, &byte)| {
            if is_unreserved(byte) && !(i == 0 && byte == b'.') {
                1
            } else {
                3
            }
        })
        .sum()
}

/// Refuse a partition value (its canonical text, `None` for null) whose directory name
/// `column=value` would be longer than [`MAX_PARTITION_SEGMENT_BYTES`] once encoded, with
/// an [`Error::PartitionValueTooLong`] naming the column and the value's start.
pub fn check_partition_value(column: &str, value: Option<&str>) -> Result<()> {
    let value_len = value.map_or(NULL_PARTITION_MARKER.len(), encoded_segment_len);
    let segment_bytes = encoded_segment_len(column) + 1 + value_len;
    if segment_bytes <= MAX_PARTITION_SEGMENT_BYTES {
        return Ok(());
    }
    let text = value.unwrap_or(NULL_PARTITION_MARKER);
    Err(Error::PartitionValueTooLong {
        column: column.to_string(),
        value_start: text.chars().take(40).collect(),
        value_bytes: text.len(),
        segment_bytes,
        limit: MAX_PARTITION_SEGMENT_BYTES,
    })
}

/// [`check_partition_value`] for each of a row's partition values, in the typed form
/// [`partition_path`] takes.
pub fn check_partition_values(columns: &[String], values: &[ScalarValue]) -> Result<()> {
    for (column, value) in columns.iter().zip(values) {
        // Only text can be long; other types' canonical texts are short.
        if let ScalarValue::Utf8(v) | ScalarValue::LargeUtf8(v) | ScalarValue::Utf8View(v) = value {
            check_partition_value(column, v.as_deref())?;
        }
    }
    Ok(())
}

fn hex_value(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'A'..=b'F' => Some(byte - b'A' + 10),
        b'a'..=b'f' => Some(byte - b'a' + 10),
        _ => None,
    }
}

/// Decode a percent-encoded segment: the exact inverse of [`encode_path_segment`].
///
/// Lower-case hex digits are accepted too (other writers use them). A `%` not followed by
/// two hex digits, or bytes that are not UTF-8, are an [`Error::InvalidPartitionPath`].
pub fn decode_path_segment(segment: &str) -> Result<String> {
    let invalid = |reason: String| Error::InvalidPartitionPath {
        path: segment.to_string(),
        reason,
    };
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let digits = bytes.get(i + 1..i + 3);
            let decoded = digits.and_then(|d| Some((hex_value(d[0])? << 4) | hex_value(d[1])?));
            let Some(byte) = decoded else {
                let escape = String::from_utf8_lossy(&bytes[i..bytes.len().min(i + 3)]);
                return Err(invalid(format!(
                    "bad percent escape {escape:?} at byte {i}: '%' must be followed by two hex digits"
                )));
            };
            out.push(byte);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|e| invalid(format!("decoded bytes are not valid UTF-8: {e}")))
}

/// Whether a column of this type can be a partition column.
pub(crate) fn is_partition_type(data_type: &DataType) -> bool {
    matches!(
        data_type,
        DataType::Utf8
            | DataType::LargeUtf8
            | DataType::Utf8View
            | DataType::Int8
            | DataType::Int16
            | DataType::Int32
            | DataType::Int64
            | DataType::UInt8
            | DataType::UInt16
            | DataType::UInt32
            | DataType::UInt64
            | DataType::Boolean
            | DataType::Date32
    )
}

fn unsupported(data_type: DataType) -> Error {
    Error::UnsupportedColumnType {
        role: "partition",
        column: String::new(),
        data_type,
    }
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar.
///
/// Howard Hinnant's `civil_from_days`; total over every `i32`, unlike chrono's range.
fn civil_from_days(days: i32) -> (i64, u32, u32) {
    let z = i64::from(days) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365]
    let mp = (5 * doy + 2) / 153; // [0, 11]
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Inverse of [`civil_from_days`]; the date must be valid.
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let yoe = year.rem_euclid(400);
    let month = i64::from(month);
    let mp = if month > 2 { month - 3 } else { month + 9 };
    let doy = (153 * mp + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// `YYYY-MM-DD`; years outside 0000..=9999 get a sign and more digits (ISO 8601 expanded).
fn format_date32(days: i32) -> String {
    let (year, month, day) = civil_from_days(days);
    if (0..=9999).contains(&year) {
        format!("{year:04}-{month:02}-{day:02}")
    } else {
        format!("{year:+05}-{month:02}-{day:02}")
    }
}

fn parse_date32(text: &str) -> Option<i32> {
    let (sign, rest) = match text.as_bytes().first()? {
        b'+' => (1, &text[1..]),
        b'-' => (-1, &text[1..]),
        _ => (1, text),
    };
    let mut parts = rest.split('-');
    let (year, month, day) = (parts.next()?, parts.next()?, parts.next()?);
    let digits = |s: &str, len: std::ops::RangeInclusive<usize>| {
        len.contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit())
    };
    if parts.next().is_some()
        || !digits(year, 4..=10)
        || !digits(month, 2..=2)
        || !digits(day, 2..=2)
    {
        return None;
    }
    let year = sign * year.parse::<i64>().ok()?;
    let month = month.parse::<u32>().ok()?;
    let day = day.parse::<u32>().ok()?;
    if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
        return None;
    }
    i32::try_from(days_from_civil(year, month, day)).ok()
}

/// The canonical text of a partition value; `None` for null.
///
/// Integers in decimal, booleans as `true`/`false`, `Date32` as `YYYY-MM-DD`, strings as
/// they are. Other types are an [`Error::UnsupportedColumnType`].
pub fn partition_value_to_string(value: &ScalarValue) -> Result<Option<String>> {
    use ScalarValue as S;
    Ok(match value {
        S::Utf8(v) | S::LargeUtf8(v) | S::Utf8View(v) => v.clone(),
        S::Int8(v) => v.map(|v| v.to_string()),
        S::Int16(v) => v.map(|v| v.to_string()),
        S::Int32(v) => v.map(|v| v.to_string()),
        S::Int64(v) => v.map(|v| v.to_string()),
        S::UInt8(v) => v.map(|v| v.to_string()),
        S::UInt16(v) => v.map(|v| v.to_string()),
        S::UInt32(v) => v.map(|v| v.to_string()),
        S::UInt64(v) => v.map(|v| v.to_string()),
        S::Boolean(v) => v.map(|v| v.to_string()),
        S::Date32(v) => v.map(format_date32),
        other => return Err(unsupported(other.data_type())),
    })
}

/// Parse the canonical text of a partition value (`None` = null) as `data_type`.
///
/// The inverse of [`partition_value_to_string`]; a null gives the typed null. Text that
/// is not a value of the type is an [`Error::InvalidPartitionPath`] naming the text.
pub fn partition_value_from_str(text: Option<&str>, data_type: &DataType) -> Result<ScalarValue> {
    if !is_partition_type(data_type) {
        return Err(unsupported(data_type.clone()));
    }
    let Some(text) = text else {
        return ScalarValue::try_from(data_type).map_err(|e| Error::datafusion("making a null", e));
    };
    let invalid = || Error::InvalidPartitionPath {
        path: text.to_string(),
        reason: format!("{text:?} is not a valid {data_type} partition value"),
    };
    fn int<T: std::str::FromStr>(text: &str) -> Option<T> {
        // Canonical decimal only: no '+', no whitespace (FromStr would accept a '+').
        if text.starts_with('+') {
            return None;
        }
        text.parse().ok()
    }
    let value = match data_type {
        DataType::Utf8 => Some(ScalarValue::Utf8(Some(text.to_string()))),
        DataType::LargeUtf8 => Some(ScalarValue::LargeUtf8(Some(text.to_string()))),
        DataType::Utf8View => Some(ScalarValue::Utf8View(Some(text.to_string()))),
        DataType::Int8 => int(text).map(|v| ScalarValue::Int8(Some(v))),
        DataType::Int16 => int(text).map(|v| ScalarValue::Int16(Some(v))),
        DataType::Int32 => int(text).map(|v| ScalarValue::Int32(Some(v))),
        DataType::Int64 => int(text).map(|v| ScalarValue::Int64(Some(v))),
        DataType::UInt8 => int(text).map(|v| ScalarValue::UInt8(Some(v))),
        DataType::UInt16 => int(text).map(|v| ScalarValue::UInt16(Some(v))),
        DataType::UInt32 => int(text).map(|v| ScalarValue::UInt32(Some(v))),
        DataType::UInt64 => int(text).map(|v| ScalarValue::UInt64(Some(v))),
        DataType::Boolean => match text {
            "true" => Some(ScalarValue::Boolean(Some(true))),
            "false" => Some(ScalarValue::Boolean(Some(false))),
            _ => None,
        },
        DataType::Date32 => parse_date32(text).map(|v| ScalarValue::Date32(Some(v))),
        other => return Err(unsupported(other.clone())),
    };
    value.ok_or_else(invalid)
}

/// The partition directory of a row: `"a=1/b=x%2Fy"` for columns `[a, b]`, `""` without
/// partition columns. Keys and values are encoded with [`encode_path_segment`]; nulls are
/// written as [`NULL_PARTITION_MARKER`].
///
/// ```
/// # use terrace_format::partition_path;
/// # use datafusion::common::ScalarValue;
/// let columns = ["a".to_string(), "b".to_string()];
/// let values = [ScalarValue::Int32(Some(1)), ScalarValue::Utf8(Some("x/y".into()))];
/// assert_eq!(partition_path(&columns, &values)?, "a=1/b=x%2Fy");
/// # Ok::<(), terrace_format::Error>(())
/// ```
pub fn partition_path(columns: &[String], values: &[ScalarValue]) -> Result<String> {
    if columns.len() != values.len() {
        return Err(Error::InvalidLayout {
            reason: format!(
                "{} partition columns but {} partition values",
                columns.len(),
                values.len()
            ),
        });
    }
    let mut path = String::new();
    for (column, value) in columns.iter().zip(values) {
        let text = partition_value_to_string(value).map_err(|e| match e {
            Error::UnsupportedColumnType {
                role, data_type, ..
            } => Error::UnsupportedColumnType {
                role,
                column: column.clone(),
                data_type,
            },
            other => other,
        })?;
        if !path.is_empty() {
            path.push('/');
        }
        path.push_str(&encode_path_segment(column));
        path.push('=');
        match text {
            Some(text) => path.push_str(&encode_path_segment(&text)),
            None => path.push_str(NULL_PARTITION_MARKER),
        }
    }
    Ok(path)
}

/// Parse the leading `key=value` directories of a data-file path relative to the dataset
/// root (e.g. `"a=1/b=x%2Fy/part-00003-<uuid>.parquet"`) into one typed value per field,
/// in order. Each key must be the field's name. Directories and the file name after the
/// partition directories are ignored.
pub fn parse_partition_path(path: &str, fields: &[FieldRef]) -> Result<Vec<ScalarValue>> {
    let invalid = |reason: String| Error::InvalidPartitionPath {
        path: path.to_string(),
        reason,
    };
    let mut segments = path.split('/');
    let mut values = Vec::with_capacity(fields.len());
    for field in fields {
        let segment = segments
            .next()
            .filter(|s| !(s.is_empty() && path.is_empty()))
            .ok_or_else(|| {
                invalid(format!(
                    "expected {} partition directories, found {}",
                    fields.len(),
                    values.len()
                ))
            })?;
        let Some((key, raw_value)) = segment.split_once('=') else {
            return Err(invalid(format!(
                "directory {segment:?} is not key=value (expected partition column {:?})",
                field.name()
            )));
        };
        let key = decode_path_segment(key).map_err(|e| invalid(e.to_string()))?;
        if key != *field.name() {
            return Err(invalid(format!(
                "partition directory {segment:?} is for column {key:?}, expected {:?}",
                field.name()
            )));
        }
        let text = if raw_value == NULL_PARTITION_MARKER {
            None
        } else {
            Some(decode_path_segment(raw_value).map_err(|e| invalid(e.to_string()))?)
        };
        let value =
            partition_value_from_str(text.as_deref(), field.data_type()).map_err(|e| match e {
                Error::UnsupportedColumnType {
                    role, data_type, ..
                } => Error::UnsupportedColumnType {
                    role,
                    column: field.name().clone(),
                    data_type,
                },
                Error::InvalidPartitionPath { reason, .. } => {
                    invalid(format!("column {:?}: {reason}", field.name()))
                }
                other => other,
            })?;
        values.push(value);
    }
    Ok(values)
}

/// The name of a new data file: `part-00003-<uuid>.parquet` in bucket 3,
/// `part-<uuid>.parquet` when not bucketed. The random v4 UUID keeps concurrent writers
/// from ever choosing the same name.
pub fn data_file_name(bucket: Option<u32>) -> String {
    let id = uuid::Uuid::new_v4().hyphenated();
    match bucket {
        Some(bucket) => format!("part-{bucket:05}-{id}.parquet"),
        None => format!("part-{id}.parquet"),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::datatypes::Field;
    use proptest::prelude::*;

    use super::*;

    fn fields(specs: &[(&str, DataType)]) -> Vec<FieldRef> {
        specs
            .iter()
            .map(|(name, dt)| Arc::new(Field::new(*name, dt.clone(), true)))
            .collect()
    }

    #[test]
    fn encodes_path_syntax_and_leading_dot() {
        assert_eq!(encode_path_segment("JFK"), "JFK");
        assert_eq!(encode_path_segment("a-b_c.d~e"), "a-b_c.d~e");
        assert_eq!(encode_path_segment("x/y"), "x%2Fy");
        assert_eq!(encode_path_segment("a b=c%d"), "a%20b%3Dc%25d");
        assert_eq!(encode_path_segment("."), "%2E");
        assert_eq!(encode_path_segment(".."), "%2E.");
        assert_eq!(encode_path_segment(".hidden"), "%2Ehidden");
        assert_eq!(encode_path_segment("é"), "%C3%A9");
        assert_eq!(encode_path_segment(""), "");
        assert_eq!(
            encode_path_segment(NULL_PARTITION_MARKER),
            "%5F_HIVE_DEFAULT_PARTITION__"
        );
        // Only the exact marker is special.
        assert_eq!(
            encode_path_segment("__HIVE_DEFAULT_PARTITION__x"),
            "__HIVE_DEFAULT_PARTITION__x"
        );
    }

    #[test]
    fn decode_errors() {
        for bad in ["%G1", "%4", "a%", "%", "x%1G", "%FF", "%C3", "%C3%28"] {
            let result = decode_path_segment(bad);
            assert!(
                matches!(&result, Err(Error::InvalidPartitionPath { path, .. }) if path == bad),
                "{bad}: {result:?}"
            );
        }
        assert_eq!(decode_path_segment("%c3%a9").ok().as_deref(), Some("é"));
    }

    #[test]
    fn null_and_marker_text_are_distinct_directories() {
        let columns = ["s".to_string()];
        let null = partition_path(&columns, &[ScalarValue::Utf8(None)]).ok();
        let marker = partition_path(
            &columns,
            &[ScalarValue::Utf8(Some(NULL_PARTITION_MARKER.into()))],
        )
        .ok();
        assert_eq!(null.as_deref(), Some("s=__HIVE_DEFAULT_PARTITION__"));
        assert_eq!(marker.as_deref(), Some("s=%5F_HIVE_DEFAULT_PARTITION__"));
        let f = fields(&[("s", DataType::Utf8)]);
        assert_eq!(
            parse_partition_path("s=__HIVE_DEFAULT_PARTITION__/part-x.parquet", &f).ok(),
            Some(vec![ScalarValue::Utf8(None)])
        );
        assert_eq!(
            parse_partition_path("s=%5F_HIVE_DEFAULT_PARTITION__/part-x.parquet", &f).ok(),
            Some(vec![ScalarValue::Utf8(Some(NULL_PARTITION_MARKER.into()))])
        );
    }

    #[test]
    fn canonical_text_of_values() {
        let text = |v: ScalarValue| partition_value_to_string(&v).ok().flatten();
        assert_eq!(text(ScalarValue::Int64(Some(-42))).as_deref(), Some("-42"));
        assert_eq!(
            text(ScalarValue::UInt64(Some(u64::MAX))).as_deref(),
            Some("18446744073709551615")
        );
        assert_eq!(
            text(ScalarValue::Boolean(Some(false))).as_deref(),
            Some("false")
        );
        assert_eq!(
            text(ScalarValue::Date32(Some(17486))).as_deref(),
            Some("2017-11-16")
        );
        assert_eq!(
            text(ScalarValue::Date32(Some(0))).as_deref(),
            Some("1970-01-01")
        );
        assert_eq!(
            text(ScalarValue::Date32(Some(-719_529))).as_deref(),
            Some("-0001-12-31")
        );
        assert_eq!(
            text(ScalarValue::Date32(Some(2_932_897))).as_deref(),
            Some("+10000-01-01")
        );
        assert_eq!(
            text(ScalarValue::Utf8View(Some("x y".into()))).as_deref(),
            Some("x y")
        );
        assert_eq!(
            partition_value_to_string(&ScalarValue::Int32(None)).ok(),
            Some(None)
        );
        assert_eq!(
            partition_value_from_str(None, &DataType::Date32).ok(),
            Some(ScalarValue::Date32(None))
        );
        assert_eq!(
            partition_value_from_str(Some("2000-02-29"), &DataType::Date32).ok(),
            Some(ScalarValue::Date32(Some(11_016)))
        );
        for (bad, dt) in [
            ("2001-02-29", DataType::Date32),
            ("2001-13-01", DataType::Date32),
            ("2001-1-01", DataType::Date32),
            ("20010101", DataType::Date32),
            ("", DataType::Date32),
            ("300", DataType::UInt8),
            ("-1", DataType::UInt32),
            ("+1", DataType::Int32),
            (" 1", DataType::Int32),
            ("True", DataType::Boolean),
            ("", DataType::Int64),
        ] {
            assert!(
                matches!(
                    partition_value_from_str(Some(bad), &dt),
                    Err(Error::InvalidPartitionPath { .. })
                ),
                "{bad:?} as {dt}"
            );
        }
    }

    #[test]
    fn unsupported_partition_types() {
        assert!(matches!(
            partition_value_to_string(&ScalarValue::Float64(Some(1.5))),
            Err(Error::UnsupportedColumnType {
                role: "partition",
                ..
            })
        ));
        assert!(matches!(
            partition_value_from_str(Some("1.5"), &DataType::Float64),
            Err(Error::UnsupportedColumnType {
                role: "partition",
                ..
            })
        ));
        let result = partition_path(&["f".to_string()], &[ScalarValue::Float32(Some(1.0))]);
        assert!(matches!(
            result,
            Err(Error::UnsupportedColumnType { role: "partition", ref column, .. }) if column == "f"
        ));
        assert!(!is_partition_type(&DataType::Float64));
        assert!(!is_partition_type(&DataType::Date64));
        assert!(is_partition_type(&DataType::Utf8View));
        assert!(is_partition_type(&DataType::UInt64));
    }

    #[test]
    fn paths_of_several_columns() {
        let columns = ["a".to_string(), "b c".to_string()];
        let values = [
            ScalarValue::Int32(Some(1)),
            ScalarValue::Utf8(Some("x/y".into())),
        ];
        assert_eq!(
            partition_path(&columns, &values).ok().as_deref(),
            Some("a=1/b%20c=x%2Fy")
        );
        assert_eq!(partition_path(&[], &[]).ok().as_deref(), Some(""));
        assert!(matches!(
            partition_path(&columns, &values[..1]),
            Err(Error::InvalidLayout { .. })
        ));
        let f = fields(&[("a", DataType::Int32), ("b c", DataType::Utf8)]);
        assert_eq!(
            parse_partition_path("a=1/b%20c=x%2Fy/part-00003-abc.parquet", &f).ok(),
            Some(values.to_vec())
        );
        assert_eq!(
            parse_partition_path("part-x.parquet", &[]).ok(),
            Some(vec![])
        );
    }

    #[test]
    fn parse_errors() {
        let f = fields(&[("a", DataType::Int32), ("b", DataType::Utf8)]);
        let err = |path: &str| match parse_partition_path(path, &f) {
            Err(Error::InvalidPartitionPath { path: p, reason }) => {
                assert_eq!(p, path);
                reason
            }
            other => panic!("{path}: expected InvalidPartitionPath, got {other:?}"),
        };
        assert!(err("a=1/c=x/part.parquet").contains("\"c\""));
        assert!(err("b=1/a=x/part.parquet").contains("expected \"a\""));
        err("a=1");
        err("");
        err("a=1/bx/part.parquet");
        err("a=x/b=y/part.parquet");
        err("a=1/b=%G1/part.parquet");
        err("a=1/b=%4");
        err("a=1/b=%FF/part.parquet");
        err("a%ZZ=1/b=y/part.parquet");
    }

    #[test]
    fn data_file_names() {
        let bucketed = data_file_name(Some(3));
        assert!(bucketed.starts_with("part-00003-"), "{bucketed}");
        assert!(bucketed.ends_with(".parquet"));
        let id = &bucketed["part-00003-".len()..bucketed.len() - ".parquet".len()];
        assert_eq!(
            uuid::Uuid::parse_str(id).map(|u| u.get_version_num()).ok(),
            Some(4)
        );
        let plain = data_file_name(None);
        let id = &plain["part-".len()..plain.len() - ".parquet".len()];
        assert!(uuid::Uuid::parse_str(id).is_ok(), "{plain}");
        assert_ne!(data_file_name(None), data_file_name(None));
        assert_eq!(encode_path_segment(&bucketed), bucketed);
    }

    /// Strings rich in the characters the encoding exists for.
    fn tricky_string() -> impl Strategy<Value = String> {
        prop_oneof![
            any::<String>(),
            "[./= %_a-zA-Z0-9\u{e9}\u{1F600}-]{0,12}",
            Just(NULL_PARTITION_MARKER.to_string()),
            Just(".".to_string()),
            Just("..".to_string()),
            Just(String::new()),
            Just("%2F".to_string()),
        ]
    }

    /// A typed partition value (null about a fifth of the time) with a matching type.
    fn o<T: std::fmt::Debug>(p: impl Strategy<Value = T>) -> impl Strategy<Value = Option<T>> {
        proptest::option::weighted(0.8, p)
    }

    fn typed_value() -> impl Strategy<Value = ScalarValue> {
        prop_oneof![
            o(tricky_string()).prop_map(ScalarValue::Utf8),
            o(tricky_string()).prop_map(ScalarValue::LargeUtf8),
            o(tricky_string()).prop_map(ScalarValue::Utf8View),
            o(any::<i8>()).prop_map(ScalarValue::Int8),
            o(any::<i16>()).prop_map(ScalarValue::Int16),
            o(any::<i32>()).prop_map(ScalarValue::Int32),
            o(any::<i64>()).prop_map(ScalarValue::Int64),
            o(any::<u8>()).prop_map(ScalarValue::UInt8),
            o(any::<u16>()).prop_map(ScalarValue::UInt16),
            o(any::<u32>()).prop_map(ScalarValue::UInt32),
            o(any::<u64>()).prop_map(ScalarValue::UInt64),
            o(any::<bool>()).prop_map(ScalarValue::Boolean),
            o(any::<i32>()).prop_map(ScalarValue::Date32),
            o(-800_000..3_000_000i32).prop_map(ScalarValue::Date32),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1024))]

        #[test]
        fn decode_inverts_encode(s in tricky_string()) {
            let encoded = encode_path_segment(&s);
            prop_assert!(
                encoded.bytes().all(|b| is_unreserved(b) || b == b'%'),
                "{:?}", encoded
            );
            prop_assert!(!encoded.contains('/'));
            prop_assert!(!encoded.starts_with('.'));
            prop_assert!(s == NULL_PARTITION_MARKER || encoded != NULL_PARTITION_MARKER);
            prop_assert_eq!(decode_path_segment(&encoded).ok(), Some(s));
        }

        #[test]
        fn dates_round_trip_as_text(days in any::<i32>()) {
            let text = format_date32(days);
            prop_assert_eq!(parse_date32(&text), Some(days), "{}", text);
        }

        #[test]
        fn partition_paths_round_trip(
            columns in proptest::collection::vec((tricky_string(), typed_value()), 0..5),
            file in prop_oneof![Just(""), Just("/part-00003-x.parquet"), Just("/part-x.parquet")],
        ) {
            let names: Vec<String> = columns.iter().map(|(n, _)| n.clone()).collect();
            let values: Vec<ScalarValue> = columns.iter().map(|(_, v)| v.clone()).collect();
            let f: Vec<FieldRef> = columns
                .iter()
                .map(|(n, v)| Arc::new(Field::new(n, v.data_type(), true)))
                .collect();
            let path = partition_path(&names, &values).unwrap_or_else(|e| panic!("{e}"));
            prop_assert_eq!(path.split('/').filter(|s| !s.is_empty()).count(), values.len());
            prop_assert!(path.is_empty() || path.split('/').all(|s| s.contains('=')));
            let full = format!("{path}{file}");
            let parsed = parse_partition_path(&full, &f);
            prop_assert_eq!(parsed.ok(), Some(values), "{}", full);
        }
    }
}
