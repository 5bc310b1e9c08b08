use crate::format::Manifest;
use crate::{QinsError, Result};

/// The archive's tokenizer.json through the `tokenizers` crate, plus the special-token facts the
/// chat loop needs.
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    add_bos: Option<u32>,
}

/// A checked tokenizer.json, serialized, and the BOS rule: what [`Tokenizer`] is built from.
pub struct TokenizerSource {
    json: Vec<u8>,
    add_bos: Option<u32>,
}

impl TokenizerSource {
    fn of_json(tokenizer: &serde_json::Value, add_bos: Option<u32>) -> Result<Self> {
        check_bpe_merges(tokenizer)?;
        let json = serde_json::to_vec(tokenizer).map_err(|e| QinsError::Manifest(e.to_string()))?;
        Ok(Self { json, add_bos })
    }

    pub fn build(self) -> Result<Tokenizer> {
        let inner = tokenizers::Tokenizer::from_bytes(self.json)
            .map_err(|e| QinsError::Manifest(format!("tokenizer: {e}")))?;
        Ok(Tokenizer {
            inner,
            add_bos: self.add_bos,
        })
    }
}

impl Tokenizer {
    pub fn from_manifest(m: &Manifest) -> Result<Self> {
        Self::checked(m)?.build()
    }

    /// The manifest's tokenizer checked and serialized, to be built later (on another thread
    /// during a load: a 150k-token vocabulary takes a tenth of a second to build).
    pub fn checked(m: &Manifest) -> Result<TokenizerSource> {
        let add_bos = if m.add_bos_token {
            m.config.bos_token_id
        } else {
            None
        };
        TokenizerSource::of_json(&m.tokenizer, add_bos)
    }

    /// A tokenizer.json document, with the BOS id `encode(…, true)` prepends (None: never).
    pub fn from_json(tokenizer: &serde_json::Value, add_bos: Option<u32>) -> Result<Self> {
        TokenizerSource::of_json(tokenizer, add_bos)?.build()
    }

    /// Token ids of `text`; special-token text (`<|im_start|>`) becomes its single id. With
    /// `bos`, prepends BOS when the model expects it (plain text; chat templates write their own).
    pub fn encode(&self, text: &str, bos: bool) -> Result<Vec<u32>> {
        let enc = self
            .inner
            .encode(text, false)
            .map_err(|e| QinsError::Codec(format!("tokenize: {e}")))?;
        let mut ids = Vec::with_capacity(enc.len() + 1);
        if bos {
            ids.extend(self.add_bos);
        }
        ids.extend_from_slice(enc.get_ids());
        Ok(ids)
    }

    pub fn decode(&self, ids: &[u32], skip_special: bool) -> Result<String> {
        self.inner
            .decode(ids, skip_special)
            .map_err(|e| QinsError::Codec(format!("detokenize: {e}")))
    }

    pub fn token_id(&self, text: &str) -> Option<u32> {
        self.inner.token_to_id(text)
    }

    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }
}

/// Refuses BPE merges that `tokenizers` 0.23 would panic on (an abort in the browser) instead
/// of erroring: a merged token longer than every vocabulary entry (its build buffer is sized by
/// the longest one), or a second part shorter than the continuing-subword prefix. Found by
/// `qins-fuzz tokenizer`; the crate's own checks (parts and result in the vocabulary) follow.
fn check_bpe_merges(tokenizer: &serde_json::Value) -> Result<()> {
    let model = &tokenizer["model"];
    // `tokenizers` also reads a model without "type" as BPE when its fields fit.
    if !matches!(model["type"].as_str(), Some("BPE") | None) {
        return Ok(());
    }
    let longest = model["vocab"]
        .as_object()
        .map_or(0, |v| v.keys().map(String::len).max().unwrap_or(0));
    let prefix = model["continuing_subword_prefix"]
        .as_str()
        .map_or(0, str::len);
    let Some(merges) = model["merges"].as_array() else {
        return Ok(());
    };
    for (i, merge) in merges.iter().enumerate() {
        // "a b" (older files) or ["a", "b"].
        let (a, b) = match merge {
            serde_json::Value::String(s) => match s.split_once(' ') {
                Some((a, b)) => (a.len(), b.len()),
                None => continue,
            },
            serde_json::Value::Array(p) if p.len() == 2 => (
                p[0].as_str().map_or(0, str::len),
                p[1].as_str().map_or(0, str::len),
            ),
            _ => continue,
        };
        if b < prefix || a + b - prefix > longest {
            return Err(QinsError::Manifest(format!(
                "tokenizer: merge {i} makes a token longer than any in the vocabulary"
            )));
        }
    }
    Ok(())
}

