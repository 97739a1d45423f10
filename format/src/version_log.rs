//! The version log: the version files under `_terrace/versions/`, the `_terrace/_latest`
//! hint, and the reads of the files a version references.
//!
//! A version exists exactly when its file does, and the only write that makes one is
//! [`put_version`], a put-if-absent: that put is the commit point. The `_latest` hint
//! saves a listing and is never trusted alone ([`latest_version`]). As delta-rs's
//! `LogStore`, this is the one seam between a dataset's history and the object store:
//! [`Dataset`](crate::Dataset) opens and time-travels through it, the commit protocol puts
//! versions through it, gc lists and loads versions through it, and segment and index
//! files are read through it, so those modules depend on the log and not on each other.

use std::sync::Arc;

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStoreExt, PutMode, PutOptions, PutPayload};

use crate::error::{Error, Result};
use crate::location::Location;
use crate::manifest::{
    FileList, Manifest, SegmentSummary, Snapshot, decode_segment, decode_version_file,
    encode_version_file,
};
use crate::names::{
    LATEST_HINT, VERSIONS_DIR, new_probe_path, parse_version_file_name, version_path,
};

/// Every version number present, ascending.
pub(crate) async fn list_versions(location: &Location) -> Result<Vec<u64>> {
    let prefix = location.child(VERSIONS_DIR);
    let mut versions: Vec<u64> = location
        .store
        .list(Some(&prefix))
        .map_err(|e| Error::store(&prefix, e))
        .try_filter_map(|meta| async move {
            Ok(meta.location.filename().and_then(parse_version_file_name))
        })
        .try_collect()
        .await?;
    versions.sort_unstable();
    if versions.is_empty() {
        return Err(Error::DatasetNotFound {
            location: location.display.clone(),
        });
    }
    Ok(versions)
}

/// The latest version: the newest version file listed after the hint's (one listing
/// that starts there, however long the history), or the hint itself when there is none;
/// without a usable hint, the whole versions directory.
///
/// Never the hint alone, nor the hint stepped forward one version at a time: with
/// versions 0, 1, 2 and 4 (3 removed by hand) and the hint at 2, stepping would stop at 2,
/// and the next commit would be acknowledged as version 3 and then never be seen under 4.
pub(crate) async fn latest_version(location: &Location) -> Result<u64> {
    let hint = match get_bytes(location, &location.child(LATEST_HINT)).await {
        Ok(bytes) => std::str::from_utf8(&bytes)
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok()),
        Err(Error::ObjectStore {
            source: object_store::Error::NotFound { .. },
            ..
        }) => None,
        Err(e) => return Err(e),
    };
    if let Some(hint) = hint {
        if let Some(newest) = versions_from(location, hint.saturating_add(1))
            .await?
            .last()
        {
            return Ok(*newest);
        }
        if exists(location, hint).await? {
            return Ok(hint);
        }
    }
    Ok(*list_versions(location)
        .await?
        .last()
        .unwrap_or_else(|| unreachable!("list_versions never returns an empty list")))
}

/// The versions numbered `from` or more, ascending, from one listing that starts there
/// (version file names sort as their numbers, and stores list from an offset).
pub(crate) async fn versions_from(location: &Location, from: u64) -> Result<Vec<u64>> {
    let prefix = location.child(VERSIONS_DIR);
    let listing = match from.checked_sub(1) {
        Some(below) => location
            .store
            .list_with_offset(Some(&prefix), &location.child(&version_path(below))),
        None => location.store.list(Some(&prefix)),
    };
    let mut versions: Vec<u64> = listing
        .map_err(|e| Error::store(&prefix, e))
        .try_filter_map(|meta| async move {
            Ok(meta
                .location
                .filename()
                .and_then(parse_version_file_name)
                .filter(|v| *v >= from))
        })
        .try_collect()
        .await?;
    versions.sort_unstable();
    Ok(versions)
}

