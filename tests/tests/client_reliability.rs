//! The client's side of reliability, end to end with real processes: a waiting client
//! rides out a queue outage (and, when it gives up, says how to follow the job); running
//! an ingest again whose first run committed is a no-op; a cancel during the commit is
//! answered with what the commit did; a queue that cannot be written fails the command at
//! once; a `--db` that names nothing is an error rather than a new, empty queue.
//!
//! The PostgreSQL server is shared with other tests, so an outage is made for one client
//! only: it reaches the queue through a loopback TCP proxy that the test takes down and
//! brings back, while a worker connected directly goes on. Races at the commit are made
//! deterministic with the commit pause hook (`TERRACE_TEST_PAUSE_BEFORE_PUT`).

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use terrace_tests::{
    Output, PgDatabase, eventually, spawn_terrace_with, stop_terrace, terrace, terrace_bin,
    write_flights_csv,
};

const PAUSE_VAR: &str = "TERRACE_TEST_PAUSE_BEFORE_PUT";

/// A loopback TCP proxy to a server that the test takes down (the listener closed and
/// every connection through it cut, so the client sees resets and then refusals) and
/// brings back on the same port.
struct Proxy {
    port: u16,
    upstream: SocketAddr,
    running: Option<Running>,
}

struct Running {
    stop: Arc<AtomicBool>,
    accept: JoinHandle<()>,
    connections: Arc<Mutex<Vec<TcpStream>>>,
}

impl Proxy {
    fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        let port = listener.local_addr().unwrap().port();
        let mut proxy = Proxy {
            port,
            upstream,
            running: None,
        };
        proxy.serve(listener);
        proxy
    }

    fn serve(&mut self, listener: TcpListener) {
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let connections = Arc::new(Mutex::new(Vec::new()));
        let upstream = self.upstream;
        let accept = {
            let (stop, connections) = (stop.clone(), connections.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    let client = match listener.accept() {
                        Ok((client, _)) => client,
                        Err(e) if e.kind() == ErrorKind::WouldBlock => {
                            std::thread::sleep(Duration::from_millis(5));
                            continue;
                        }
                        Err(_) => continue,
                    };
                    let Ok(server) = TcpStream::connect(upstream) else {
                        continue;
                    };
                    client.set_nonblocking(false).unwrap();
                    let mut held = connections.lock().unwrap();
                    held.push(client.try_clone().unwrap());
                    held.push(server.try_clone().unwrap());
                    drop(held);
                    pipe(client.try_clone().unwrap(), server.try_clone().unwrap());
                    pipe(server, client);
                }
                // The listener drops here: new connections are refused.
            })
        };
        self.running = Some(Running {
            stop,
            accept,
            connections,
        });
    }

    /// Take the proxy down: refuse new connections and cut the open ones.
    fn down(&mut self) {
        let Some(running) = self.running.take() else {
            return;
        };
        running.stop.store(true, Ordering::SeqCst);
        running.accept.join().unwrap();
        for c in running.connections.lock().unwrap().drain(..) {
            let _ = c.shutdown(Shutdown::Both);
        }
    }

    /// Bring it back on the same port.
    fn up(&mut self) {
        let listener = eventually(Duration::from_secs(10), "the proxy port to be free", || {
            TcpListener::bind(("127.0.0.1", self.port)).ok()
        });
        self.serve(listener);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.down();
    }
}

fn pipe(mut from: TcpStream, mut to: TcpStream) {
    std::thread::spawn(move || {
        let mut buf = [0u8; 16 * 1024];
        loop {
            match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if to.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            }
        }
        let _ = to.shutdown(Shutdown::Both);
        let _ = from.shutdown(Shutdown::Both);
    });
}

/// `db`'s URL through the proxy on `port`.
fn through(db: &PgDatabase, port: u16) -> String {
    db.url
        .replace("127.0.0.1:5432", &format!("127.0.0.1:{port}"))
}

