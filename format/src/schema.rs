//! Schema rules and the schema's on-store form.
//!
//! A write must carry exactly the dataset's columns with the same types and nullability
//! (column order may differ; rows are reordered to the dataset's order). New nullable
//! columns may be added explicitly ([`SchemaEvolution::AddColumns`]); old files read them
//! as nulls. Every other difference is refused with an error that names the column and
//! both types, before anything is written.

use std::str::FromStr;
use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Whether a write may change the dataset schema.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SchemaEvolution {
    /// The write must match the dataset schema exactly.
    #[default]
    Strict,
    /// Columns absent from the dataset are appended to its schema, if nullable.
    AddColumns,
}

/// Check a write's schema against the dataset's, returning the schema the dataset will
/// have after the write (the same one unless columns are added).
pub fn reconcile(
    dataset: &Schema,
    write: &Schema,
    evolution: SchemaEvolution,
) -> Result<SchemaRef> {
    for expected in dataset.fields() {
        match write.field_with_name(expected.name()) {
            Err(_) => {
                return Err(Error::ColumnMissing {
                    column: expected.name().clone(),
                    expected: expected.data_type().clone(),
                });
            }
            Ok(found) if found.data_type() != expected.data_type() => {
                return Err(Error::ColumnTypeMismatch {
                    column: expected.name().clone(),
                    expected: expected.data_type().clone(),
                    found: found.data_type().clone(),
                });
            }
            Ok(found) if found.is_nullable() && !expected.is_nullable() => {
                return Err(Error::ColumnNullabilityMismatch {
                    column: expected.name().clone(),
                });
            }
            Ok(_) => {}
        }
    }
    let mut fields: Vec<Arc<Field>> = dataset.fields().iter().cloned().collect();
    for found in write.fields() {
        if dataset.field_with_name(found.name()).is_ok() {
            continue;
        }
        match evolution {
            SchemaEvolution::Strict => {
                return Err(Error::ColumnNotInDataset {
                    column: found.name().clone(),
                    found: found.data_type().clone(),
                });
            }
            SchemaEvolution::AddColumns if !found.is_nullable() => {
                return Err(Error::NewColumnNotNullable {
                    column: found.name().clone(),
                    found: found.data_type().clone(),
                });
            }
            SchemaEvolution::AddColumns => fields.push(found.clone()),
        }
    }
    if fields.len() == dataset.fields().len() {
        return Ok(Arc::new(dataset.clone()));
    }
    Ok(Arc::new(Schema::new_with_metadata(
        fields,
        dataset.metadata().clone(),
    )))
}

/// Reorder a batch's columns to `schema`'s order, filling columns it lacks with nulls
/// (only valid after [`reconcile`] accepted the batch's schema).
pub fn conform_batch(batch: &RecordBatch, schema: &SchemaRef) -> Result<RecordBatch> {
    if batch.schema().fields() == schema.fields() {
        return Ok(batch.clone());
    }
    let columns = schema
        .fields()
        .iter()
        .map(|field| match batch.schema().index_of(field.name()) {
            Ok(i) => Ok(batch.column(i).clone()),
            Err(_) if field.is_nullable() => Ok(arrow::array::new_null_array(
                field.data_type(),
                batch.num_rows(),
            )),
            Err(_) => Err(Error::ColumnMissing {
                column: field.name().clone(),
                expected: field.data_type().clone(),
            }),
        })
        .collect::<Result<Vec<_>>>()?;
    RecordBatch::try_new(schema.clone(), columns).map_err(|e| Error::arrow("reordering columns", e))
}

/// The on-store form of one column (format version 1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct FieldV1 {
    pub name: String,
    /// Arrow's textual type (`Int64`, `Utf8`, `Timestamp(µs, "UTC")`, …), as arrow-schema
    /// prints and parses it; checked to round-trip before it is written.
    #[serde(rename = "type")]
    pub data_type: String,
    pub nullable: bool,
}

pub(crate) fn schema_to_v1(schema: &Schema) -> Result<Vec<FieldV1>> {
    schema
        .fields()
        .iter()
        .map(|field| {
            let text = field.data_type().to_string();
            match DataType::from_str(&text) {
                Ok(parsed) if &parsed == field.data_type() => Ok(FieldV1 {
                    name: field.name().clone(),
                    data_type: text,
                    nullable: field.is_nullable(),
                }),
                _ => Err(Error::UnsupportedColumnType {
                    role: "dataset",
                    column: field.name().clone(),
                    data_type: field.data_type().clone(),
                }),
            }
        })
        .collect()
}

