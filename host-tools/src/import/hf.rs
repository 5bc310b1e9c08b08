//! Hugging Face checkpoint folders: config.json, single or sharded safetensors (memory-mapped),
//! tokenizer.json, tokenizer_config.json / chat_template.jinja, generation_config.json.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use memmap2::Mmap;
use qins_runtime::format::GenerationDefaults;
use qins_runtime::model::{split_name, ModelConfig, RopeScaling, TensorSpec};
use safetensors::{Dtype, SafeTensors};
use serde_json::Value;

use super::{check_len, Imported, WeightSource};

/// The sharded checkpoint's index (tensor name → shard file).
pub const INDEX: &str = "model.safetensors.index.json";
/// The single-file checkpoint.
pub const SINGLE: &str = "model.safetensors";
/// The files besides the weights this importer reads, the first required.
pub const METADATA_FILES: &[&str] = &[
    "config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "chat_template.jinja",
    "generation_config.json",
];

const SUPPORTED: &[&str] = &["LlamaForCausalLM", "Phi3ForCausalLM", "Qwen2ForCausalLM"];

/// Where a checkpoint's files come from: a folder on disk (safetensors memory-mapped), or
/// memory (the fuzzer, tests/src/bin/qins-fuzz.rs, which feeds mutated files).
pub trait Files: Send + Sync {
    /// The file's bytes, None when it does not exist.
    fn read(&self, name: &str) -> Result<Option<Bytes>>;
    /// How errors name the file.
    fn describe(&self, name: &str) -> String;
}

/// A file's bytes, mapped or owned.
pub type Bytes = Box<dyn AsRef<[u8]> + Send + Sync>;

struct Folder(PathBuf);

impl Files for Folder {
    fn read(&self, name: &str) -> Result<Option<Bytes>> {
        let path = self.0.join(name);
        if !path.exists() {
            return Ok(None);
        }
        let file = File::open(&path).with_context(|| format!("{}: cannot open", path.display()))?;
        // SAFETY: the file is only read; a concurrent writer could change the bytes we read,
        // which safetensors' bounds checks keep memory-safe.
        let mmap = unsafe { Mmap::map(&file) }
            .with_context(|| format!("{}: cannot map", path.display()))?;
        Ok(Some(Box::new(mmap)))
    }

    fn describe(&self, name: &str) -> String {
        self.0.join(name).display().to_string()
    }
}

/// Files held in memory, by name.
impl Files for std::collections::BTreeMap<String, Vec<u8>> {
    fn read(&self, name: &str) -> Result<Option<Bytes>> {
        Ok(self.get(name).map(|b| Box::new(b.clone()) as Bytes))
    }

    fn describe(&self, name: &str) -> String {
        name.to_string()
    }
}

pub fn open(dir: &Path) -> Result<Imported> {
    let name = dir.file_name().map_or("".into(), |n| n.to_string_lossy());
    open_named(dir, &name)
}

/// [`open`] with the archive's source named by the caller (the Hub's `org/name@commit`).
pub fn open_named(dir: &Path, name: &str) -> Result<Imported> {
    open_files(Box::new(Folder(dir.to_path_buf())), name)
}

/// The architecture config.json names, when this importer reads it; `config_path` names the
/// file in errors. The Hub download calls this before it fetches any weights.
pub fn supported_architecture<'a>(cfg_json: &'a Value, config_path: &str) -> Result<&'a str> {
    let arch = cfg_json["architectures"]
        .get(0)
        .and_then(Value::as_str)
        .ok_or_else(|| anyhow!("{config_path}: no \"architectures\" entry"))?;
    if !SUPPORTED.contains(&arch) {
        bail!(
            "{config_path}: unsupported architecture {arch} (supported: {})",
            SUPPORTED.join(", ")
        );
    }
    Ok(arch)
}