async fn exists(location: &Location, version: u64) -> Result<bool> {
    let path = location.child(&version_path(version));
    match location.store.head(&path).await {
        Ok(_) => Ok(true),
        Err(object_store::Error::NotFound { .. }) => Ok(false),
        Err(e) => Err(Error::store(&path, e)),
    }
}

/// Load and check one version file.
pub(crate) async fn load_snapshot(location: &Location, version: u64) -> Result<Snapshot> {
    let path = location.child(&version_path(version));
    let bytes = match get_bytes(location, &path).await {
        Err(Error::ObjectStore {
            source: object_store::Error::NotFound { .. },
            ..
        }) => {
            return Err(Error::VersionNotFound {
                location: location.display.clone(),
                version,
            });
        }
        other => other?,
    };
    let manifest = decode_version_file(&bytes, path.as_ref())?;
    if manifest.version != version {
        return Err(Error::CorruptManifest {
            path: path.to_string(),
            reason: format!("it says it is version {}", manifest.version),
        });
    }
    Ok(Snapshot {
        manifest: Arc::new(manifest),
    })
}

/// Write a version file only if it does not exist yet: the commit point.
pub(crate) async fn put_version(location: &Location, manifest: &Manifest) -> Result<()> {
    let bytes = encode_version_file(manifest)?;
    let path = location.child(&version_path(manifest.version));
    location
        .store
        .put_opts(
            &path,
            PutPayload::from(bytes),
            PutOptions::from(PutMode::Create),
        )
        .await
        .map_err(|e| match e {
            object_store::Error::NotImplemented { .. } => Error::ConditionalPutUnsupported {
                location: location.display.clone(),
            },
            e => Error::store(&path, e),
        })?;
    Ok(())
}

/// Best effort: the hint only saves a listing; readers never trust it alone.
pub(crate) async fn write_latest_hint(location: &Location, version: u64) {
    let path = location.child(LATEST_HINT);
    if let Err(e) = location
        .store
        .put(&path, PutPayload::from(version.to_string().into_bytes()))
        .await
    {
        tracing::debug!(%path, error = %e, "could not update the latest-version hint");
    }
}

/// Prove the store refuses a second create of the same object, so commits cannot race.
pub(crate) async fn probe_conditional_put(location: &Location) -> Result<()> {
    let path = location.child(&new_probe_path());
    let create = || {
        location.store.put_opts(
            &path,
            PutPayload::from_static(b"probe"),
            PutOptions::from(PutMode::Create),
        )
    };
    let unsupported = || Error::ConditionalPutUnsupported {
        location: location.display.clone(),
    };
    let result = match create().await {
        Ok(_) => match create().await {
            Err(object_store::Error::AlreadyExists { .. }) => Ok(()),
            Ok(_) | Err(object_store::Error::NotImplemented { .. }) => Err(unsupported()),
            Err(e) => Err(Error::store(&path, e)),
        },
        Err(object_store::Error::NotImplemented { .. }) => Err(unsupported()),
        Err(e) => Err(Error::store(&path, e)),
    };
    if let Err(e) = location.store.delete(&path).await {
        tracing::debug!(%path, error = %e, "could not remove the conditional-put probe");
    }
    result
}

/// Read the files listed by one segment of `snapshot`.
pub(crate) async fn read_segment(
    location: &Location,
    snapshot: &Snapshot,
    segment: &SegmentSummary,
) -> Result<FileList> {
    let path = location.child(&segment.path);
    let bytes = get_bytes(location, &path).await?;
    decode_segment(bytes, snapshot.schema(), snapshot.layout(), path.as_ref())
}

/// The bytes of the object at `path`.
pub(crate) async fn get_bytes(location: &Location, path: &Path) -> Result<Bytes> {
    let result = location
        .store
        .get(path)
        .await
        .map_err(|e| Error::store(path, e))?;
    result.bytes().await.map_err(|e| Error::store(path, e))
}