pub(crate) fn schema_from_v1(fields: &[FieldV1], path: &str) -> Result<SchemaRef> {
    let fields = fields
        .iter()
        .map(|f| {
            let data_type =
                DataType::from_str(&f.data_type).map_err(|e| Error::CorruptManifest {
                    path: path.to_string(),
                    reason: format!(
                        "column {:?} has an unreadable type {:?}: {e}",
                        f.name, f.data_type
                    ),
                })?;
            Ok(Field::new(&f.name, data_type, f.nullable))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Arc::new(Schema::new(fields)))
}

/// The schema's column names, comma separated (for "unknown column" messages).
pub(crate) fn column_list(schema: &Schema) -> String {
    schema
        .fields()
        .iter()
        .map(|f| f.name().as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The schema of data files: the dataset schema without its partition columns (their
/// values live in the paths and the manifest, as the hive convention has it).
pub fn file_schema(schema: &Schema, partition_on: &[String]) -> SchemaRef {
    let fields: Vec<Arc<Field>> = schema
        .fields()
        .iter()
        .filter(|f| !partition_on.contains(f.name()))
        .cloned()
        .collect();
    Arc::new(Schema::new(fields))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::datatypes::TimeUnit;

    fn dataset() -> Schema {
        Schema::new(vec![
            Field::new("a", DataType::Int64, false),
            Field::new("b", DataType::Utf8, true),
        ])
    }

    #[test]
    fn identical_schema_in_any_order_is_accepted() {
        let write = Schema::new(vec![
            Field::new("b", DataType::Utf8, true),
            Field::new("a", DataType::Int64, false),
        ]);
        let out = reconcile(&dataset(), &write, SchemaEvolution::Strict).unwrap();
        assert_eq!(out.as_ref(), &dataset());
    }

    #[test]
    fn type_mismatch_names_column_and_both_types() {
        let write = Schema::new(vec![
            Field::new("a", DataType::Utf8, false),
            Field::new("b", DataType::Utf8, true),
        ]);
        let err = reconcile(&dataset(), &write, SchemaEvolution::Strict).unwrap_err();
        assert_eq!(
            err.to_string(),
            "column \"a\" has type Utf8 in the write but Int64 in the dataset"
        );
    }

    #[test]
    fn extra_column_needs_add_columns_and_must_be_nullable() {
        let mut fields: Vec<Field> = dataset()
            .fields()
            .iter()
            .map(|f| f.as_ref().clone())
            .collect();
        fields.push(Field::new("c", DataType::Float64, true));
        let write = Schema::new(fields.clone());
        let err = reconcile(&dataset(), &write, SchemaEvolution::Strict).unwrap_err();
        assert!(matches!(err, Error::ColumnNotInDataset { ref column, .. } if column == "c"));
        let evolved = reconcile(&dataset(), &write, SchemaEvolution::AddColumns).unwrap();
        assert_eq!(evolved.fields().len(), 3);

        fields[2] = Field::new("c", DataType::Float64, false);
        let err = reconcile(
            &dataset(),
            &Schema::new(fields),
            SchemaEvolution::AddColumns,
        )
        .unwrap_err();
        assert!(matches!(err, Error::NewColumnNotNullable { .. }));
    }

    #[test]
    fn missing_column_and_nullability_are_refused() {
        let write = Schema::new(vec![Field::new("a", DataType::Int64, false)]);
        assert!(matches!(
            reconcile(&dataset(), &write, SchemaEvolution::AddColumns).unwrap_err(),
            Error::ColumnMissing { .. }
        ));
        let write = Schema::new(vec![
            Field::new("a", DataType::Int64, true),
            Field::new("b", DataType::Utf8, true),
        ]);
        assert!(matches!(
            reconcile(&dataset(), &write, SchemaEvolution::Strict).unwrap_err(),
            Error::ColumnNullabilityMismatch { .. }
        ));
    }

    #[test]
    fn common_types_round_trip_through_the_on_store_form() {
        let schema = Schema::new(vec![
            Field::new("i8", DataType::Int8, true),
            Field::new("u64", DataType::UInt64, false),
            Field::new("f", DataType::Float64, true),
            Field::new("s", DataType::Utf8, true),
            Field::new("ls", DataType::LargeUtf8, true),
            Field::new("sv", DataType::Utf8View, true),
            Field::new("bin", DataType::Binary, true),
            Field::new("d", DataType::Date32, true),
            Field::new("ts", DataType::Timestamp(TimeUnit::Microsecond, None), true),
            Field::new(
                "tz",
                DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into())),
                true,
            ),
            Field::new("dec", DataType::Decimal128(15, 2), true),
            Field::new("b", DataType::Boolean, true),
        ]);
        let v1 = schema_to_v1(&schema).unwrap();
        assert_eq!(schema_from_v1(&v1, "x").unwrap().as_ref(), &schema);
    }
}