/// Imports the checkpoint `files` hold; `name` goes into the archive's source.
pub fn open_files(files: Box<dyn Files>, name: &str) -> Result<Imported> {
    let config_path = files.describe("config.json");
    let cfg_json = read_json(&*files, "config.json")?
        .ok_or_else(|| anyhow!("{config_path}: cannot read: not found"))?;
    let arch = supported_architecture(&cfg_json, &config_path)?;
    let family = match arch {
        "Phi3ForCausalLM" => "phi3",
        "Qwen2ForCausalLM" => "qwen2",
        _ => "llama",
    };
    // Qwen2 always adds biases to Q, K and V (and only there); Llama's attention_bias would
    // add one to the output projection too, which the forward pass does not have.
    if family != "qwen2" && cfg_json["attention_bias"].as_bool() == Some(true)
        || cfg_json["mlp_bias"].as_bool() == Some(true)
    {
        bail!("{config_path}: attention/MLP biases are not supported");
    }
    if cfg_json["use_sliding_window"].as_bool() == Some(true) {
        bail!("{config_path}: sliding-window attention is not supported");
    }

    let gen_json = read_json(&*files, "generation_config.json")?.unwrap_or(Value::Null);
    let mut config =
        parse_config(&cfg_json, &gen_json, family).with_context(|| config_path.clone())?;

    let tokenizer = read_json(&*files, "tokenizer.json")?.ok_or_else(|| {
        anyhow!(
            "{}: cannot read: not found",
            files.describe("tokenizer.json")
        )
    })?;
    let tc = read_json(&*files, "tokenizer_config.json")?.unwrap_or(Value::Null);
    let chat_template = match files.read("chat_template.jinja")? {
        Some(b) => Some(
            String::from_utf8((*b).as_ref().to_vec())
                .with_context(|| files.describe("chat_template.jinja"))?,
        ),
        None => template_from_config(&tc["chat_template"]),
    };

    let weights = Safetensors::open(files)?;
    if !config.tie_word_embeddings && !weights.index.contains_key("lm_head.weight") {
        // Some checkpoints omit lm_head and leave tying implicit.
        tracing::warn!("no lm_head.weight: tying the output projection to the embedding");
        config.tie_word_embeddings = true;
    }
    config
        .validate()
        .map_err(|e| anyhow!("{config_path}: {e}"))?;

    Ok(Imported {
        generation: GenerationDefaults {
            temperature: gen_json["temperature"].as_f64().map(|v| v as f32),
            top_p: gen_json["top_p"].as_f64().map(|v| v as f32),
            top_k: gen_json["top_k"].as_u64().map(|v| v as u32),
            repetition_penalty: gen_json["repetition_penalty"].as_f64().map(|v| v as f32),
        },
        bos_token: token_text(&tc["bos_token"]),
        eos_token: token_text(&tc["eos_token"]),
        add_bos_token: tc["add_bos_token"].as_bool().unwrap_or(false),
        chat_template,
        tokenizer,
        source: format!("huggingface:{name}"),
        weights: Box::new(HfWeights {
            st: weights,
            phi3: family == "phi3",
            q_dim: config.q_dim(),
            kv_dim: config.kv_dim(),
        }),
        config,
    })
}

/// A JSON file, None when it does not exist.
fn read_json(files: &dyn Files, name: &str) -> Result<Option<Value>> {
    let Some(bytes) = files.read(name)? else {
        return Ok(None);
    };
    serde_json::from_slice(bytes.as_ref().as_ref())
        .map(Some)
        .with_context(|| format!("{}: invalid JSON", files.describe(name)))
}

/// `chat_template` is a string, or a list of `{name, template}` (then the "default" one).
fn template_from_config(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Array(list) => list
            .iter()
            .find(|t| t["name"] == "default")
            .or(list.first())
            .and_then(|t| t["template"].as_str().map(String::from)),
        _ => None,
    }
}

/// A special token is given as a string or as an AddedToken object `{content, ...}`.
fn token_text(v: &Value) -> Option<String> {
    v.as_str()
        .or_else(|| v["content"].as_str())
        .map(String::from)
}

