//! The shared remote cache against the real reference server: Debian's nginx, started on
//! 127.0.0.1 by `scripts/cache-server.sh` (which `.ci/run` installs) and stopped by the PID it
//! wrote. Two "machines" are two spaces with separate caches.
//!
//! Needs `nginx` (`scripts/cache-server.sh install`); without it the tests fail, saying so.
//! `MASKFLOW_SKIP_NGINX=1` skips them explicitly.

use crate::common;
use common::{Space, TINY};
use maskflow::remote::SignedRecord;
use maskflow::remote::signing::SecretKey;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::Stdio;

const WRITER: &str = "maskflow:write-secret";

/// A running nginx; stopped (by its PID file) on drop.
struct Server {
    dir: tempfile::TempDir,
    url: String,
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/cache-server.sh")
}

impl Server {
    fn start() -> Option<Server> {
        if std::env::var_os("MASKFLOW_SKIP_NGINX").is_some() {
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        // A free port: bind to 0, read it, let it go (nginx takes it next).
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let out = std::process::Command::new("bash")
            .arg(script())
            .args(["start", &dir.path().to_string_lossy(), &port.to_string(), WRITER])
            .output()
            .expect("run scripts/cache-server.sh");
        assert!(
            out.status.success(),
            "the cache server did not start ({}); install it with `scripts/cache-server.sh install`, or set MASKFLOW_SKIP_NGINX=1\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        let url = String::from_utf8_lossy(&out.stdout).trim().to_string();
        Some(Server { dir, url })
    }

    fn stop(&self) {
        let _ = std::process::Command::new("bash").arg(script()).args(["stop", &self.dir.path().to_string_lossy()]).status();
    }

    /// A file of the remote's layout on the server's disk (`ac/<key>`, `cas/<digest>`).
    fn file(&self, rel: &str) -> PathBuf {
        self.dir.path().join("data/maskflow/v1").join(rel)
    }

    /// `(method, status, bytes sent, bytes received)` of every request so far.
    fn log(&self) -> Vec<(String, u16, u64, u64)> {
        let text = std::fs::read_to_string(self.dir.path().join("access.log")).unwrap_or_default();
        text.lines()
            .filter_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                Some((f.first()?.to_string(), f.get(2)?.parse().ok()?, f.get(3)?.parse().ok()?, f.get(4)?.parse().ok()?))
            })
            .collect()
    }

    /// Snapshot and restore of the stored data, so each tampering starts from the same state.
    fn save(&self) -> PathBuf {
        let copy = self.dir.path().join("snapshot");
        copy_dir(&self.dir.path().join("data"), &copy);
        copy
    }

