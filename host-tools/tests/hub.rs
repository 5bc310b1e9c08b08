//! `qins-convert --hub` against a local stand-in for the Hugging Face Hub: a small server that
//! answers the Hub's URL layout (`/api/models/ORG/NAME/revision/REV`,
//! `/ORG/NAME/resolve/REV/FILE` with ETag, X-Repo-Commit and Range) and its error headers
//! (`X-Error-Code`: RepoNotFound, GatedRepo, EntryNotFound), reached through `HF_ENDPOINT`.
//! It serves the tiny fixture checkpoints, can cut a file's download short, and logs every
//! request.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use sha2::Digest as _;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures")
}

struct HubRepo {
    files: BTreeMap<String, Vec<u8>>,
    commit: String,
    /// A gated repository: only this token may read it.
    token: Option<&'static str>,
}

#[derive(Default)]
struct Hub {
    repos: HashMap<String, HubRepo>,
    /// Every request: its path and Range header.
    log: Mutex<Vec<(String, Option<String>)>>,
    /// Path → how many more downloads of it are cut halfway.
    cuts: Mutex<HashMap<String, usize>>,
}

impl Hub {
    fn add(&mut self, id: &str, files: BTreeMap<String, Vec<u8>>, token: Option<&'static str>) {
        let commit = hex(&sha2::Sha256::digest(id.as_bytes()))[..40].to_string();
        self.repos.insert(
            id.into(),
            HubRepo {
                files,
                commit,
                token,
            },
        );
    }

    fn requests(&self, contains: &str) -> Vec<(String, Option<String>)> {
        let log = self.log.lock().unwrap();
        log.iter()
            .filter(|(p, _)| p.contains(contains))
            .cloned()
            .collect()
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn folder(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap() != "reference.json")
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read(&p).unwrap(),
            )
        })
        .collect()
}

fn hub_error(status: StatusCode, code: &str) -> Response {
    let mut resp = (status, code.to_string()).into_response();
    resp.headers_mut()
        .insert("x-error-code", HeaderValue::from_str(code).unwrap());
    resp
}

async fn handle(State(hub): State<Arc<Hub>>, req: Request) -> Response {
    let path = req.uri().path().to_string();
    let range = req
        .headers()
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let auth = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    hub.log.lock().unwrap().push((path.clone(), range.clone()));
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    // /api/models/ORG/NAME/revision/REV or /ORG/NAME/resolve/REV/FILE
    let (id, file) = match parts.as_slice() {
        ["api", "models", org, name, "revision", _rev] => (format!("{org}/{name}"), None),
        [org, name, "resolve", _rev, file] => (format!("{org}/{name}"), Some(file.to_string())),
        _ => return StatusCode::NOT_FOUND.into_response(),
    };
    // Like the Hub, an unknown repository looks the same as a private one: 401.
    let Some(repo) = hub.repos.get(&id) else {
        return hub_error(StatusCode::UNAUTHORIZED, "RepoNotFound");
    };
    if let Some(token) = repo.token {
        match auth {
            None => return hub_error(StatusCode::UNAUTHORIZED, "GatedRepo"),
            Some(a) if a != format!("Bearer {token}") => {
                return hub_error(StatusCode::FORBIDDEN, "GatedRepo")
            }
            Some(_) => {}
        }
    }
    let Some(file) = file else {
        let siblings: Vec<_> = repo
            .files
            .keys()
            .map(|f| serde_json::json!({ "rfilename": f }))
            .collect();
        return axum::Json(serde_json::json!({"id": id, "sha": repo.commit, "siblings": siblings}))
            .into_response();
    };
    let Some(bytes) = repo.files.get(&file) else {
        return hub_error(StatusCode::NOT_FOUND, "EntryNotFound");
    };
    let len = bytes.len();
    let (start, end) = match range.as_deref().and_then(|r| r.strip_prefix("bytes=")) {
        Some(r) => {
            let (a, b) = r.split_once('-').unwrap();
            let a: usize = a.parse().unwrap();
            let b: usize = if b.is_empty() {
                len - 1
            } else {
                b.parse().unwrap()
            };
            (a, b.min(len - 1))
        }
        None => (0, len - 1),
    };
    let body = bytes[start..=end].to_vec();
    let probe = range.as_deref() == Some("bytes=0-0");
    let cut = !probe && {
        let mut cuts = hub.cuts.lock().unwrap();
        match cuts.get_mut(&path) {
            Some(n) if *n > 0 => {
                *n -= 1;
                true
            }
            _ => false,
        }
    };
    let status = if range.is_some() {
        StatusCode::PARTIAL_CONTENT
    } else {
        StatusCode::OK
    };
    let body_len = body.len();
    let stream_body = if cut {
        // Half the bytes, a pause so they reach the client, then a dropped connection.
        let half = Bytes::from(body[..body_len / 2].to_vec());
        let stream = futures_util::stream::unfold(0u8, move |step| {
            let half = half.clone();
            async move {
                match step {
                    0 => Some((Ok(half), 1)),
                    1 => {
                        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                        Some((Err(std::io::Error::other("connection cut")), 2))
                    }
                    _ => None,
                }
            }
        });
        Body::from_stream(stream)
    } else {
        Body::from(body)
    };
    let mut resp = Response::new(stream_body);
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    let etag = hex(&sha2::Sha256::digest(bytes));
    h.insert(
        header::ETAG,
        HeaderValue::from_str(&format!("\"{etag}\"")).unwrap(),
    );
    h.insert(
        "x-repo-commit",
        HeaderValue::from_str(&repo.commit).unwrap(),
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(body_len));
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if range.is_some() {
        h.insert(
            header::CONTENT_RANGE,
            HeaderValue::from_str(&format!("bytes {start}-{end}/{len}")).unwrap(),
        );
    }
    resp
}