fn ids(v: &Value) -> Vec<u32> {
    match v {
        Value::Number(n) => n.as_u64().map(|i| vec![i as u32]).unwrap_or_default(),
        Value::Array(a) => a
            .iter()
            .filter_map(Value::as_u64)
            .map(|i| i as u32)
            .collect(),
        _ => vec![],
    }
}

fn parse_config(c: &Value, gen: &Value, family: &str) -> Result<ModelConfig> {
    let req = |k: &str| {
        c[k].as_u64()
            .map(|v| v as usize)
            .ok_or_else(|| anyhow!("missing integer \"{k}\""))
    };
    let hidden = req("hidden_size")?;
    let heads = req("num_attention_heads")?;
    let head_dim = c["head_dim"]
        .as_u64()
        .map_or(hidden / heads.max(1), |v| v as usize);
    // transformers 5 writes rope_parameters; checkpoints on the Hub use rope_theta/rope_scaling.
    let params = &c["rope_parameters"];
    let rope_theta = c["rope_theta"]
        .as_f64()
        .or(params["rope_theta"].as_f64())
        .unwrap_or(10000.0);
    let partial = c["partial_rotary_factor"]
        .as_f64()
        .or(params["partial_rotary_factor"].as_f64())
        .unwrap_or(1.0);
    let rotary_dim = ((head_dim as f64 * partial) as usize) & !1;
    let max_pos = req("max_position_embeddings")?;
    let scaling = if c["rope_scaling"].is_object() {
        &c["rope_scaling"]
    } else {
        params
    };
    let rope_scaling = parse_rope_scaling(scaling, c, max_pos)?;
    let mut eos = ids(&gen["eos_token_id"]);
    if eos.is_empty() {
        eos = ids(&c["eos_token_id"]);
    }
    Ok(ModelConfig {
        architecture: family.into(),
        vocab_size: req("vocab_size")?,
        hidden_size: hidden,
        intermediate_size: req("intermediate_size")?,
        num_layers: req("num_hidden_layers")?,
        num_heads: heads,
        num_kv_heads: c["num_key_value_heads"]
            .as_u64()
            .map_or(heads, |v| v as usize),
        head_dim,
        rotary_dim,
        rms_norm_eps: c["rms_norm_eps"].as_f64().unwrap_or(1e-6) as f32,
        rope_theta: rope_theta as f32,
        rope_scaling,
        max_position_embeddings: max_pos,
        tie_word_embeddings: c["tie_word_embeddings"].as_bool().unwrap_or(false),
        attention_bias: family == "qwen2",
        bos_token_id: ids(&c["bos_token_id"]).first().copied(),
        eos_token_ids: eos,
    })
}

fn parse_rope_scaling(s: &Value, c: &Value, max_pos: usize) -> Result<Option<RopeScaling>> {
    let kind = s["rope_type"]
        .as_str()
        .or(s["type"].as_str())
        .unwrap_or("default");
    let floats = |k: &str| -> Result<Vec<f32>> {
        s[k].as_array()
            .ok_or_else(|| anyhow!("rope scaling \"{k}\" missing"))?
            .iter()
            .map(|v| {
                v.as_f64()
                    .map(|f| f as f32)
                    .ok_or_else(|| anyhow!("rope scaling \"{k}\" not numeric"))
            })
            .collect()
    };
    let orig = || {
        s["original_max_position_embeddings"]
            .as_u64()
            .or(c["original_max_position_embeddings"].as_u64())
            .map(|v| v as usize)
            .ok_or_else(|| anyhow!("rope scaling needs original_max_position_embeddings"))
    };
    Ok(match kind {
        "default" => None,
        "longrope" | "su" => {
            let orig = orig()?;
            // As transformers computes it: the factor is max/orig when orig is given at the top
            // level, else the scaling's own "factor".
            let factor = if c["original_max_position_embeddings"].is_u64() {
                max_pos as f64 / orig as f64
            } else {
                s["factor"].as_f64().unwrap_or(max_pos as f64 / orig as f64)
            };
            let attention_factor = match s["attention_factor"].as_f64() {
                Some(a) => a,
                None if factor <= 1.0 => 1.0,
                None => (1.0 + factor.ln() / (orig as f64).ln()).sqrt(),
            };
            Some(RopeScaling::Longrope {
                short_factor: floats("short_factor")?,
                long_factor: floats("long_factor")?,
                original_max_position_embeddings: orig,
                attention_factor: attention_factor as f32,
            })
        }
        "llama3" => Some(RopeScaling::Llama3 {
            factor: s["factor"].as_f64().unwrap_or(8.0) as f32,
            low_freq_factor: s["low_freq_factor"].as_f64().unwrap_or(1.0) as f32,
            high_freq_factor: s["high_freq_factor"].as_f64().unwrap_or(4.0) as f32,
            original_max_position_embeddings: orig()?,
        }),
        "linear" => Some(RopeScaling::Linear {
            factor: s["factor"]
                .as_f64()
                .ok_or_else(|| anyhow!("linear rope scaling needs a factor"))?
                as f32,
        }),
        other => bail!("unsupported rope scaling type \"{other}\""),
    })
}

