//! Where rows go: hive-style partition paths, the bucket transform and data-file names.
//!
//! - Partition values are percent-encoded: every byte outside `[A-Za-z0-9_.~-]` and a
//!   leading `.`, so `/`, space, `=` and `%` can neither escape the dataset root nor be
//!   confused with the path syntax, and decoding is the exact inverse. Nulls are written as
//!   `__HIVE_DEFAULT_PARTITION__` (the hive convention); a real string equal to that
//!   marker is written with its first `_` encoded, so it still round-trips.
//! - Buckets use Iceberg's bucket transform: `(murmur3_x86_32(canonical bytes, 0) &
//!   i32::MAX) % num_buckets`.

mod bucket;
mod path;

pub use bucket::{bucket_for_scalar, bucket_ids, iceberg_hash_scalar, murmur3_x86_32};
pub use path::{
    MAX_PARTITION_SEGMENT_BYTES, NULL_PARTITION_MARKER, check_partition_value,
    check_partition_values, data_file_name, decode_path_segment, encode_path_segment,
    encoded_segment_len, parse_partition_path, partition_path, partition_value_from_str,
    partition_value_to_string,
};

use arrow::datatypes::Schema;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// How a dataset's rows are laid out in files: partition columns and buckets.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Layout {
    /// Hive partition columns, outermost first.
    pub partition_on: Vec<String>,
    /// Columns hashed together to pick a bucket; empty when not bucketed.
    pub bucket_by: Vec<String>,
    /// Number of buckets; `Some` exactly when `bucket_by` is non-empty.
    pub num_buckets: Option<u32>,
}

impl Layout {
    /// A layout without partitions or buckets.
    pub fn unpartitioned() -> Self {
        Self::default()
    }

    /// Check the layout against a schema: columns exist, types are usable, bucket count
    /// is positive, no column is used twice.
    pub fn validate(&self, schema: &Schema) -> Result<()> {
        for (role, columns) in [
            ("partition", &self.partition_on),
            ("bucket", &self.bucket_by),
        ] {
            for column in columns {
                let field = schema
                    .field_with_name(column)
                    .map_err(|_| Error::UnknownColumn {
                        role,
                        column: column.clone(),
                        available: crate::schema::column_list(schema),
                    })?;
                let usable = if role == "partition" {
                    path::is_partition_type(field.data_type())
                } else {
                    bucket::is_bucket_type(field.data_type())
                };
                if !usable {
                    return Err(Error::UnsupportedColumnType {
                        role,
                        column: column.clone(),
                        data_type: field.data_type().clone(),
                    });
                }
            }
            let mut seen = std::collections::HashSet::new();
            if let Some(dup) = columns.iter().find(|c| !seen.insert(c.as_str())) {
                return Err(Error::InvalidLayout {
                    reason: format!("{role} column {dup:?} is listed twice"),
                });
            }
        }
        if let Some(both) = self
            .bucket_by
            .iter()
            .find(|c| self.partition_on.contains(c))
        {
            return Err(Error::InvalidLayout {
                reason: format!(
                    "column {both:?} is both a partition and a bucket column; \
                     bucketing by a partition column puts every file in one bucket"
                ),
            });
        }
        if self.partition_on.len() == schema.fields().len() && !schema.fields().is_empty() {
            return Err(Error::InvalidLayout {
                reason: "every column is a partition column; data files would have no columns"
                    .to_string(),
            });
        }
        match (self.bucket_by.is_empty(), self.num_buckets) {
            (_, Some(0)) => Err(Error::InvalidLayout {
                reason: "num_buckets must be at least 1, got 0".to_string(),
            }),
            (true, Some(n)) => Err(Error::InvalidLayout {
                reason: format!("num_buckets is {n} but no bucket_by column is given"),
            }),
            (false, None) => Err(Error::InvalidLayout {
                reason: "bucket_by is given without num_buckets".to_string(),
            }),
            _ => Ok(()),
        }
    }

    /// Whether rows are hashed into buckets.
    pub fn is_bucketed(&self) -> bool {
        self.num_buckets.is_some()
    }
}