/// The stand-in Hub on a free port: its URL, and its state for the assertions.
fn start(hub: Hub) -> (String, Arc<Hub>) {
    let hub = Arc::new(hub);
    let app = axum::Router::new().fallback(handle).with_state(hub.clone());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(listener.local_addr().unwrap()).unwrap();
            axum::serve(listener, app).await.unwrap();
        });
    });
    (format!("http://{}", rx.recv().unwrap()), hub)
}

/// qins-convert with the stand-in as the Hub and `home` as HF_HOME.
fn convert(endpoint: &str, home: &Path, args: &[&str], token: Option<&str>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_qins-convert"));
    cmd.args(args)
        .env("HF_ENDPOINT", endpoint)
        .env("HF_HOME", home)
        .env_remove("HF_HUB_CACHE")
        .env_remove("HF_TOKEN")
        .env_remove("RUST_BACKTRACE");
    if let Some(t) = token {
        cmd.env("HF_TOKEN", t);
    }
    cmd.output().unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn summary(out: &Output) -> serde_json::Value {
    assert!(out.status.success(), "failed: {}", stderr(out));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn converts_a_sharded_checkpoint_from_the_hub_and_resumes_an_interrupted_download() {
    let mut hub = Hub::default();
    hub.add(
        "qins-test/tiny-phi3",
        folder(&fixtures().join("tiny-phi3")),
        None,
    );
    let shard = "/qins-test/tiny-phi3/resolve/main/model-00003-of-00005.safetensors";
    // Three cuts: the first run's attempt and both its retries end early.
    hub.cuts.lock().unwrap().insert(shard.into(), 3);
    let (endpoint, hub) = start(hub);
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("hf");
    let out = tmp.path().join("hub.qins");
    let args = [
        "--hub",
        "qins-test/tiny-phi3",
        "-o",
        out.to_str().unwrap(),
        "--json",
    ];

    let first = convert(&endpoint, &home, &args, None);
    assert!(!first.status.success());
    let err = stderr(&first);
    assert!(
        err.contains("interrupted") && err.contains("run the same command again"),
        "{err}"
    );
    assert!(!out.exists(), "no archive from a failed download");
    let tried = hub.requests(shard);
    let resumed_from = |r: &Option<String>| {
        r.as_deref()
            .and_then(|r| r.strip_prefix("bytes="))
            .and_then(|r| r.strip_suffix('-'))
            .and_then(|n| n.parse::<u64>().ok())
    };
    assert!(
        tried
            .iter()
            .any(|(_, r)| resumed_from(r).is_some_and(|n| n > 0)),
        "a retry continues where the cut left off: {tried:?}"
    );

    let second = summary(&convert(&endpoint, &home, &args, None));
    let after: Vec<_> = hub.requests(shard)[tried.len()..].to_vec();
    let from = after.iter().filter_map(|(_, r)| resumed_from(r)).max();
    assert!(
        from.is_some_and(|n| n > 0),
        "the second run resumes from the partial file: {after:?}"
    );

    // The same archive as from the folder itself.
    let local_out = tmp.path().join("local.qins");
    let local = Command::new(env!("CARGO_BIN_EXE_qins-convert"))
        .args([
            fixtures().join("tiny-phi3").to_str().unwrap(),
            "-o",
            local_out.to_str().unwrap(),
            "--json",
        ])
        .output()
        .unwrap();
    let local = summary(&local);
    for key in ["parameters", "matrix_bytes", "matrix_error", "worst_tensor"] {
        assert_eq!(second[key], local[key], "{key}");
    }
    let inspect = Command::new(env!("CARGO_BIN_EXE_qins-inspect"))
        .args([out.to_str().unwrap(), "--json"])
        .output()
        .unwrap();
    let manifest: serde_json::Value = serde_json::from_slice(&inspect.stdout).unwrap();
    let source = manifest["source"].as_str().unwrap();
    assert!(source.contains("qins-test/tiny-phi3@"), "{source}");

    // Everything is in the Hub cache now, in its standard layout: nothing is fetched again.
    let cached = home.join("hub/models--qins-test--tiny-phi3/snapshots");
    assert!(cached.is_dir(), "{}", cached.display());
    let before = hub.requests("/resolve/").len();
    summary(&convert(&endpoint, &home, &args, None));
    assert_eq!(
        hub.requests("/resolve/").len(),
        before,
        "served from the cache"
    );

    // Offline, as Python's HF_HUB_OFFLINE: the cache alone, no request at all.
    let requests = hub.log.lock().unwrap().len();
    let offline = Command::new(env!("CARGO_BIN_EXE_qins-convert"))
        .args(args)
        .env("HF_HOME", &home)
        .env("HF_HUB_OFFLINE", "1")
        .env("HF_ENDPOINT", "http://127.0.0.1:9")
        .env_remove("HF_HUB_CACHE")
        .output()
        .unwrap();
    assert_eq!(summary(&offline)["parameters"], local["parameters"]);
    assert_eq!(hub.log.lock().unwrap().len(), requests);
    let elsewhere = Command::new(env!("CARGO_BIN_EXE_qins-convert"))
        .args(["--hub", "qins-test/not-cached", "-o", out.to_str().unwrap()])
        .env("HF_HOME", &home)
        .env("HF_HUB_OFFLINE", "1")
        .output()
        .unwrap();
    assert!(
        stderr(&elsewhere).contains("not in the Hub cache"),
        "{}",
        stderr(&elsewhere)
    );
}

#[test]
fn explains_missing_gated_and_unsupported_repositories_before_downloading_weights() {
    let mut hub = Hub::default();
    hub.add(
        "qins-test/gated-llama",
        folder(&fixtures().join("tiny-llama")),
        Some("hf_good"),
    );
    let mut bert = BTreeMap::new();
    bert.insert(
        "config.json".to_string(),
        br#"{"architectures": ["BertModel"], "hidden_size": 8}"#.to_vec(),
    );
    bert.insert("model.safetensors".to_string(), vec![0u8; 4096]);
    hub.add("qins-test/bert", bert, None);
    let (endpoint, hub) = start(hub);
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("hf");
    let out = tmp.path().join("m.qins");
    let run = |repo: &str, token: Option<&str>| {
        convert(
            &endpoint,
            &home,
            &["--hub", repo, "-o", out.to_str().unwrap(), "--json"],
            token,
        )
    };

    let missing = run("qins-test/nothing-here", None);
    assert!(!missing.status.success());
    assert!(
        stderr(&missing).contains("no such model repository"),
        "{}",
        stderr(&missing)
    );

    let gated = run("qins-test/gated-llama", None);
    assert!(!gated.status.success());
    let err = stderr(&gated);
    assert!(
        err.contains("is gated") && err.contains("HF_TOKEN"),
        "{err}"
    );
    let wrong = run("qins-test/gated-llama", Some("hf_wrong"));
    assert!(
        stderr(&wrong).contains("has no access"),
        "{}",
        stderr(&wrong)
    );
    assert!(
        hub.requests("/resolve/").is_empty(),
        "nothing downloaded yet"
    );
    summary(&run("qins-test/gated-llama", Some("hf_good")));
    assert!(out.exists());

    let unsupported = run("qins-test/bert", None);
    assert!(!unsupported.status.success());
    let err = stderr(&unsupported);
    assert!(err.contains("unsupported architecture BertModel"), "{err}");
    assert!(
        hub.requests("/qins-test/bert/resolve/main/model.safetensors")
            .is_empty(),
        "the weights of an unsupported model are never requested"
    );

    let bad_name = run("not a repo", None);
    assert!(
        stderr(&bad_name).contains("expected ORG/NAME"),
        "{}",
        stderr(&bad_name)
    );
}