/// Safetensors files (memory-mapped from a folder) and which file holds each tensor.
struct Safetensors {
    /// Each file's name as errors give it, and its bytes.
    files: Vec<(String, Bytes)>,
    index: HashMap<String, usize>,
}

impl Safetensors {
    fn open(source: Box<dyn Files>) -> Result<Self> {
        let index_name = source.describe(INDEX);
        let mut names: Vec<String> = Vec::new();
        let mut map: HashMap<String, String> = HashMap::new();
        if let Some(idx) = read_json(&*source, INDEX)? {
            let wm = idx["weight_map"]
                .as_object()
                .ok_or_else(|| anyhow!("{index_name}: no weight_map"))?;
            for (tensor, file) in wm {
                let file = file
                    .as_str()
                    .ok_or_else(|| anyhow!("{index_name}: bad weight_map"))?;
                if !names.iter().any(|n| n == file) {
                    names.push(file.to_string());
                }
                map.insert(tensor.clone(), file.to_string());
            }
        } else {
            names.push(SINGLE.into());
        }
        let mut files = Vec::new();
        let mut index = HashMap::new();
        for (i, name) in names.iter().enumerate() {
            let shown = source.describe(name);
            let bytes = source.read(name)?.ok_or_else(|| {
                if map.is_empty() {
                    anyhow!("{}: no model.safetensors or {INDEX}", source.describe(""))
                } else {
                    anyhow!("{shown}: listed by {index_name} but not found")
                }
            })?;
            let st =
                SafeTensors::deserialize((*bytes).as_ref()).map_err(|e| anyhow!("{shown}: {e}"))?;
            for (tname, _) in st.tensors() {
                if map.get(&tname).is_none_or(|f| f == name) {
                    index.insert(tname, i);
                }
            }
            files.push((shown, bytes));
        }
        for (tensor, file) in &map {
            if !index.contains_key(tensor) {
                bail!("{index_name}: index lists {tensor} but {file} does not hold it");
            }
        }
        Ok(Self { files, index })
    }

    /// One tensor as f32 with its shape.
    fn get(&self, name: &str) -> Result<(Vec<f32>, Vec<usize>)> {
        let &i = self
            .index
            .get(name)
            .ok_or_else(|| anyhow!("tensor {name} not found in the checkpoint"))?;
        let (path, bytes) = &self.files[i];
        let st =
            SafeTensors::deserialize((**bytes).as_ref()).map_err(|e| anyhow!("{path}: {e}"))?;
        let t = st
            .tensor(name)
            .map_err(|e| anyhow!("{path}: {name}: {e}"))?;
        let b = t.data();
        let data = match t.dtype() {
            Dtype::F32 => b
                .chunks_exact(4)
                .map(|x| f32::from_le_bytes([x[0], x[1], x[2], x[3]]))
                .collect(),
            Dtype::F16 => b
                .chunks_exact(2)
                .map(|x| half::f16::from_le_bytes([x[0], x[1]]).to_f32())
                .collect(),
            Dtype::BF16 => b
                .chunks_exact(2)
                .map(|x| half::bf16::from_le_bytes([x[0], x[1]]).to_f32())
                .collect(),
            other => bail!("{path}: {name}: unsupported dtype {other:?}"),
        };
        Ok((data, t.shape().to_vec()))
    }

