//! Pretrained weights by name (`timm("…")`) from a hub server on 127.0.0.1 that serves the
//! committed timm B0 fixture in the Hugging Face hub's URL layout: a `HEAD` on
//! `/<repo>/resolve/<revision>/<file>` answers with the commit, the blob's sha256 and size and
//! a redirect to a CDN path, where a `GET` (with `Range`) brings the bytes. The server counts
//! and logs every request, so "no request" is measured, not assumed.
//!
//! Python's huggingface_hub (the venv of `scripts/py-venv.sh`, which `.ci/run` makes) reads the
//! cache maskflow wrote: `scan_cache_dir` lists the file and `hf_hub_download` finds it offline.
//! `MASKFLOW_SKIP_HUB_PYTHON=1` skips only that part, explicitly.

use crate::common::{Ran, Space};
use sha2::Digest as _;
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

const REPO: &str = "timm/efficientnet_b0.ra_in1k";
const COMMIT: &str = "7e3a9c1f4b2d8e6a0c5f9b1d3e7a2c4f6b8d0e1a";

/// A hub serving one file per repo.
struct HubServer {
    url: String,
    state: Arc<Mutex<HubState>>,
}

#[derive(Default)]
struct HubState {
    /// repo → (commit, bytes of `model.safetensors`).
    repos: HashMap<String, (String, Vec<u8>)>,
    /// `METHOD PATH [Range]` of every request, in order.
    log: Vec<String>,
}

fn sha256_hex(bytes: &[u8]) -> String {
    sha2::Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

impl HubServer {
    fn start() -> HubServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
        let url = format!("http://{}", listener.local_addr().unwrap());
        let state = Arc::new(Mutex::new(HubState::default()));
        let (st, base) = (state.clone(), url.clone());
        // Lives as long as the test process: a thread, not a process, so nothing to stop by PID.
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let (st, base) = (st.clone(), base.clone());
                std::thread::spawn(move || {
                    let _ = serve(conn, &st, &base);
                });
            }
        });
        HubServer { url, state }
    }

    fn serve_repo(&self, repo: &str, commit: &str, bytes: Vec<u8>) {
        self.state.lock().unwrap().repos.insert(repo.to_string(), (commit.to_string(), bytes));
    }

    fn log(&self) -> Vec<String> {
        self.state.lock().unwrap().log.clone()
    }
}

fn serve(conn: TcpStream, state: &Mutex<HubState>, base: &str) -> std::io::Result<()> {
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or("").to_string(), parts.next().unwrap_or("").to_string());
    let mut range = None;
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h)? == 0 || h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':')
            && k.trim().eq_ignore_ascii_case("range")
        {
            range = v.trim().strip_prefix("bytes=").and_then(|r| r.trim_end_matches('-').parse::<usize>().ok());
        }
    }
    let mut st = state.lock().unwrap();
    st.log.push(match range {
        Some(r) => format!("{method} {path} bytes={r}-"),
        None => format!("{method} {path}"),
    });
    let mut out = conn;
    let respond = |out: &mut TcpStream, status: &str, headers: &[(String, String)], body: &[u8]| -> std::io::Result<()> {
        let mut head = format!("HTTP/1.1 {status}\r\nConnection: close\r\n");
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        out.write_all(head.as_bytes())?;
        if method != "HEAD" {
            out.write_all(body)?;
        }
        out.flush()
    };
    // /<org>/<name>/resolve/<revision>/model.safetensors
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    if let [org, name, "resolve", revision, "model.safetensors"] = segments[..] {
        let repo = format!("{org}/{name}");
        return match st.repos.get(&repo) {
            Some((commit, bytes)) if revision == "main" || revision == commit => {
                let sha = sha256_hex(bytes);
                let headers = vec![
                    ("X-Repo-Commit".to_string(), commit.clone()),
                    ("X-Linked-Etag".to_string(), format!("\"{sha}\"")),
                    ("X-Linked-Size".to_string(), bytes.len().to_string()),
                    ("ETag".to_string(), "W/\"git-blob-etag\"".to_string()),
                    ("Location".to_string(), format!("{base}/cdn/{sha}")),
                    ("Content-Length".to_string(), "0".to_string()),
                ];
                respond(&mut out, "302 Found", &headers, b"")
            }
            _ => respond(
                &mut out,
                "404 Not Found",
                &[("X-Error-Code".into(), "EntryNotFound".into()), ("Content-Length".into(), "0".into())],
                b"",
            ),
        };
    }
    if let ["cdn", sha] = segments[..]
        && let Some((_, bytes)) = st.repos.values().find(|(_, b)| sha256_hex(b) == sha)
    {
        let bytes = bytes.clone();
        drop(st);
        return match range {
            Some(from) if from < bytes.len() => {
                let headers = vec![
                    ("Content-Range".to_string(), format!("bytes {from}-{}/{}", bytes.len() - 1, bytes.len())),
                    ("Content-Length".to_string(), (bytes.len() - from).to_string()),
                ];
                respond(&mut out, "206 Partial Content", &headers, &bytes[from..])
            }
            _ => respond(&mut out, "200 OK", &[("Content-Length".into(), bytes.len().to_string())], &bytes),
        };
    }
    respond(&mut out, "404 Not Found", &[("Content-Length".into(), "0".into())], b"")
}