    fn restore(&self, snapshot: &Path) {
        let data = self.dir.path().join("data");
        std::fs::remove_dir_all(&data).unwrap();
        copy_dir(snapshot, &data);
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

fn copy_dir(from: &Path, to: &Path) {
    let status = std::process::Command::new("cp").arg("-a").arg(from).arg(to).status().unwrap();
    assert!(status.success());
}

/// One machine: a space with a key named `ci-1` (the uploader's) or none.
struct Machine {
    space: Space,
    env: Vec<(String, String)>,
}

impl Machine {
    fn new(server: &Server, trusted: &str, pipeline: &str) -> Machine {
        let space = Space::new();
        space.write("p.mf", pipeline);
        let env = vec![("MASKFLOW_REMOTE".to_string(), server.url.clone()), ("MASKFLOW_TRUSTED_KEYS".to_string(), trusted.to_string())];
        Machine { space, env }
    }

    /// The uploading machine: its own key, trusted, and the server's write password.
    fn uploader(server: &Server, pipeline: &str) -> (Machine, String) {
        let space = Space::new();
        space.write("p.mf", pipeline);
        let public = space.run(&["key", "generate", "ci-1", "--out", "ci.key"]).ok().trim().to_string();
        let key = space.path("ci.key").to_string_lossy().into_owned();
        let mut m = Machine::new(server, &public, pipeline);
        m.space = space;
        m.env.push(("MASKFLOW_SIGNING_KEY".into(), key));
        m.env.push(("MASKFLOW_REMOTE_AUTH".into(), WRITER.into()));
        (m, public)
    }

    fn run(&self, args: &[&str]) -> common::Ran {
        let env: Vec<(&str, &str)> = self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        self.space.run_env(args, &env)
    }

    fn submission(&self, pipeline: &str) -> Vec<u8> {
        std::fs::read(self.space.path(&format!("saved/{pipeline}/latest/submission.csv"))).unwrap()
    }

    /// Step name → key, from `plan --json`.
    fn keys(&self) -> Vec<(String, String)> {
        let plan: serde_json::Value = serde_json::from_str(self.run(&["plan", "p.mf", "--json", "--no-remote"]).ok()).unwrap();
        plan.as_array().unwrap().iter().map(|s| (s["step"].as_str().unwrap().to_string(), s["key"].as_str().unwrap().to_string())).collect()
    }
}

fn key_of(keys: &[(String, String)], step: &str) -> String {
    keys.iter().find(|(s, _)| s == step).map(|(_, k)| k.clone()).unwrap()
}

fn tiny() -> String {
    format!("{TINY}predict {{}}\n")
}

fn warnings(run: &common::Ran) -> Vec<&str> {
    run.stderr.lines().filter(|l| l.starts_with("warning: ")).collect()
}

#[test]
fn a_fresh_clone_hits_every_quickstart_step_on_the_remote_and_downloads_little() {
    let Some(server) = Server::start() else { return };
    let quickstart = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("pipelines/quickstart.mf")).unwrap();
    let (a, public) = Machine::uploader(&server, &quickstart);
    a.run(&["run", "p.mf", "--remote-upload"]).ok();
    let uploaded: u64 = server.log().iter().filter(|(m, s, _, _)| m == "PUT" && *s == 201).map(|(_, _, _, got)| got).sum();
    let before = server.log().len();
    let b = Machine::new(&server, &public, &quickstart);
    let run = b.run(&["run", "p.mf"]);
    let lines = run.step_lines();
    assert_eq!(lines.len(), 7, "{}", run.stdout);
    for line in &lines {
        assert!(line.starts_with("hit ") && line.ends_with("(remote, signed by ci-1)"), "{line}\n{}", run.stderr);
    }
    assert!(warnings(&run).is_empty(), "{}", run.stderr);
    let downloaded: u64 = server.log()[before..].iter().filter(|(m, s, _, _)| m == "GET" && *s == 200).map(|(_, _, sent, _)| sent).sum();
    println!("A uploaded {uploaded} bytes; B downloaded {downloaded} bytes");
    assert!(downloaded * 20 < uploaded, "B downloaded {downloaded} of {uploaded} uploaded bytes");
    assert_eq!(b.submission("p"), a.submission("p"));
    // The plan says so too. The steps whose outputs were all fetched for `saved/` (split,
    // evaluate) are whole here now, so local hits; the others are still on the remote only.
    let plan = b.run(&["plan", "p.mf"]);
    for line in plan.ok().lines() {
        let local = line.starts_with("hit  split ") || line.starts_with("hit  evaluate ");
        assert!(line.starts_with("hit ") && local != line.ends_with("(remote, signed by ci-1)"), "{line}\n{}", plan.stdout);
    }
    // The results tables list the evaluation that came from the remote, with A's figures: on
    // B, whose run fetched it, and on a machine that has run nothing (records only).
    let runs_of = |m: &Machine| -> Vec<(String, f64)> {
        let rows: serde_json::Value = serde_json::from_str(m.run(&["runs", "p.mf", "--json"]).ok()).unwrap();
        rows.as_array().unwrap().iter().map(|r| (r["step"].as_str().unwrap().to_string(), r["macro_f1"].as_f64().unwrap())).collect()
    };
    let on_a = runs_of(&a);
    assert_eq!(on_a.len(), 1, "{on_a:?}");
    assert_eq!(runs_of(&b), on_a);
    assert_eq!(runs_of(&Machine::new(&server, &public, &quickstart)), on_a);
    let index = std::fs::read_to_string(b.space.path("saved/index.html")).unwrap();
    assert!(index.contains(&format!("{:.4}", on_a[0].1)), "{index}");
}

#[test]
fn records_that_do_not_count_are_ignored_with_one_warning_and_recomputed() {
    let Some(server) = Server::start() else { return };
    let (a, public) = Machine::uploader(&server, &tiny());
    a.run(&["run", "p.mf", "--remote-upload"]).ok();
    let clean = a.submission("p");
    let keys = a.keys();
    let snapshot = server.save();
    let record_file = |step: &str| server.file(&format!("ac/{}", key_of(&keys, step)));
    let read = |step: &str| -> SignedRecord { serde_json::from_slice(&std::fs::read(record_file(step)).unwrap()).unwrap() };
    let write = |step: &str, r: &SignedRecord| std::fs::write(record_file(step), serde_json::to_vec(r).unwrap()).unwrap();
    let object =
        |step: &str, output: &str| server.file(&format!("cas/{}", read(step).parse_record().unwrap().outputs[output].digest.hex()));

    type Tamper<'a> = Box<dyn Fn() + 'a>;
    let cases: Vec<(&str, &str, Tamper)> = vec![
        (
            "train",
            "unsigned",
            Box::new(|| {
                let mut r = read("train");
                r.signature.clear();
                write("train", &r);
            }),
        ),
        (
            "train",
            "which is not in trusted_keys",
            Box::new(|| {
                let rogue = SecretKey::generate("rogue-1").unwrap();
                write("train", &SignedRecord::new(&read("train").parse_record().unwrap(), &rogue));
            }),
        ),
        (
            "train",
            "does not match the record",
            Box::new(|| {
                let mut r = read("train");
                let mut record = r.parse_record().unwrap();
                let weights = record.outputs["model.safetensors"].clone();
                record.outputs.insert("history.json".into(), weights);
                r.record = serde_json::to_string_pretty(&record).unwrap();
                write("train", &r);
            }),
        ),
        (
            "predict",
            "not to its name",
            Box::new(|| std::fs::write(object("predict", "submission.csv"), b"ImageID,ans\nforged,3\n").unwrap()),
        ),
        ("evaluate", "is missing on the remote", Box::new(|| std::fs::remove_file(object("evaluate", "metrics.json")).unwrap())),
    ];
    for (step, why, tamper) in cases {
        server.restore(&snapshot);
        tamper();
        let b = Machine::new(&server, &public, &tiny());
        let run = b.run(&["run", "p.mf"]);
        run.ok();
        let w = warnings(&run);
        assert_eq!(w.len(), 1, "{step} ({why}): {}", run.stderr);
        assert!(w[0].contains(why) && w[0].contains(&server.url) && w[0].contains(&format!("`{step}`")), "{}", w[0]);
        let line =
            run.step_lines().into_iter().find(|l| l.split_whitespace().nth(1).map(|w| w.trim_end_matches(':')) == Some(step)).unwrap();
        assert!(line.starts_with(&format!("run {step}")), "{step} ({why}) was not recomputed: {line}");
        assert_eq!(b.submission("p"), clean, "{step} ({why}): the result differs from a clean run");
        assert_eq!(b.space.run(&["cache", "verify"]).ok().trim(), "cache ok");
    }
}

#[test]
fn writing_needs_credentials_reading_does_not() {
    let Some(server) = Server::start() else { return };
    let (mut a, public) = Machine::uploader(&server, &tiny());
    a.env.retain(|(k, _)| k != "MASKFLOW_REMOTE_AUTH");
    let refused = a.run(&["run", "p.mf", "--until", "split", "--remote-upload"]);
    let stderr = refused.fails();
    assert!(stderr.contains("401") && stderr.contains("MASKFLOW_REMOTE_AUTH"), "{stderr}");
    assert!(!server.log().iter().any(|(m, s, _, _)| m == "PUT" && *s == 201), "an anonymous PUT was stored");
    // With the password, the upload goes through; anyone reads it back without one.
    a.env.push(("MASKFLOW_REMOTE_AUTH".into(), WRITER.into()));
    a.run(&["run", "p.mf", "--until", "split", "--remote-upload"]).ok();
    let b = Machine::new(&server, &public, &tiny());
    let lines = b.run(&["run", "p.mf", "--until", "split"]).step_lines();
    assert!(lines.iter().all(|l| l.ends_with("(remote, signed by ci-1)")), "{lines:?}");
    // `cache verify --remote` re-reads all of it, and names what was damaged on the server.
    assert_eq!(b.run(&["cache", "verify", "--remote"]).ok().trim(), "remote ok");
    let keys = a.keys();
    let split: SignedRecord =
        serde_json::from_slice(&std::fs::read(server.file(&format!("ac/{}", key_of(&keys, "split")))).unwrap()).unwrap();
    let object = server.file(&format!("cas/{}", split.parse_record().unwrap().outputs["split.json"].digest.hex()));
    std::fs::write(&object, b"{}").unwrap();
    let mut unsigned = split.clone();
    unsigned.signature.clear();
    std::fs::write(server.file(&format!("ac/{}", key_of(&keys, "split"))), serde_json::to_vec(&unsigned).unwrap()).unwrap();
    let verify = b.run(&["cache", "verify", "--remote"]);
    assert_eq!(verify.status, 1, "{}", verify.stdout);
    let problems: Vec<&str> = verify.stdout.lines().collect();
    assert_eq!(problems.len(), 3, "{}", verify.stdout);
    assert!(problems[0].starts_with("bad record: ") && problems[0].ends_with(": unsigned"), "{}", problems[0]);
    assert!(problems[1].starts_with("corrupt object: ") && problems[1].contains(&server.url), "{}", problems[1]);
    assert_eq!(problems[2], "2 problems found");
}

#[test]
fn a_server_killed_during_a_run_leaves_a_run_that_computes_locally() {
    let Some(server) = Server::start() else { return };
    let (a, public) = Machine::uploader(&server, &tiny());
    a.run(&["run", "p.mf", "--remote-upload"]).ok();
    let b = Machine::new(&server, &public, &tiny());
    let env: Vec<(&str, &str)> = b.env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let mut child = b.space.command(&["run", "p.mf"], &env).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    stdout.read_line(&mut first).unwrap();
    assert!(first.ends_with("(remote, signed by ci-1)\n"), "{first}");
    // The server goes away after the first remote hit, while B is held (SIGSTOP) so that it
    // cannot finish its lookups and downloads first: a request in flight is cut, later ones
    // are refused.
    let signal = |sig: &str| std::process::Command::new("kill").args([sig, &child.id().to_string()]).status().unwrap();
    signal("-STOP");
    server.stop();
    signal("-CONT");
    let out = child.wait_with_output().unwrap();
    let rest = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{first}{rest}\n{stderr}");
    assert!(stderr.contains("warning: ") && stderr.contains(&server.url), "{stderr}");
    assert_eq!(b.submission("p"), a.submission("p"));
    assert_eq!(b.space.run(&["cache", "verify"]).ok().trim(), "cache ok");
}

#[test]
fn a_second_record_for_a_key_is_a_reproducibility_failure_and_the_first_stays() {
    let Some(server) = Server::start() else { return };
    let (a, _) = Machine::uploader(&server, &tiny());
    a.run(&["run", "p.mf", "--until", "split", "--remote-upload"]).ok();
    // The test hook: the remote's split record is replaced by a validly signed one whose
    // output names another object (the relabel step's labels), as a nondeterministic step
    // would have produced.
    let keys = a.keys();
    let file = server.file(&format!("ac/{}", key_of(&keys, "split")));
    let signed = |path: &Path| -> SignedRecord { serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap() };
    let relabel = signed(&server.file(&format!("ac/{}", key_of(&keys, "relabel")))).parse_record().unwrap();
    let mut record = signed(&file).parse_record().unwrap();
    let theirs = relabel.outputs["labels.json"].clone();
    let ours = record.outputs["split.json"].digest;
    record.outputs.insert("split.json".into(), theirs.clone());
    let forged = SignedRecord::new(&record, &SecretKey::read(&a.space.path("ci.key")).unwrap());
    let forged_bytes = serde_json::to_vec_pretty(&forged).unwrap();
    std::fs::write(&file, &forged_bytes).unwrap();
    let push = a.run(&["push", "p.mf"]);
    let stderr = push.fails();
    assert!(stderr.contains("reproducibility failure"), "{stderr}");
    assert!(stderr.contains(&theirs.digest.hex()) && stderr.contains(&ours.hex()), "{stderr}");
    assert_eq!(std::fs::read(&file).unwrap(), forged_bytes, "the first record was replaced");
}

#[test]
fn a_file_remote_on_a_shared_folder_works_the_same_way() {
    let shared = tempfile::tempdir().unwrap();
    let url = format!("file://{}", shared.path().display());
    let a = Space::new();
    a.write("p.mf", TINY);
    let public = a.run(&["key", "generate", "ci-1", "--out", "ci.key"]).ok().trim().to_string();
    let key = a.path("ci.key").to_string_lossy().into_owned();
    let env_a = [("MASKFLOW_REMOTE", url.as_str()), ("MASKFLOW_TRUSTED_KEYS", public.as_str()), ("MASKFLOW_SIGNING_KEY", key.as_str())];
    a.run_env(&["run", "p.mf", "--until", "prepare", "--remote-upload"], &env_a).ok();
    let b = Space::new();
    b.write("p.mf", TINY);
    let run =
        b.run_env(&["run", "p.mf", "--until", "prepare"], &[("MASKFLOW_REMOTE", url.as_str()), ("MASKFLOW_TRUSTED_KEYS", public.as_str())]);
    assert_eq!(run.step_lines(), ["hit source (remote, signed by ci-1)", "hit prepare (remote, signed by ci-1)"], "{}", run.stderr);
    // Entries appear whole: written beside their place and renamed, no temporary left over.
    let leftovers: Vec<_> = walkdir::WalkDir::new(shared.path())
        .min_depth(1)
        .into_iter()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with('.'))
        .map(|e| e.into_path())
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    // Without the key in trusted_keys, the same records are ignored, each with a warning.
    let c = Space::new();
    c.write("p.mf", TINY);
    let untrusted = c.run_env(&["run", "p.mf", "--until", "source"], &[("MASKFLOW_REMOTE", url.as_str())]);
    assert_eq!(untrusted.step_lines(), ["run source: new step — 30 persons, 210 images, 28 eval images"]);
    assert!(untrusted.stderr.contains("which is not in trusted_keys"), "{}", untrusted.stderr);
}

#[test]
fn an_unreachable_remote_costs_one_warning_and_the_run_computes_locally() {
    // A port nobody listens on: bound, then released.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = format!("http://127.0.0.1:{port}/maskflow");
    let s = Space::new();
    s.write("p.mf", TINY);
    let run = s.run_env(&["run", "p.mf", "--until", "split"], &[("MASKFLOW_REMOTE", url.as_str())]);
    run.ok();
    assert_eq!(run.step_lines().iter().filter(|l| l.starts_with("run ")).count(), 3, "{}", run.stdout);
    let w = warnings(&run);
    assert_eq!(w.len(), 1, "{}", run.stderr);
    assert!(w[0].contains(&url) && w[0].contains("not asked again"), "{}", w[0]);
}