    /// Tensor `name` checked against `shape`.
    fn get_shaped(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>> {
        let (data, got) = self.get(name)?;
        if got != shape {
            let (path, _) = &self.files[self.index[name]];
            bail!("{path}: {name} has shape {got:?}, the config implies {shape:?}");
        }
        Ok(data)
    }
}

struct HfWeights {
    st: Safetensors,
    phi3: bool,
    q_dim: usize,
    kv_dim: usize,
}

impl HfWeights {
    /// Loads the row-blocks of a fused canonical tensor, each checked against its own shape.
    fn concat(&self, parts: &[(String, usize)], cols: usize) -> Result<Vec<f32>> {
        let mut out = Vec::new();
        for (name, rows) in parts {
            out.extend(self.st.get_shaped(name, &[*rows, cols])?);
        }
        Ok(out)
    }
}

impl WeightSource for HfWeights {
    fn load(&self, spec: &TensorSpec) -> Result<Vec<f32>> {
        let name = spec.name.as_str();
        let shape = spec.shape.as_slice();
        let cols = shape.last().copied().unwrap_or(0);
        let layer = |i: usize, rest: &str| format!("model.layers.{i}.{rest}");
        let data = match split_name(name) {
            (Some(i), "attn_norm") => self
                .st
                .get_shaped(&layer(i, "input_layernorm.weight"), shape)?,
            (Some(i), "ffn_norm") => self
                .st
                .get_shaped(&layer(i, "post_attention_layernorm.weight"), shape)?,
            (Some(i), "attn_output") => self
                .st
                .get_shaped(&layer(i, "self_attn.o_proj.weight"), shape)?,
            (Some(i), "ffn_down") => self
                .st
                .get_shaped(&layer(i, "mlp.down_proj.weight"), shape)?,
            // Phi-3 stores the fused tensors itself; Llama's parts are stacked row-wise.
            (Some(i), "attn_qkv") if self.phi3 => self
                .st
                .get_shaped(&layer(i, "self_attn.qkv_proj.weight"), shape)?,
            (Some(i), "ffn_gate_up") if self.phi3 => self
                .st
                .get_shaped(&layer(i, "mlp.gate_up_proj.weight"), shape)?,
            (Some(i), "attn_qkv_bias") => {
                let mut out = Vec::new();
                for (part, n) in [("q", self.q_dim), ("k", self.kv_dim), ("v", self.kv_dim)] {
                    out.extend(
                        self.st
                            .get_shaped(&layer(i, &format!("self_attn.{part}_proj.bias")), &[n])?,
                    );
                }
                out
            }
            (Some(i), "attn_qkv") => self.concat(
                &[
                    (layer(i, "self_attn.q_proj.weight"), self.q_dim),
                    (layer(i, "self_attn.k_proj.weight"), self.kv_dim),
                    (layer(i, "self_attn.v_proj.weight"), self.kv_dim),
                ],
                cols,
            )?,
            (Some(i), "ffn_gate_up") => {
                let ff = shape[0] / 2;
                self.concat(
                    &[
                        (layer(i, "mlp.gate_proj.weight"), ff),
                        (layer(i, "mlp.up_proj.weight"), ff),
                    ],
                    cols,
                )?
            }
            (None, "token_embd") => self.st.get_shaped("model.embed_tokens.weight", shape)?,
            (None, "output_norm") => self.st.get_shaped("model.norm.weight", shape)?,
            (None, "output") => self.st.get_shaped("lm_head.weight", shape)?,
            _ => bail!("unknown canonical tensor {name}"),
        };
        check_len(spec, &data, "safetensors")?;
        Ok(data)
    }
}