fn fixture() -> Vec<u8> {
    std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/timm/efficientnet_b0_18.safetensors")).unwrap()
}

/// 12 persons at 32x32: one optimiser step of B0 (63 training images, batch 64).
fn pipeline(weights: &str) -> String {
    format!(
        "data synthetic {{ persons = 12; eval_persons = 2; seed = 3; size = 48x64 }}\n\
         split by person {{ val = 0.25; stratify = [gender]; seed = 42 }}\n\
         prepare {{ size = 32x32 }}\n\
         model efficientnet_b0 {{ pretrained = {weights}; heads = {{ mask: 3, gender: 2, age: 3 }} }}\n\
         train {{ epochs = 1; batch = 64 }}\n"
    )
}

fn snapshot(hf_home: &Path, commit: &str) -> PathBuf {
    hf_home.join("hub/models--timm--efficientnet_b0.ra_in1k/snapshots").join(commit).join("model.safetensors")
}

#[test]
fn timm_weights_come_from_the_hub_once_are_pinned_and_checked() {
    let bytes = fixture();
    let sha = sha256_hex(&bytes);
    let hub = HubServer::start();
    hub.serve_repo(REPO, COMMIT, bytes.clone());
    let s = Space::new();
    s.write("p.mf", &pipeline("timm(\"efficientnet_b0.ra_in1k\")"));
    let hf = s.path("hf");
    let hf_home = hf.to_str().unwrap();
    let env = [("HF_ENDPOINT", hub.url.as_str()), ("HF_HOME", hf_home)];

    // The first run downloads into the hub cache (HEAD, then the CDN), and trains from it.
    let first = s.run_env(&["run", "p.mf"], &env);
    first.ok();
    let resolve = format!("/{REPO}/resolve/main/model.safetensors");
    assert_eq!(hub.log(), vec![format!("HEAD {resolve}"), format!("GET /cdn/{sha}")]);
    let loaded = first.stderr.lines().find(|l| l.contains("pretrained weights:")).unwrap_or_else(|| panic!("{}", first.stderr));
    assert!(loaded.contains("2 skipped (the checkpoint's classifier), 2 initialised (maskflow's heads)"), "{loaded}");
    // huggingface_hub's layout: a relative symlink into blobs/, refs/main naming the commit.
    let snap = snapshot(&hf, COMMIT);
    assert_eq!(std::fs::read_link(&snap).unwrap(), PathBuf::from(format!("../../blobs/{sha}")));
    assert_eq!(std::fs::read(&snap).unwrap(), bytes);
    assert_eq!(std::fs::read_to_string(hf.join("hub/models--timm--efficientnet_b0.ra_in1k/refs/main")).unwrap(), COMMIT);
    // The lock pins the commit and the file's blake3.
    let lock: serde_json::Value = serde_json::from_str(&s.read("p.mf.lock")).unwrap();
    assert_eq!(
        lock["weights"]["hf://timm/efficientnet_b0.ra_in1k"],
        serde_json::json!({"commit": COMMIT, "blake3": blake3::hash(&bytes).to_hex().to_string()})
    );

    // A second run, and a plan over an empty maskflow cache, ask the hub nothing.
    let second = s.run_env(&["run", "p.mf"], &env);
    assert!(second.step_lines().iter().all(|l| l.starts_with("hit ")), "{}", second.stdout);
    let fresh = s.path("fresh-cache");
    s.run_env(&["plan", "p.mf"], &[env[0], env[1], ("MASKFLOW_CACHE", fresh.to_str().unwrap())]).ok();
    s.run_env(&["plan", "p.mf"], &[env[0], env[1], ("HF_HUB_OFFLINE", "1")]).ok();
    assert_eq!(hub.log().len(), 2, "{:?}", hub.log());

    python_reads_the_cache(&hf, &bytes);

    // A partial download is resumed from its length.
    let resumed = s.path("hf-resume");
    let blobs = resumed.join("hub/models--timm--efficientnet_b0.ra_in1k/blobs");
    std::fs::create_dir_all(&blobs).unwrap();
    let half = bytes.len() / 2;
    std::fs::write(blobs.join(format!("{sha}.incomplete")), &bytes[..half]).unwrap();
    s.run_env(&["plan", "p.mf"], &[env[0], ("HF_HOME", resumed.to_str().unwrap())]).ok();
    assert_eq!(hub.log()[2..], [format!("HEAD /{REPO}/resolve/{COMMIT}/model.safetensors"), format!("GET /cdn/{sha} bytes={half}-")]);
    assert_eq!(std::fs::read(snapshot(&resumed, COMMIT)).unwrap(), bytes);
    assert!(!blobs.join(format!("{sha}.incomplete")).exists());

    // Different bytes under the same revision: `run --locked` on another machine refuses.
    let mut changed = bytes.clone();
    *changed.last_mut().unwrap() ^= 1;
    hub.serve_repo(REPO, COMMIT, changed);
    let other = s.path("hf-other");
    let locked = s.run_env(&["run", "--locked", "p.mf"], &[env[0], ("HF_HOME", other.to_str().unwrap())]);
    let err = locked.fails();
    assert!(
        err.contains(&format!("pretrained weights hf://timm/efficientnet_b0.ra_in1k: the file at commit {COMMIT} changed on the hub")),
        "{err}"
    );
    assert!(err.contains("run without --locked to update the lock"), "{err}");
    assert!(locked.stdout.lines().all(|l| !l.starts_with("run ")), "{}", locked.stdout);
}

