//! Dataset locations: a plain path or a URL, turned into an object store and a root path.
//!
//! - `./lake/x`, `/abs/x`, `file:///abs/x`: the local filesystem.
//! - `memory://name/prefix`: an in-memory store shared by every open of the same `name` in
//!   this process (object_store's `InMemory` is per instance, and tests and embedded jobs
//!   need several handles on one dataset).
//! - `s3://bucket/prefix`, `gs://bucket/prefix`, `az://container/prefix` (and the other
//!   spellings object_store accepts): object_store's own builders, configured from the
//!   environment (`AWS_ACCESS_KEY_ID`, `AWS_ENDPOINT`, `AWS_ALLOW_HTTP`, `GOOGLE_…`,
//!   `AZURE_…`), exactly as object_store documents them.
//!
//! Whether the store can create an object only if it is absent is checked when a dataset
//! is created (see [`crate::Dataset::create`]); a store that cannot is refused.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreScheme};
use url::Url;

use crate::error::{Error, Result};

/// A dataset location resolved to a store and a root path inside it.
#[derive(Debug, Clone)]
pub struct Location {
    /// The location as the user wrote it (for messages).
    pub display: String,
    /// The store holding the dataset.
    pub store: Arc<dyn ObjectStore>,
    /// The dataset root inside the store.
    pub root: Path,
    /// The store is this machine's filesystem or memory, where a byte written costs a
    /// copy rather than a transfer (so scratch files are better left uncompressed).
    pub local: bool,
    /// The root's directory when the store is the local filesystem (gc looks there for
    /// the temporary files of killed puts, which the store's listing hides).
    pub(crate) fs_root: Option<std::path::PathBuf>,
}

fn memory_stores() -> &'static Mutex<HashMap<String, Arc<InMemory>>> {
    static STORES: OnceLock<Mutex<HashMap<String, Arc<InMemory>>>> = OnceLock::new();
    STORES.get_or_init(Default::default)
}

impl Location {
    /// Resolve a path or URL; cloud stores are configured from the environment.
    pub fn parse(location: &str) -> Result<Location> {
        Self::parse_with(location, std::iter::empty::<(String, String)>())
    }

    /// Resolve a path or URL with extra object-store options (object_store's keys, such
    /// as `aws_endpoint`), which take precedence over the environment.
    pub fn parse_with<I, K, V>(location: &str, options: I) -> Result<Location>
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        let options: Vec<(String, String)> = options
            .into_iter()
            .map(|(k, v)| (k.into().to_ascii_lowercase(), v.into()))
            .collect();
        let invalid = |reason: String| Error::InvalidLocation {
            location: location.to_string(),
            reason,
        };
        if location.trim().is_empty() {
            return Err(invalid("the location is empty".to_string()));
        }
        let looks_like_url = location.split_once("://").is_some_and(|(scheme, _)| {
            !scheme.is_empty()
                && scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '+')
        });
        if !looks_like_url {
            return Self::local(location, std::path::Path::new(location));
        }
        let url = Url::parse(location).map_err(|e| invalid(format!("not a valid URL: {e}")))?;
        match url.scheme() {
            "file" => {
                let path = url
                    .to_file_path()
                    .map_err(|()| invalid("not a local file URL".to_string()))?;
                Self::local(location, &path)
            }
            "memory" => {
                let name = url.host_str().unwrap_or_default().to_string();
                let root = Path::from_url_path(url.path())
                    .map_err(|e| invalid(format!("invalid path: {e}")))?;
                let mut stores = memory_stores()
                    .lock()
                    .map_err(|_| invalid("the in-memory store registry is poisoned".to_string()))?;
                let store = stores.entry(name).or_default().clone();
                Ok(Location {
                    display: location.trim_end_matches('/').to_string(),
                    store,
                    root,
                    local: true,
                    fs_root: None,
                })
            }
            _ => {
                let (scheme, _) = ObjectStoreScheme::parse(&url)
                    .map_err(|e| invalid(format!("unsupported URL scheme: {e}")))?;
                if matches!(scheme, ObjectStoreScheme::Http) {
                    return Err(invalid(
                        "plain HTTP(S) stores cannot create objects atomically; use s3://, gs:// or az://"
                            .to_string(),
                    ));
                }
                let from_env = std::env::vars().map(|(k, v)| (k.to_ascii_lowercase(), v));
                let (store, root) = object_store::parse_url_opts(&url, from_env.chain(options))
                    .map_err(|e| invalid(format!("cannot configure the object store: {e}")))?;
                Ok(Location {
                    display: location.trim_end_matches('/').to_string(),
                    store: Arc::from(store),
                    root,
                    local: false,
                    fs_root: None,
                })
            }
        }
    }

    fn local(display: &str, path: &std::path::Path) -> Result<Location> {
        let invalid = |reason: String| Error::InvalidLocation {
            location: display.to_string(),
            reason,
        };
        let absolute = std::path::absolute(path)
            .map_err(|e| invalid(format!("cannot resolve the path: {e}")))?;
        let absolute = normalize(&absolute);
        let root = Path::from_absolute_path(&absolute)
            .map_err(|e| invalid(format!("invalid path: {e}")))?;
        let store = object_store::local::LocalFileSystem::new().with_automatic_cleanup(true);
        Ok(Location {
            display: display.trim_end_matches('/').to_string(),
            store: Arc::new(store),
            root,
            local: true,
            fs_root: Some(absolute),
        })
    }

    /// The object path of `relative` below the dataset root.
    pub fn child(&self, relative: &str) -> Path {
        join(&self.root, relative)
    }

    /// `path` relative to the dataset root (segments as the store spells them, joined by
    /// `/`; empty for the root itself), or `None` when it is not below the root.
    pub(crate) fn relative(&self, path: &Path) -> Option<String> {
        let parts = path.prefix_match(&self.root)?;
        Some(
            parts
                .map(|p| p.as_ref().to_string())
                .collect::<Vec<_>>()
                .join("/"),
        )
    }
}

