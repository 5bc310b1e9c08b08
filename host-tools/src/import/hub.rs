//! `qins-convert --hub ORG/NAME[@REVISION]`: the files the Hugging Face importer reads,
//! downloaded by the `hf-hub` crate with the Hub's own conventions — the standard cache
//! (`HF_HOME`, default `~/.cache/huggingface/hub`, or `HF_HUB_CACHE`; files Python tools
//! downloaded are reused), `HF_TOKEN` (else the token file `huggingface-cli login` writes),
//! `HF_ENDPOINT` for mirrors, `HF_HUB_OFFLINE=1` to use the cache alone, resumable downloads (a `.part` file continued with `Range`) with
//! a progress bar per file. Only what the importer needs is fetched: config.json first (an
//! unsupported architecture stops there), then the tokenizer and generation files, then the
//! safetensors shards the index names.

use std::collections::HashSet;
use std::path::PathBuf;
use std::str::FromStr;

use anyhow::{anyhow, bail, Context, Result};
use hf_hub::api::sync::{ApiBuilder, ApiError, ApiRepo};
use hf_hub::{Cache, Repo, RepoType};
use serde_json::Value;

use super::hf;

const DEFAULT_ENDPOINT: &str = "https://huggingface.co";
/// Attempts after the first for one file; each continues from the bytes already on disk.
const RETRIES: usize = 2;

/// `ORG/NAME[@REVISION]`: a model repository and a branch, tag or commit (default `main`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubModel {
    pub repo: String,
    pub revision: String,
}

impl FromStr for HubModel {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> Result<Self> {
        let (repo, revision) = match s.split_once('@') {
            Some((repo, rev)) => (repo, rev),
            None => (s, "main"),
        };
        // The Hub's repo-id rule: one or two segments of letters, digits, '-', '_', '.'.
        let segment_ok = |p: &str| {
            !p.is_empty()
                && !p.starts_with(['.', '-'])
                && p.len() <= 96
                && p.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        };
        let parts: Vec<&str> = repo.split('/').collect();
        if parts.len() > 2 || !parts.iter().all(|p| segment_ok(p)) {
            bail!("--hub {s}: expected ORG/NAME or ORG/NAME@REVISION (e.g. microsoft/Phi-3.5-mini-instruct)");
        }
        if revision.is_empty() || revision.chars().any(|c| c.is_whitespace() || c == '@') {
            bail!("--hub {s}: the revision after '@' must be a branch, tag or commit");
        }
        Ok(Self {
            repo: repo.to_string(),
            revision: revision.to_string(),
        })
    }
}

impl std::fmt::Display for HubModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}@{}", self.repo, self.revision)
    }
}

/// A checkpoint in the Hub cache: its snapshot folder, and the name the archive's source gets
/// (`ORG/NAME@COMMIT`).
pub struct Snapshot {
    pub dir: PathBuf,
    pub name: String,
}

fn non_empty_env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// Downloads (or finds in the cache) what the importer reads from `model`.
pub fn download(model: &HubModel, progress: bool) -> Result<Snapshot> {
    let cache = match non_empty_env("HF_HUB_CACHE") {
        Some(dir) => Cache::new(dir.into()),
        None => Cache::from_env(),
    };
    let repo = Repo::with_revision(model.repo.clone(), RepoType::Model, model.revision.clone());
    // Python's huggingface_hub reads the same switch.
    if non_empty_env("HF_HUB_OFFLINE").is_some_and(|v| !matches!(v.as_str(), "0" | "false" | "no"))
    {
        let config = cache.repo(repo).get(hf::METADATA_FILES[0]).ok_or_else(|| {
            anyhow!(
                "{model} is not in the Hub cache {} and HF_HUB_OFFLINE is set",
                cache.path().display()
            )
        })?;
        return snapshot_of(model, &config);
    }
    let endpoint = non_empty_env("HF_ENDPOINT")
        .map(|e| e.trim_end_matches('/').to_string())
        .unwrap_or_else(|| DEFAULT_ENDPOINT.into());
    let mut builder = ApiBuilder::from_cache(cache)
        .with_endpoint(endpoint.clone())
        .with_progress(progress)
        .with_retries(RETRIES);
    if let Some(token) = non_empty_env("HF_TOKEN") {
        builder = builder.with_token(Some(token));
    }
    let api = builder.build().map_err(|e| anyhow!("Hub client: {e}"))?;
    let repo = api.repo(repo);
    let hub = Hub {
        repo,
        model,
        endpoint: &endpoint,
    };

    // One small request first: a missing repo, a gated one without access or a wrong revision
    // is reported before anything is downloaded.
    let info = hub.repo.info().map_err(|e| hub.error(e, None))?;
    let listed: HashSet<&str> = info.siblings.iter().map(|s| s.rfilename.as_str()).collect();
    let [config_name, metadata @ ..] = hf::METADATA_FILES else {
        unreachable!("config.json comes first")
    };
    if !listed.contains(config_name) {
        bail!("{model}: no {config_name} in the repository: not a transformers checkpoint");
    }
    let config = hub.get(config_name)?;
    let cfg_json: Value = serde_json::from_slice(
        &std::fs::read(&config).with_context(|| format!("{}", config.display()))?,
    )
    .with_context(|| format!("{model}: {config_name}: invalid JSON"))?;
    hf::supported_architecture(&cfg_json, &format!("{model}: {config_name}"))?;
    for name in metadata.iter().filter(|n| listed.contains(*n)) {
        hub.get(name)?;
    }

    let shards = if listed.contains(hf::INDEX) {
        let index = hub.get(hf::INDEX)?;
        let json: Value = serde_json::from_slice(&std::fs::read(&index)?)
            .with_context(|| format!("{model}: {}: invalid JSON", hf::INDEX))?;
        let mut shards: Vec<String> = Vec::new();
        let map = json["weight_map"]
            .as_object()
            .ok_or_else(|| anyhow!("{model}: {}: no weight_map", hf::INDEX))?;
        for file in map.values() {
            let file = file.as_str().unwrap_or_default();
            // The index comes from the network: it may only name shards the repository lists,
            // as plain file names (a path would be written outside the snapshot folder).
            if !listed.contains(file)
                || file.contains(['/', '\\'])
                || !file.ends_with(".safetensors")
            {
                bail!(
                    "{model}: {} names {file:?}, not a safetensors file of the repository",
                    hf::INDEX
                );
            }
            if !shards.iter().any(|s| s == file) {
                shards.push(file.to_string());
            }
        }
        shards
    } else if listed.contains(hf::SINGLE) {
        vec![hf::SINGLE.to_string()]
    } else {
        bail!(
            "{model}: no {} or {}: only safetensors checkpoints are read (not PyTorch .bin)",
            hf::SINGLE,
            hf::INDEX
        );
    };
    for shard in &shards {
        hub.get(shard)?;
    }
    snapshot_of(model, &config)
}