#[test]
fn hub_errors_say_what_to_do() {
    let hub = HubServer::start();
    hub.serve_repo(REPO, COMMIT, fixture());
    let s = Space::new();
    let empty = s.path("hf-empty");
    let hf_home = ("HF_HOME", empty.to_str().unwrap());

    // No such tag on the server: the URL and the status.
    s.write("other_tag.mf", &pipeline("timm(\"efficientnet_b0.ra4_e3600_r224_in1k\")"));
    let err = s.run_env(&["plan", "other_tag.mf"], &[("HF_ENDPOINT", hub.url.as_str()), hf_home]).fails().to_string();
    let url = format!("{}/timm/efficientnet_b0.ra4_e3600_r224_in1k/resolve/main/model.safetensors", hub.url);
    assert!(err.contains(&format!("{url}: 404 Not Found: the hub has no such repo, revision or file")), "{err}");

    // Nothing listening: the URL, and where to put the file by hand.
    let closed = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    s.write("p.mf", &pipeline("timm(\"efficientnet_b0\")"));
    let err = s.run_env(&["run", "p.mf"], &[("HF_ENDPOINT", closed.as_str()), hf_home]).fails().to_string();
    let by_hand = snapshot(&empty, "main");
    assert!(err.contains(&format!("cannot reach {closed}/{REPO}/resolve/main/model.safetensors")), "{err}");
    assert!(err.contains(&format!("place the file at {}", by_hand.display())), "{err}");
    let offline = s.run_env(&["run", "p.mf"], &[("HF_ENDPOINT", hub.url.as_str()), hf_home, ("HF_HUB_OFFLINE", "1")]);
    assert!(offline.fails().contains("HF_HUB_OFFLINE is set"), "{}", offline.stderr);
    assert!(hub.log().iter().all(|l| !l.contains("efficientnet_b0.ra_in1k")), "{:?}", hub.log());
    // A file placed there by hand is then used offline.
    std::fs::create_dir_all(by_hand.parent().unwrap()).unwrap();
    std::fs::write(&by_hand, fixture()).unwrap();
    s.run_env(&["plan", "p.mf"], &[hf_home, ("HF_HUB_OFFLINE", "1")]).ok();

    // Names are checked before any request, with a caret.
    s.write("b4.mf", &pipeline("timm(\"efficientnet_b0\")").replace("model efficientnet_b0", "model efficientnet_b4"));
    s.write("tag.mf", &pipeline("timm(\"efficientnet_b0.imagenet\")"));
    let checked: Ran = s.run(&["check", "b4.mf", "tag.mf"]);
    let err = checked.fails();
    assert!(err.contains("error: these are weights for `efficientnet_b0`, but the model is `efficientnet_b4`\n --> b4.mf:4:43"), "{err}");
    assert!(err.contains("timm has no weights tagged `efficientnet_b0.imagenet`; its tags are efficientnet_b0.ra_in1k, efficientnet_b0.ra4_e3600_r224_in1k"), "{err}");
}

fn python_reads_the_cache(hf_home: &Path, bytes: &[u8]) {
    if std::env::var_os("MASKFLOW_SKIP_HUB_PYTHON").is_some() {
        eprintln!("MASKFLOW_SKIP_HUB_PYTHON set: huggingface_hub's reading of the cache not checked");
        return;
    }
    let python = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/py-venv/bin/python");
    assert!(python.exists(), "{}: missing; run scripts/py-venv.sh (or set MASKFLOW_SKIP_HUB_PYTHON=1)", python.display());
    let script = r#"
import json, sys
from huggingface_hub import hf_hub_download, scan_cache_dir
info = scan_cache_dir(sys.argv[1])
files = [[r.repo_id, v.commit_hash, f.file_name, f.size_on_disk, sorted(v.refs)] for r in info.repos for v in r.revisions for f in v.files]
path = hf_hub_download("timm/efficientnet_b0.ra_in1k", "model.safetensors", cache_dir=sys.argv[1], local_files_only=True)
print(json.dumps({"warnings": [str(w) for w in info.warnings], "files": files, "path": path}))
"#;
    let out = std::process::Command::new(&python)
        .args(["-c", script, hf_home.join("hub").to_str().unwrap()])
        .env("HF_HUB_OFFLINE", "1")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let seen: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(seen["warnings"], serde_json::json!([]));
    assert_eq!(seen["files"], serde_json::json!([[REPO, COMMIT, "model.safetensors", bytes.len(), ["main"]]]));
    assert_eq!(std::fs::read(seen["path"].as_str().unwrap()).unwrap(), bytes);
}
