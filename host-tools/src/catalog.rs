//! `models/catalog.json`: the archives a models folder offers, described from their manifests
//! (header and manifest only; the tensors are not read), for the page's model picker.
//! `qins-serve` makes it on request unless the folder has its own `catalog.json`, which a
//! hosted deployment may write by hand (`qins-inspect --catalog DIR` prints one to start from).

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use anyhow::{anyhow, Context, Result};
use qins_runtime::format::{GenerationDefaults, Header, Manifest, StreamReader, HEADER_LEN};
use qins_runtime::load::EngineInfo;
use serde::{Deserialize, Serialize};

/// The page reads this file (docs/WEB_API.md, "Model catalog").
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Catalog {
    pub models: Vec<CatalogEntry>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CatalogEntry {
    /// The archive's file stem.
    pub id: String,
    /// The model's name, from the source it was converted from.
    pub name: String,
    /// Relative to the catalog's own URL, or absolute (another origin must allow CORS).
    pub url: String,
    pub architecture: String,
    pub parameters: usize,
    /// The codec holding most weight bytes.
    pub codec: String,
    /// Stored tensor bytes × 8 over all parameters.
    pub bits_per_weight: f64,
    pub archive_bytes: u64,
    /// The longest context the model was trained for.
    pub context: usize,
    pub generation: GenerationDefaults,
    pub source: String,
}

/// The manifest of the archive at `path` and the file's length; checked as a load would check
/// it (magic, version, lengths, CRC, consistency), so a damaged archive is not offered.
pub fn read_manifest(path: &Path) -> Result<(Manifest, u64)> {
    let mut file = std::fs::File::open(path).context("cannot open")?;
    let len = file.metadata()?.len();
    let mut head = [0u8; HEADER_LEN];
    file.read_exact(&mut head)
        .context("shorter than a header")?;
    let header = Header::parse(&head)?;
    // Header::parse bounds the manifest's length; the file must hold it too.
    if header.manifest_len > len - HEADER_LEN as u64 {
        return Err(anyhow!(
            "truncated: the manifest runs past the end of the file"
        ));
    }
    let mut manifest = vec![0u8; header.manifest_len as usize];
    file.read_exact(&mut manifest)?;
    let mut reader = StreamReader::new(Some(len));
    reader.feed(&head, &mut |_| Ok(()))?;
    reader.feed(&manifest, &mut |_| Ok(()))?;
    let m = reader
        .into_manifest()
        .ok_or_else(|| anyhow!("no manifest"))?;
    Ok((m, len))
}

/// A readable name: the source's file or repository name without its revision and format.
fn model_name(source: &str, id: &str) -> String {
    let (kind, what) = source.split_once(':').unwrap_or(("", source));
    let last = what.rsplit(['/', '\\']).next().unwrap_or(what);
    let last = last.split('@').next().unwrap_or(last);
    let name = match kind {
        // SmolLM2-135M-Instruct.Q4_1.gguf → SmolLM2-135M-Instruct
        "gguf" => last.split('.').next().unwrap_or(last),
        _ => last,
    };
    if name.is_empty() {
        id.to_string()
    } else {
        name.to_string()
    }
}

pub fn entry(path: &Path) -> Result<CatalogEntry> {
    let (m, len) = read_manifest(path)?;
    let info = EngineInfo::of_manifest(&m, len);
    let file = path
        .file_name()
        .ok_or_else(|| anyhow!("no file name"))?
        .to_string_lossy()
        .into_owned();
    let id = file.trim_end_matches(".qins").to_string();
    let stored: u64 = m.tensors.iter().map(|t| t.bytes).sum();
    Ok(CatalogEntry {
        name: model_name(&m.source, &id),
        id,
        url: file,
        architecture: info.architecture,
        parameters: info.params,
        codec: info.codec,
        bits_per_weight: stored as f64 * 8.0 / info.params.max(1) as f64,
        archive_bytes: len,
        context: info.context,
        generation: info.generation,
        source: m.source,
    })
}

/// Every `.qins` archive directly in `dir`, smallest first; one that cannot be read is left
/// out with a warning (a catalog never offers a damaged archive).
pub fn catalog(dir: &Path, cache: &CatalogCache) -> Result<Catalog> {
    let mut models = Vec::new();
    let entries = std::fs::read_dir(dir).with_context(|| format!("{}", dir.display()))?;
    for e in entries.flatten() {
        let path = e.path();
        if path.extension().is_none_or(|x| x != "qins") || !path.is_file() {
            continue;
        }
        match cache.entry(&path) {
            Ok(entry) => models.push(entry),
            Err(err) => tracing::warn!("{}: left out of the catalog: {err:#}", path.display()),
        }
    }
    models.sort_by(|a, b| (a.archive_bytes, &a.id).cmp(&(b.archive_bytes, &b.id)));
    Ok(Catalog { models })
}

/// Entries kept by path while the file's length and modification time stay the same: a
/// manifest carries the tokenizer (megabytes for a large vocabulary), read once.
#[derive(Default)]
pub struct CatalogCache(Mutex<HashMap<PathBuf, (u64, SystemTime, CatalogEntry)>>);

impl CatalogCache {
    fn entry(&self, path: &Path) -> Result<CatalogEntry> {
        let meta = std::fs::metadata(path)?;
        let stamp = (meta.len(), meta.modified()?);
        if let Some((len, time, e)) = self.0.lock().expect("not poisoned").get(path) {
            if (*len, *time) == stamp {
                return Ok(e.clone());
            }
        }
        let e = entry(path)?;
        self.0
            .lock()
            .expect("not poisoned")
            .insert(path.to_path_buf(), (stamp.0, stamp.1, e.clone()));
        Ok(e)
    }
}

#[cfg(test)]
mod tests {
    use super::model_name;

    #[test]
    fn names_come_from_the_source() {
        assert_eq!(
            model_name("gguf:SmolLM2-135M-Instruct.Q4_1.gguf", "x"),
            "SmolLM2-135M-Instruct"
        );
        assert_eq!(
            model_name("huggingface:microsoft/Phi-3.5-mini-instruct@0123abcd", "x"),
            "Phi-3.5-mini-instruct"
        );
        assert_eq!(model_name("huggingface:tiny-llama", "x"), "tiny-llama");
        assert_eq!(model_name("", "smollm2.lut8g"), "smollm2.lut8g");
    }
}