/// The snapshot folder `config` (a file in it) lies in, named `ORG/NAME@COMMIT` after it.
fn snapshot_of(model: &HubModel, config: &std::path::Path) -> Result<Snapshot> {
    let dir = config
        .parent()
        .ok_or_else(|| anyhow!("{}: no parent folder", config.display()))?
        .to_path_buf();
    let commit = dir.file_name().map_or("".into(), |c| c.to_string_lossy());
    Ok(Snapshot {
        name: format!("{}@{commit}", model.repo),
        dir,
    })
}

struct Hub<'a> {
    repo: ApiRepo,
    model: &'a HubModel,
    endpoint: &'a str,
}

impl Hub<'_> {
    /// The file's path in the cache, downloaded first unless it is there.
    fn get(&self, name: &str) -> Result<PathBuf> {
        tracing::info!(file = name, "hub");
        self.repo.get(name).map_err(|e| self.error(e, Some(name)))
    }

    /// The Hub's answer in words a user can act on; `file` is None for the repository request.
    fn error(&self, e: ApiError, file: Option<&str>) -> anyhow::Error {
        let (model, endpoint) = (self.model, self.endpoint);
        let interrupted = |e: &dyn std::fmt::Display| {
            anyhow!(
                "{model}: downloading {} was interrupted ({e}); run the same command again to \
                 resume from the part already downloaded",
                file.unwrap_or("the file list")
            )
        };
        match e {
            ApiError::RequestError(err) => match *err {
                ureq::Error::Status(code, resp) => {
                    let kind = resp.header("x-error-code").unwrap_or_default().to_string();
                    let said = resp
                        .header("x-error-message")
                        .map(|m| format!(" (the Hub said: {m})"))
                        .unwrap_or_default();
                    match (kind.as_str(), code) {
                        ("GatedRepo", 403) => anyhow!(
                            "{model} is gated and the token in HF_TOKEN has no access: accept \
                             its conditions at {endpoint}/{}{said}",
                            model.repo
                        ),
                        ("GatedRepo", _) => anyhow!(
                            "{model} is gated: accept its conditions at {endpoint}/{} and set \
                             HF_TOKEN to a token with access{said}",
                            model.repo
                        ),
                        ("RevisionNotFound", _) => {
                            anyhow!("{model}: no revision {:?}{said}", model.revision)
                        }
                        ("EntryNotFound", _) => {
                            anyhow!("{model}: {} not found{said}", file.unwrap_or("file"))
                        }
                        ("RepoNotFound", _) | (_, 401 | 404) if file.is_none() => anyhow!(
                            "{model}: no such model repository on {endpoint} (a private one \
                             needs HF_TOKEN){said}"
                        ),
                        (_, 401 | 403) => anyhow!(
                            "{model}: access refused (HTTP {code}): set HF_TOKEN to a token \
                             that can read it{said}"
                        ),
                        _ => anyhow!(
                            "{model}: {}: HTTP {code}{said}",
                            file.unwrap_or("repository information")
                        ),
                    }
                }
                ureq::Error::Transport(t) if file.is_some() && t.kind() == ureq::ErrorKind::Io => {
                    interrupted(&t)
                }
                ureq::Error::Transport(t) => {
                    anyhow!("{model}: cannot reach {endpoint}: {t} (HF_ENDPOINT names a mirror)")
                }
            },
            ApiError::IoError(e) if file.is_some() => interrupted(&e),
            ApiError::TooManyRetries(e) => interrupted(&e),
            other => anyhow!("{model}: {}: {other}", file.unwrap_or("repository")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::HubModel;

    #[test]
    fn hub_names_parse_like_the_hub_does() {
        let m: HubModel = "microsoft/Phi-3.5-mini-instruct".parse().unwrap();
        assert_eq!(
            (m.repo.as_str(), m.revision.as_str()),
            ("microsoft/Phi-3.5-mini-instruct", "main")
        );
        let m: HubModel = "org/name@refs/pr/1".parse().unwrap();
        assert_eq!(m.revision, "refs/pr/1");
        assert_eq!("gpt2".parse::<HubModel>().unwrap().repo, "gpt2");
        for bad in [
            "",
            "a/b/c",
            "../x",
            "org/",
            "org/na me",
            "org/name@",
            "org/name@a@b",
            "-x/y",
        ] {
            assert!(bad.parse::<HubModel>().is_err(), "{bad}");
        }
    }
}
