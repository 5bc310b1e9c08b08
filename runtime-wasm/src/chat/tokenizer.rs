use crate::format::Manifest;
use crate::{QinsError, Result};

/// The archive's tokenizer.json through the `tokenizers` crate, plus the special-token facts the
/// chat loop needs.
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    add_bos: Option<u32>,
}

impl Tokenizer {
    pub fn from_manifest(m: &Manifest) -> Result<Self> {
        let json =
            serde_json::to_vec(&m.tokenizer).map_err(|e| QinsError::Manifest(e.to_string()))?;
        let inner = tokenizers::Tokenizer::from_bytes(json)
            .map_err(|e| QinsError::Manifest(format!("tokenizer: {e}")))?;
        let add_bos = if m.add_bos_token {
            m.config.bos_token_id
        } else {
            None
        };
        Ok(Self { inner, add_bos })
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
