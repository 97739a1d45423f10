//! A test hook that holds a commit just before its version put, so tests can make a race
//! (gc, cancel, a kill) happen at exactly that point instead of hoping for the timing.
//!
//! When `TERRACE_TEST_PAUSE_BEFORE_PUT` names a directory, a commit creates `paused` in it
//! and waits until `resume` appears there (checking every 20 ms), then goes on. Unset, it
//! costs one environment lookup per commit.

use std::path::PathBuf;
use std::time::Duration;

/// The environment variable naming the hook's directory.
pub const PAUSE_BEFORE_PUT_VAR: &str = "TERRACE_TEST_PAUSE_BEFORE_PUT";

/// Waits while the hook holds this commit; returns at once when the hook is off.
pub(crate) async fn before_version_put() {
    let Some(dir) = std::env::var_os(PAUSE_BEFORE_PUT_VAR).map(PathBuf::from) else {
        return;
    };
    // The hook is for tests that set it up; a missing directory just means no pause.
    if std::fs::write(dir.join("paused"), b"").is_err() {
        return;
    }
    while !dir.join("resume").exists() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