/// A `terrace` running in the background with its stdout and stderr in files.
struct Background {
    child: Child,
    stdout: PathBuf,
    stderr: PathBuf,
}

impl Background {
    fn start(cwd: &Path, env: &[(&str, &str)], args: &[&str], name: &str) -> Background {
        let stdout = cwd.join(format!("{name}.out"));
        let stderr = cwd.join(format!("{name}.err"));
        let child = Command::new(terrace_bin())
            .current_dir(cwd)
            .env_remove("TERRACE_DB")
            .envs(env.iter().map(|(k, v)| (*k, *v)))
            .args(args)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&stdout).unwrap())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .expect("start terrace");
        Background {
            child,
            stdout,
            stderr,
        }
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// Wait for it to exit, at most `within`.
    fn finish(mut self, within: Duration) -> Output {
        let deadline = Instant::now() + within;
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "terrace did not exit within {within:?}:\n{}\n{}",
                    std::fs::read_to_string(&self.stdout).unwrap_or_default(),
                    self.stderr()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        Output {
            code: status.code().unwrap_or(-1),
            stdout: std::fs::read_to_string(&self.stdout).unwrap_or_default(),
            stderr: self.stderr(),
        }
    }
}

fn json(out: &Output) -> serde_json::Value {
    serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}):\n{}\n{}", out.stdout, out.stderr))
}

fn status(cwd: &Path, db: &str, id: i64) -> serde_json::Value {
    json(&terrace(cwd, &[], &["--db", db, "status", &id.to_string(), "--json"]).ok())
}

fn rows(cwd: &Path, dataset: &str) -> u64 {
    json(&terrace(cwd, &[], &["inspect", dataset, "--json"]).ok())["rows"]
        .as_u64()
        .unwrap()
}

/// The newest job's id.
fn newest_job(cwd: &Path, db: &str) -> i64 {
    let jobs = json(&terrace(cwd, &[], &["--db", db, "jobs", "--json"]).ok());
    jobs[0]["id"].as_i64().expect("a job")
}

fn wait_for_state(cwd: &Path, db: &str, id: i64, state: &str) -> serde_json::Value {
    eventually(
        Duration::from_secs(60),
        &format!("job {id} {state}"),
        || {
            let job = status(cwd, db, id);
            (job["state"] == state).then_some(job)
        },
    )
}

fn wait_for_file(path: &Path) {
    eventually(
        Duration::from_secs(60),
        &format!("{} to appear", path.display()),
        || path.exists().then_some(()),
    );
}

/// Two months of 500 flights in `cwd/flights`: 1000 rows.
fn flights(cwd: &Path) -> usize {
    write_flights_csv(&cwd.join("flights"), 2, 500)
}

fn pause_dir(cwd: &Path, name: &str) -> PathBuf {
    let dir = cwd.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

const OUTAGE_WARNING: &str = "cannot reach the job queue";

/// Regression: the waiting client exited 1 ("pool timed out") during a 15 s outage of the
/// queue while its job went on to succeed. Now it waits the outage out with one warning
/// and reports the job's real outcome.
#[test]
fn a_waiting_client_rides_out_a_queue_outage_and_reports_the_outcome() {
    let db = PgDatabase::create();
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    let expected = flights(cwd);
    let pause = pause_dir(cwd, "pause");
    let mut proxy = Proxy::start("127.0.0.1:5432".parse().unwrap());
    let client_db = through(&db, proxy.port);
    let worker = spawn_terrace_with(
        cwd,
        &[(PAUSE_VAR, pause.to_str().unwrap())],
        &["--db", &db.url, "worker", "--concurrency", "2"],
        "worker.log",
    );
    let client = Background::start(
        cwd,
        &[],
        &[
            "--db",
            &client_db,
            "ingest",
            "flights/*.csv",
            "--into",
            "lake",
        ],
        "client",
    );
    wait_for_file(&pause.join("paused"));
    let id = newest_job(cwd, &db.url);

    let outage = Instant::now();
    proxy.down();
    eventually(Duration::from_secs(30), "the client to notice", || {
        client.stderr().contains(OUTAGE_WARNING).then_some(())
    });
    // The job finishes while the client cannot see the queue.
    std::fs::write(pause.join("resume"), b"").unwrap();
    wait_for_state(cwd, &db.url, id, "succeeded");
    std::thread::sleep(Duration::from_secs(15).saturating_sub(outage.elapsed()));
    proxy.up();

    let out = client.finish(Duration::from_secs(90));
    eprintln!("the client's stderr:\n{}", out.stderr);
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains(&format!("ingested {expected} rows (")),
        "{}",
        out.stdout
    );
    let warnings: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| !l.starts_with("ingest job "))
        .collect();
    assert_eq!(warnings.len(), 1, "one warning per outage:\n{}", out.stderr);
    assert!(warnings[0].contains(OUTAGE_WARNING), "{}", out.stderr);
    assert_eq!(rows(cwd, "lake"), expected as u64);
    stop_terrace(worker);
}