/// `root/relative`, where `relative` is already a valid object path ("a/b/c").
///
/// Parsed, not built with `Path::from`: that would encode the `%` of percent-encoded
/// partition values a second time (`x%2Fy` -> `x%252Fy`), and hive readers would decode
/// the wrong value.
pub(crate) fn join(root: &Path, relative: &str) -> Path {
    let relative = relative.trim_matches('/');
    let joined = if root.as_ref().is_empty() {
        relative.to_string()
    } else if relative.is_empty() {
        return root.clone();
    } else {
        format!("{}/{}", root.as_ref(), relative)
    };
    Path::parse(&joined).unwrap_or_else(|_| Path::from(joined.as_str()))
}

/// Remove `.` and `..` components without touching the filesystem (so a dataset can be
/// named before its directory exists).
fn normalize(path: &std::path::Path) -> std::path::PathBuf {
    use std::path::Component;
    let mut out = std::path::PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_relative_path_becomes_absolute_local_path() {
        let location = Location::parse("./lake/../lake/flights").unwrap();
        let cwd = std::env::current_dir().unwrap();
        let expected = Path::from_absolute_path(cwd.join("lake/flights")).unwrap();
        assert_eq!(location.root, expected);
        assert_eq!(location.display, "./lake/../lake/flights");
        assert!(location.local);
    }

    #[test]
    fn memory_urls_with_the_same_name_share_a_store() {
        let a = Location::parse("memory://shared-test/a").unwrap();
        let b = Location::parse("memory://shared-test/b").unwrap();
        assert!(Arc::ptr_eq(&a.store, &b.store));
        assert_eq!(a.root.as_ref(), "a");
        let c = Location::parse("memory://other-test/a").unwrap();
        assert!(!Arc::ptr_eq(&a.store, &c.store));
        assert!(a.local);
    }

    #[test]
    fn unsupported_and_empty_locations_are_refused() {
        for bad in ["", "ftp://host/x", "https://example.com/data"] {
            let err = Location::parse(bad).unwrap_err();
            assert!(matches!(err, Error::InvalidLocation { .. }), "{bad}: {err}");
        }
    }

    #[test]
    fn join_puts_relative_paths_below_the_root() {
        let root = Path::from("lake/flights");
        let child = join(&root, "origin=JFK/part-1.parquet");
        assert_eq!(child.as_ref(), "lake/flights/origin=JFK/part-1.parquet");
        assert_eq!(join(&Path::from(""), "x/y").as_ref(), "x/y");
        // Percent-encoded partition values stay as written.
        let encoded = join(&root, "p=x%2Fy/part-1.parquet");
        assert_eq!(encoded.as_ref(), "lake/flights/p=x%2Fy/part-1.parquet");
    }
}