/// Incremental detokenization that never emits broken UTF-8: text is released only once the
/// tokens decode to complete characters (a byte-level token may hold half of one).
pub struct TextStream {
    ids: Vec<u32>,
    prefix: usize,
    read: usize,
}

impl Default for TextStream {
    fn default() -> Self {
        Self::new()
    }
}

impl TextStream {
    pub fn new() -> Self {
        Self {
            ids: Vec::new(),
            prefix: 0,
            read: 0,
        }
    }

    /// Adds a token; returns the newly completed text, if any. Decoding a short window (a few
    /// tokens of left context) keeps this O(1) per token and lets decoders that depend on the
    /// left neighbour (leading spaces) see it.
    pub fn push(&mut self, tok: &Tokenizer, id: u32) -> Result<Option<String>> {
        self.ids.push(id);
        let before = tok.decode(&self.ids[self.prefix..self.read], true)?;
        let now = tok.decode(&self.ids[self.prefix..], true)?;
        if now.len() > before.len() && !now.ends_with('\u{fffd}') && now.starts_with(&before) {
            let new = now[before.len()..].to_string();
            self.prefix = self.read;
            self.read = self.ids.len();
            return Ok(Some(new));
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::Tokenizer;
    use crate::format::Manifest;

    /// `qins-fuzz tokenizer` found it: the longest token dropped from the vocabulary while a
    /// merge still builds it made `tokenizers` panic; now it is a clear error.
    #[test]
    fn a_merge_longer_than_the_vocabulary_is_an_error_not_a_panic() {
        let mut tok: serde_json::Value = serde_json::from_str(include_str!(
            "../../../tests/fixtures/tiny-llama/tokenizer.json"
        ))
        .unwrap();
        let vocab = tok["model"]["vocab"].as_object_mut().unwrap();
        let longest = vocab.keys().max_by_key(|k| k.len()).unwrap().clone();
        vocab.remove(&longest);
        let mut m = Manifest::carrying_tokenizer(tok, 320);
        let err = Tokenizer::from_manifest(&m).err().expect("refused");
        assert!(err.to_string().contains("tokenizer"), "{err}");
        m.tokenizer = serde_json::from_str(include_str!(
            "../../../tests/fixtures/tiny-llama/tokenizer.json"
        ))
        .unwrap();
        assert!(
            Tokenizer::from_manifest(&m).is_ok(),
            "the real one still loads"
        );
    }

    /// Its second finding: a model without "type" (read as BPE all the same) whose
    /// continuing-subword prefix is longer than a merge's second part.
    #[test]
    fn an_untyped_bpe_with_a_long_subword_prefix_is_an_error_not_a_panic() {
        let mut tok: serde_json::Value = serde_json::from_str(include_str!(
            "../../../tests/fixtures/tiny-llama/tokenizer.json"
        ))
        .unwrap();
        let model = tok["model"].as_object_mut().unwrap();
        model.remove("type");
        model.insert(
            "continuing_subword_prefix".into(),
            "\u{0}".repeat(69).into(),
        );
        let err = Tokenizer::from_manifest(&Manifest::carrying_tokenizer(tok, 320))
            .err()
            .expect("refused");
        assert!(err.to_string().contains("tokenizer"), "{err}");
    }
}