/// A client whose queue stays away gives up after its bound, in one line that says the
/// job may still be running and how to follow it; the job meanwhile commits, and the
/// natural re-run of the same ingest is a no-op instead of committing every row twice.
#[test]
fn a_client_that_gives_up_says_how_to_follow_the_job_and_a_rerun_adds_nothing() {
    let db = PgDatabase::create();
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    let expected = flights(cwd);
    let pause = pause_dir(cwd, "pause");
    let mut proxy = Proxy::start("127.0.0.1:5432".parse().unwrap());
    let client_db = through(&db, proxy.port);
    let worker = spawn_terrace_with(
        cwd,
        &[(PAUSE_VAR, pause.to_str().unwrap())],
        &["--db", &db.url, "worker", "--concurrency", "2"],
        "worker.log",
    );
    let client = Background::start(
        cwd,
        &[("TERRACE_TEST_QUEUE_OUTAGE_LIMIT", "3")],
        &[
            "--db",
            &client_db,
            "ingest",
            "flights/*.csv",
            "--into",
            "lake",
        ],
        "client",
    );
    wait_for_file(&pause.join("paused"));
    let id = newest_job(cwd, &db.url);
    proxy.down();

    let out = client.finish(Duration::from_secs(60));
    eprintln!("the client's stderr:\n{}", out.stderr);
    assert_eq!(out.code, 1, "{}\n{}", out.stdout, out.stderr);
    let last = out.stderr.lines().last().unwrap_or_default();
    assert!(
        last.contains(&format!("job {id} may still be running"))
            && last.contains(&format!("terrace status {id} --db {client_db}")),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("panicked"), "{}", out.stderr);

    std::fs::write(pause.join("resume"), b"").unwrap();
    let job = wait_for_state(cwd, &db.url, id, "succeeded");
    assert_eq!(job["committed"], true, "{job}");
    assert_eq!(job["commit"]["version"], 1, "{job}");
    assert_eq!(rows(cwd, "lake"), expected as u64);

    let again = terrace(
        cwd,
        &[],
        &["--db", &db.url, "ingest", "flights/*.csv", "--into", "lake"],
    )
    .ok();
    assert!(
        again.stdout.contains(&format!(
            "nothing ingested: these inputs, unchanged, were already ingested into lake at \
             version 1 by job {id}"
        )),
        "{}",
        again.stdout
    );
    assert_eq!(rows(cwd, "lake"), expected as u64, "no row twice");
    stop_terrace(worker);
}

