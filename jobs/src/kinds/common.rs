//! What the job kinds share: store access relative to a dataset root, file reports,
//! staging clean-up.

use arrow::datatypes::{Schema, SchemaRef};
use bytes::Bytes;
use futures::StreamExt;
use object_store::{ObjectStoreExt, PutPayload};
use serde_json::Value;
use terrace_format::{
    DataFile, Layout, Location, decode_file_report, encode_file_report, new_report_path,
};

use crate::error::{Error, Result};
use crate::model::TaskId;

/// A location that means the same on every machine: URLs as given, local paths made
/// absolute (workers may run in another working directory).
pub(crate) fn absolute(text: &str) -> Result<String> {
    let is_url = text.split_once("://").is_some_and(|(scheme, _)| {
        !scheme.is_empty()
            && scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '+')
    });
    if is_url || text.trim().is_empty() {
        return Ok(text.to_string());
    }
    std::path::absolute(text)
        .map(|p| p.display().to_string())
        .map_err(|e| Error::invalid(text, format!("cannot resolve the path: {e}")))
}

/// An error of the `--where` predicate: one whose size or nesting is refused says so
/// after the flag (`--where: predicate too large: nested deeper than 64 levels …`).
pub(crate) fn where_error(e: terrace_planner::Error) -> Error {
    match e {
        terrace_planner::Error::PredicateTooLarge { .. } => {
            Error::invalid("--where", e.to_string())
        }
        e => Error::planner("--where")(e),
    }
}

/// Resolve a dataset (or output) location.
pub(crate) fn location(text: &str) -> Result<Location> {
    Location::parse(text).map_err(Error::format(format!("resolving {text}")))
}

/// Put `bytes` at `relative` below the location's root.
pub(crate) async fn put(loc: &Location, relative: &str, bytes: Bytes) -> Result<()> {
    let path = loc.child(relative);
    loc.store
        .put(&path, PutPayload::from(bytes))
        .await
        .map(|_| ())
        .map_err(|source| store_error(loc, relative, source))
}

/// The bytes at `relative` below the location's root.
pub(crate) async fn get(loc: &Location, relative: &str) -> Result<Bytes> {
    let path = loc.child(relative);
    let result = loc
        .store
        .get(&path)
        .await
        .map_err(|source| store_error(loc, relative, source))?;
    result
        .bytes()
        .await
        .map_err(|source| store_error(loc, relative, source))
}

pub(crate) fn store_error(loc: &Location, relative: &str, source: object_store::Error) -> Error {
    Error::Format {
        context: format!("accessing {relative} in {}", loc.display),
        source: Box::new(terrace_format::Error::ObjectStore {
            path: relative.to_string(),
            source,
        }),
    }
}

/// Remove every object below `relative_prefix` of `loc` (staging of a finished run);
/// returns how many were removed.
pub async fn delete_prefix(loc: &Location, relative_prefix: &str) -> Result<u64> {
    let prefix = loc.child(relative_prefix);
    let listed: Vec<_> = loc
        .store
        .list(Some(&prefix))
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<std::result::Result<_, _>>()
        .map_err(|source| store_error(loc, relative_prefix, source))?;
    let store = loc.store.clone();
    let results: Vec<_> = futures::stream::iter(listed)
        .map(|meta| {
            let store = store.clone();
            async move { store.delete(&meta.location).await }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    let mut removed = 0;
    for result in results {
        match result {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => removed += 1,
            Err(source) => return Err(store_error(loc, relative_prefix, source)),
        }
    }
    Ok(removed)
}

/// Write a report of `files` (not yet committed) to `<staging>/reports/<name>-<uuid>.parquet`
/// and return its path relative to the root; `None` when there are no files.
pub(crate) async fn write_report(
    loc: &Location,
    staging: &str,
    name: &str,
    files: &[DataFile],
    schema: &Schema,
    layout: &Layout,
) -> Result<Option<String>> {
    if files.is_empty() {
        return Ok(None);
    }
    let bytes = encode_file_report(files, schema, layout)
        .map_err(Error::format(format!("encoding the file report of {name}")))?;
    let path = new_report_path(staging, name);
    put(loc, &path, bytes).await?;
    Ok(Some(path))
}

/// The files reported by the completed tasks of a stage (their `report` results).
pub(crate) async fn read_reports(
    loc: &Location,
    results: &[(TaskId, Value)],
    schema: &SchemaRef,
    layout: &Layout,
) -> Result<Vec<DataFile>> {
    let paths: Vec<String> = results
        .iter()
        .filter_map(|(_, r)| r.get("report").and_then(Value::as_str).map(str::to_string))
        .collect();
    let reads = futures::stream::iter(paths)
        .map(|path| async move {
            let bytes = get(loc, &path).await?;
            decode_file_report(bytes, schema.clone(), layout, &path)
                .map_err(Error::format(format!("reading the file report {path}")))
        })
        .buffered(16)
        .collect::<Vec<_>>()
        .await;
    let mut files = Vec::new();
    for read in reads {
        files.extend(read?);
    }
    Ok(files)
}