/// An ingest is what its inputs are: the same ingest of unchanged inputs commits once;
/// a changed input makes a new ingest; `--force` ingests again anyway.
#[test]
fn an_ingest_of_unchanged_inputs_commits_once_unless_forced() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    let n = flights(cwd) as u64;
    let ingest = |extra: &[&str]| {
        let mut args = vec!["ingest", "flights/*.csv", "--into", "lake"];
        args.extend(extra);
        terrace(cwd, &[], &args).ok()
    };
    assert!(ingest(&[]).stdout.contains(&format!("ingested {n} rows")));
    assert_eq!(rows(cwd, "lake"), n);

    let again = ingest(&[]);
    assert!(
        again.stdout.contains(
            "nothing ingested: these inputs, unchanged, were already ingested into lake at \
             version 1 by job 1 (1000 rows); --force ingests them again"
        ),
        "{}",
        again.stdout
    );
    // How files are cut does not make another ingest of the same rows.
    let sorted = ingest(&["--sort-by", "flight", "--row-group-rows", "100"]);
    assert!(
        sorted.stdout.contains("nothing ingested"),
        "{}",
        sorted.stdout
    );
    assert_eq!(rows(cwd, "lake"), n, "nothing was added twice");
    assert_eq!(
        json(&terrace(cwd, &[], &["inspect", "lake", "--json"]).ok())["version"],
        1
    );

    // A touched input is another input: the ingest runs again.
    let file = std::fs::File::options()
        .write(true)
        .open(cwd.join("flights/flights-01.csv"))
        .unwrap();
    file.set_modified(std::time::SystemTime::now() + Duration::from_secs(3600))
        .unwrap();
    drop(file);
    assert!(ingest(&[]).stdout.contains(&format!("ingested {n} rows")));
    assert_eq!(rows(cwd, "lake"), 2 * n);

    // So is a modified one.
    let path = cwd.join("flights/flights-02.csv");
    let mut text = std::fs::read_to_string(&path).unwrap();
    let last = text.lines().last().unwrap().to_string();
    text.push_str(&last);
    text.push('\n');
    std::fs::write(&path, text).unwrap();
    assert!(
        ingest(&[])
            .stdout
            .contains(&format!("ingested {} rows", n + 1))
    );
    assert_eq!(rows(cwd, "lake"), 3 * n + 1);

    // --force ingests unchanged inputs again.
    assert!(ingest(&["--force"]).stdout.contains("ingested"));
    assert_eq!(rows(cwd, "lake"), 4 * n + 2);

    // A key given by the caller keeps working, and says whose commit it was.
    let keyed = terrace(
        cwd,
        &[],
        &[
            "ingest",
            "flights/*.csv",
            "--into",
            "lake",
            "--force",
            "--idempotency-key",
            "k",
        ],
    );
    assert_eq!(
        keyed.code, 2,
        "--force with a key is a usage error:\n{}",
        keyed.stderr
    );
    ingest(&["--idempotency-key", "nightly-1"]);
    let dup = ingest(&["--idempotency-key", "nightly-1"]);
    assert!(
        dup.stdout
            .contains("nothing ingested: idempotency key nightly-1 already committed in version"),
        "{}",
        dup.stdout
    );
    assert_eq!(rows(cwd, "lake"), 5 * n + 3);

    // An overwrite is idempotent by itself and keeps a key of its own run: overwriting
    // from other inputs and then from these again restores them.
    let overwrite = ingest(&["--mode", "overwrite"]);
    assert!(
        overwrite.stdout.contains("ingested"),
        "{}",
        overwrite.stdout
    );
    assert_eq!(rows(cwd, "lake"), n + 1);

    // A schedule's slots commit once under their own keys, and run: --force and
    // --explain have no place there.
    for flag in ["--force", "--explain"] {
        let refused = terrace(
            cwd,
            &[],
            &[
                "schedule",
                "add",
                "nightly",
                "--cron",
                "0 2 * * *",
                "--",
                "ingest",
                "flights/*.csv",
                "--into",
                "lake",
                flag,
            ],
        );
        assert_eq!(refused.code, 1, "{}", refused.stderr);
        assert!(
            refused
                .stderr
                .contains(&format!("{flag} has no place in a schedule")),
            "{}",
            refused.stderr
        );
    }
}

/// Regression: `terrace cancel` while the job's commit ran showed "cancelled" though its
/// rows were committed, `retry` refused it and a re-run doubled the rows. A cancel that
/// arrives once the commit has begun is answered with what the commit did, and the job's
/// state matches the dataset.
#[test]
fn a_cancel_during_the_commit_is_answered_with_what_the_commit_did() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    let expected = flights(cwd) as u64;
    let db = cwd.join("queue.db").display().to_string();
    let lake = cwd.join("lake").display().to_string();
    let pause = pause_dir(cwd, "pause");
    let submitted = terrace(
        cwd,
        &[],
        &[
            "--db",
            &db,
            "ingest",
            "flights/*.csv",
            "--into",
            "lake",
            "--detach",
        ],
    )
    .ok();
    let id: i64 = submitted.stdout.trim().parse().unwrap();
    let worker = spawn_terrace_with(
        cwd,
        &[(PAUSE_VAR, pause.to_str().unwrap())],
        &["--db", &db, "worker", "--concurrency", "2"],
        "worker.log",
    );
    wait_for_file(&pause.join("paused"));

    let cancel = Background::start(
        cwd,
        &[],
        &["--db", &db, "cancel", &id.to_string()],
        "cancel",
    );
    eventually(Duration::from_secs(30), "the cancel to be recorded", || {
        status(cwd, &db, id)["cancel_requested_at"]
            .is_string()
            .then_some(())
    });
    assert_eq!(status(cwd, &db, id)["state"], "running", "not cancelled");
    std::fs::write(pause.join("resume"), b"").unwrap();

    let out = cancel.finish(Duration::from_secs(60));
    assert_eq!(
        out.code, 1,
        "the job was not cancelled:\n{}\n{}",
        out.stdout, out.stderr
    );
    assert!(
        out.stderr.contains(&format!(
            "job {id} is committing, which a cancel does not stop; waiting for its outcome"
        )),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains(&format!(
            "job {id} was not cancelled: its commit had begun; it committed version 1 of \
             {lake} ({expected} rows added), and the job succeeded"
        )),
        "{}",
        out.stderr
    );
    let job = status(cwd, &db, id);
    assert_eq!(job["state"], "succeeded", "{job}");
    assert_eq!(job["committed"], true, "{job}");
    assert_eq!(rows(cwd, "lake"), expected);
    let shown = terrace(cwd, &[], &["--db", &db, "status", &id.to_string()]).ok();
    assert!(
        shown.stdout.contains(&format!(
            "commit     version 1 of {lake} ({expected} rows added)"
        )),
        "{}",
        shown.stdout
    );
    assert!(
        shown
            .stdout
            .contains("while the job was committing; not applied"),
        "{}",
        shown.stdout
    );
    terrace(cwd, &[], &["--db", &db, "retry", &id.to_string()]).fails_with("succeeded");
    let again = terrace(
        cwd,
        &[],
        &["--db", &db, "ingest", "flights/*.csv", "--into", "lake"],
    )
    .ok();
    assert!(
        again.stdout.contains("nothing ingested"),
        "{}",
        again.stdout
    );
    assert_eq!(rows(cwd, "lake"), expected);
    stop_terrace(worker);
}

/// Ctrl-C on a waiting ingest whose commit has begun does not pretend to cancel it: the
/// client says so, waits, and reports the commit.
#[test]
fn ctrl_c_during_the_commit_waits_for_it_and_reports_it() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    let expected = flights(cwd);
    let pause = pause_dir(cwd, "pause");
    let client = Background::start(
        cwd,
        &[(PAUSE_VAR, pause.to_str().unwrap())],
        &[
            "ingest",
            "flights/*.csv",
            "--into",
            "lake",
            "--workers",
            "2",
        ],
        "client",
    );
    wait_for_file(&pause.join("paused"));
    let pid = client.child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .unwrap()
            .success()
    );
    eventually(
        Duration::from_secs(30),
        "the client to answer Ctrl-C",
        || {
            client
                .stderr()
                .contains("job 1 is already committing, so it is not cancelled")
                .then_some(())
        },
    );
    std::fs::write(pause.join("resume"), b"").unwrap();
    let out = client.finish(Duration::from_secs(60));
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains(&format!("ingested {expected} rows")),
        "{}",
        out.stdout
    );
    assert_eq!(rows(cwd, "lake"), expected as u64);
    assert_eq!(status(cwd, ".terrace/queue.db", 1)["state"], "succeeded");
}

/// A cancel before the commit begins wins: nothing is committed and the job is cancelled
/// (the queue side of the race — a commit task claimed but not yet begun — is pinned in
/// the jobs crate's suite).
#[test]
fn a_cancel_before_the_commit_commits_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    flights(cwd);
    let db = cwd.join("queue.db").display().to_string();
    let submitted = terrace(
        cwd,
        &[],
        &[
            "--db",
            &db,
            "ingest",
            "flights/*.csv",
            "--into",
            "lake",
            "--detach",
        ],
    )
    .ok();
    let id = submitted.stdout.trim().to_string();
    let out = terrace(cwd, &[], &["--db", &db, "cancel", &id]).ok();
    assert_eq!(
        out.stdout.trim(),
        format!("job {id} cancelled before its commit; nothing was committed")
    );
    let worker = spawn_terrace_with(cwd, &[], &["--db", &db, "worker"], "worker.log");
    std::thread::sleep(Duration::from_secs(2));
    stop_terrace(worker);
    let job = status(cwd, &db, id.parse().unwrap());
    assert_eq!(job["state"], "cancelled", "{job}");
    assert_eq!(job["committed"], false, "{job}");
    assert!(!cwd.join("lake").exists(), "nothing was written");
    terrace(cwd, &[], &["--db", &db, "cancel", &id]).fails_with("already finished (cancelled)");
    terrace(cwd, &[], &["--db", &db, "retry", &id]).fails_with("cancelled; cannot retry");
}

/// Unmounts a tmpfs when dropped.
struct Mount(PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// Regression: with the SQLite queue on a full disk, `terrace ingest` hung 725 s printing
/// backoff warnings. A queue that cannot be written fails the command at once, in one
/// line naming the file and the cause.
#[test]
fn a_full_disk_under_the_sqlite_queue_fails_the_command_at_once() {
    if !is_root() {
        eprintln!("skipped: mounting a tmpfs needs root");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    flights(cwd);
    let mnt = cwd.join("mnt");
    std::fs::create_dir_all(&mnt).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
        .arg(&mnt)
        .status()
        .unwrap();
    assert!(mounted.success(), "mount a tmpfs at {}", mnt.display());
    let _mount = Mount(mnt.clone());
    let db = mnt.join("q.db").display().to_string();
    terrace(
        cwd,
        &[],
        &["--db", &db, "ingest", "flights/*.csv", "--into", "lake"],
    )
    .ok();

    let fill = || {
        let mut fill = std::fs::File::create(mnt.join("fill")).unwrap();
        let chunk = vec![0u8; 4096];
        while fill
            .write_all(&chunk)
            .and_then(|()| fill.sync_all())
            .is_ok()
        {}
    };
    let one_line_naming_the_cause = |out: &Output, took: Duration| {
        assert_eq!(out.code, 1, "{}\n{}", out.stdout, out.stderr);
        assert!(
            took < Duration::from_secs(10),
            "took {took:?}:\n{}",
            out.stderr
        );
        let lines: Vec<&str> = out.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "one line:\n{}", out.stderr);
        assert!(lines[0].contains(&db), "names the queue file: {}", lines[0]);
        assert!(lines[0].contains("full"), "gives the cause: {}", lines[0]);
    };

    // Full before the command starts.
    fill();
    let started = Instant::now();
    let out = terrace(
        cwd,
        &[],
        &["--db", &db, "ingest", "flights/*.csv", "--into", "lake2"],
    );
    one_line_naming_the_cause(&out, started.elapsed());
    assert!(!cwd.join("lake2").exists());

    // Full while the job runs: its commit lands in the dataset (on another disk), the
    // queue cannot record it, and the command stops at once instead of retrying.
    std::fs::remove_file(mnt.join("fill")).unwrap();
    let pause = pause_dir(cwd, "pause");
    let client = Background::start(
        cwd,
        &[(PAUSE_VAR, pause.to_str().unwrap())],
        &[
            "--db",
            &db,
            "ingest",
            "flights/*.csv",
            "--into",
            "lake3",
            "--workers",
            "1",
        ],
        "client",
    );
    wait_for_file(&pause.join("paused"));
    fill();
    let started = Instant::now();
    std::fs::write(pause.join("resume"), b"").unwrap();
    let out = client.finish(Duration::from_secs(60));
    one_line_naming_the_cause(&out, started.elapsed());

    // With room again, status finds the commit the queue could not record.
    std::fs::remove_file(mnt.join("fill")).unwrap();
    let job = status(cwd, &db, 2);
    assert_eq!(job["state"], "running", "{job}");
    assert_eq!(job["committed"], true, "{job}");
    assert!(
        job["note"]
            .as_str()
            .is_some_and(|n| n.contains("the queue has not recorded the job's end yet")),
        "{job}"
    );
}

/// Regression: `--db /nonexistent/dir/q.db` silently created a new queue, so a typo
/// looked like "no jobs".
#[test]
fn a_db_that_names_no_queue_is_an_error_not_a_new_empty_queue() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    flights(cwd);
    let missing_dir = cwd.join("no-such-dir");
    let in_missing = missing_dir.join("q.db").display().to_string();
    terrace(
        cwd,
        &[],
        &[
            "--db",
            &in_missing,
            "ingest",
            "flights/*.csv",
            "--into",
            "lake",
        ],
    )
    .fails_with(&format!(
        "the directory {} of the job queue {in_missing} does not exist",
        missing_dir.display()
    ));
    terrace(cwd, &[], &["--db", &in_missing, "worker"]).fails_with("does not exist");
    assert!(!missing_dir.exists(), "no directory was created");
    assert!(!cwd.join("lake").exists());

    // Commands that only look at jobs want a queue that exists.
    let typo = cwd.join("qeue.db").display().to_string();
    let looks: [&[&str]; 5] = [
        &["jobs"],
        &["status"],
        &["status", "1"],
        &["cancel", "1"],
        &["retry", "1"],
    ];
    for command in looks {
        for db in [&typo, &in_missing] {
            let mut args = vec!["--db", db.as_str()];
            args.extend(command);
            terrace(cwd, &[], &args).fails_with(&format!("no job queue at {db}"));
        }
    }
    assert!(!cwd.join("qeue.db").exists() && !missing_dir.exists());

    // The default queue is created by the first command that submits a job, and only
    // then looked at.
    terrace(cwd, &[], &["jobs"]).fails_with("no job queue at .terrace/queue.db");
    assert!(!cwd.join(".terrace").exists());
    terrace(cwd, &[], &["ingest", "flights/*.csv", "--into", "lake"]).ok();
    assert!(cwd.join(".terrace/queue.db").exists());
    let jobs = json(&terrace(cwd, &[], &["jobs", "--json"]).ok());
    assert_eq!(jobs.as_array().map(Vec::len), Some(1));
    let db = cwd.join(".terrace/queue.db").display().to_string();
    assert_eq!(status(cwd, &db, 1)["state"], "succeeded");
}
