//! Hugging Face import against the files themselves: configs in both key styles, fused tensors
//! equal to their parts, tied embeddings, chat templates from either place, tokenizer intact.

use qins_host::import::{self, Imported};
use qins_runtime::model::{canonical_tensors, RopeScaling, TensorSpec};
use qins_tests::{fixture, ids, reference};
use safetensors::SafeTensors;
use serde_json::Value;

/// A tensor straight from the checkpoint's safetensors files (bf16/f16 widened to f32).
fn raw(dir: &str, name: &str) -> Vec<f32> {
    let dir = fixture(dir);
    let index = dir.join("model.safetensors.index.json");
    let file = if index.exists() {
        let idx: Value = serde_json::from_slice(&std::fs::read(index).unwrap()).unwrap();
        idx["weight_map"][name].as_str().unwrap().to_string()
    } else {
        "model.safetensors".into()
    };
    let bytes = std::fs::read(dir.join(file)).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let t = st.tensor(name).unwrap();
    let widen = |b: &[u8]| match t.dtype() {
        safetensors::Dtype::BF16 => half::bf16::from_le_bytes([b[0], b[1]]).to_f32(),
        safetensors::Dtype::F16 => half::f16::from_le_bytes([b[0], b[1]]).to_f32(),
        d => panic!("fixture dtype {d:?}"),
    };
    t.data().chunks_exact(2).map(widen).collect()
}

fn load(imp: &Imported, name: &str) -> Vec<f32> {
    let spec: TensorSpec = canonical_tensors(&imp.config)
        .into_iter()
        .find(|s| s.name == name)
        .unwrap();
    imp.weights.load(&spec).unwrap()
}

#[test]
fn phi3_config_and_fused_tensors() {
    let imp = import::open(&fixture("tiny-phi3")).unwrap();
    let c = &imp.config;
    assert_eq!(c.architecture, "phi3");
    assert_eq!(
        (
            c.num_layers,
            c.hidden_size,
            c.num_heads,
            c.head_dim,
            c.rotary_dim
        ),
        (2, 64, 4, 16, 16)
    );
    assert_eq!(
        c.eos_token_ids,
        vec![3, 2],
        "generation_config.json wins over config.json"
    );
    match c.rope_scaling.as_ref().unwrap() {
        RopeScaling::Longrope {
            short_factor,
            long_factor,
            original_max_position_embeddings,
            attention_factor,
        } => {
            assert_eq!(*original_max_position_embeddings, 32);
            assert_eq!(short_factor[1], 1.05);
            assert_eq!(long_factor[7], 5.2);
            let want = (1.0 + (128f32 / 32.0).ln() / 32f32.ln()).sqrt();
            assert!((attention_factor - want).abs() < 1e-6);
        }
        other => panic!("expected longrope, got {other:?}"),
    }
    // Phi-3 is fused already: canonical tensors are the checkpoint's own.
    assert_eq!(
        load(&imp, "layers.1.attn_qkv"),
        raw("tiny-phi3", "model.layers.1.self_attn.qkv_proj.weight")
    );
    assert_eq!(
        load(&imp, "layers.0.ffn_gate_up"),
        raw("tiny-phi3", "model.layers.0.mlp.gate_up_proj.weight")
    );
    assert_eq!(load(&imp, "output"), raw("tiny-phi3", "lm_head.weight"));
    assert!(imp.chat_template.as_deref().unwrap().contains("<|user|>"));
    assert_eq!(imp.eos_token.as_deref(), Some("<|end|>"));
}

#[test]
fn llama_gqa_tied_and_transformers5_keys() {
    let imp = import::open(&fixture("tiny-llama")).unwrap();
    let c = &imp.config;
    assert_eq!(c.architecture, "llama");
    assert_eq!((c.num_heads, c.num_kv_heads), (4, 2));
    assert_eq!(c.rope_theta, 100000.0, "read from rope_parameters");
    assert!(c.rope_scaling.is_none());
    assert!(c.tie_word_embeddings);
    assert!(!canonical_tensors(c).iter().any(|s| s.name == "output"));
    let p = "model.layers.0";
    let mut qkv = raw("tiny-llama", &format!("{p}.self_attn.q_proj.weight"));
    qkv.extend(raw("tiny-llama", &format!("{p}.self_attn.k_proj.weight")));
    qkv.extend(raw("tiny-llama", &format!("{p}.self_attn.v_proj.weight")));
    assert_eq!(load(&imp, "layers.0.attn_qkv"), qkv);
    let mut gate_up = raw("tiny-llama", &format!("{p}.mlp.gate_proj.weight"));
    gate_up.extend(raw("tiny-llama", &format!("{p}.mlp.up_proj.weight")));
    assert_eq!(load(&imp, "layers.0.ffn_gate_up"), gate_up);
    assert!(
        imp.chat_template
            .as_deref()
            .unwrap()
            .contains("<|im_start|>"),
        "from chat_template.jinja"
    );
}

#[test]
fn qwen2_biases_untied_head_and_its_template() {
    let imp = import::open(&fixture("tiny-qwen2")).unwrap();
    let c = &imp.config;
    assert_eq!(c.architecture, "qwen2");
    assert!(c.attention_bias && !c.tie_word_embeddings);
    assert_eq!(c.rope_theta, 1e6);
    let p = "model.layers.1.self_attn";
    let mut bias = raw("tiny-qwen2", &format!("{p}.q_proj.bias"));
    bias.extend(raw("tiny-qwen2", &format!("{p}.k_proj.bias")));
    bias.extend(raw("tiny-qwen2", &format!("{p}.v_proj.bias")));
    assert_eq!(bias.len(), 64 + 2 * 32);
    assert_eq!(load(&imp, "layers.1.attn_qkv_bias"), bias);
    assert_eq!(load(&imp, "output"), raw("tiny-qwen2", "lm_head.weight"));
    // The tensors go in forward order: the bias right after its projection.
    let names: Vec<String> = canonical_tensors(c).into_iter().map(|s| s.name).collect();
    let at = |n: &str| names.iter().position(|x| x == n).unwrap();
    assert_eq!(at("layers.0.attn_qkv_bias"), at("layers.0.attn_qkv") + 1);
    assert!(imp.chat_template.as_deref().unwrap().contains("# Tools"));
}

/// Qwen2.5's template renders as transformers' apply_chat_template does, tools offered, tool
/// calls and tool results included (JSON written as Python's json.dumps writes it).
#[test]
fn qwen2_template_with_tools_matches_transformers() {
    let imp = import::open(&fixture("tiny-qwen2")).unwrap();
    let t = qins_runtime::chat::ChatTemplate::new(imp.chat_template.as_deref().unwrap()).unwrap();
    let cases = reference("tiny-qwen2")["templates"].clone();
    assert_eq!(cases.as_array().unwrap().len(), 8);
    for (i, c) in cases.as_array().unwrap().iter().enumerate() {
        let tools = Some(&c["tools"]).filter(|t| !t.is_null());
        let gen = c["add_generation_prompt"].as_bool().unwrap();
        let got = t
            .render_json(&c["messages"], tools, gen, "", "<|im_end|>")
            .unwrap();
        assert_eq!(got, c["expected"].as_str().unwrap(), "case {i}");
    }
}

#[test]
fn embedded_tokenizer_reproduces_the_reference_ids() {
    for dir in ["tiny-phi3", "tiny-llama"] {
        let imp = import::open(&fixture(dir)).unwrap();
        let tok =
            tokenizers::Tokenizer::from_bytes(serde_json::to_vec(&imp.tokenizer).unwrap()).unwrap();
        let ids = ids(&reference(dir)["logits"]["long"]["ids"]);
        let text = tok.decode(&ids, false).unwrap();
        let again = tok.encode(text.as_str(), false).unwrap();
        assert_eq!(
            &again.get_ids()[..ids.len() - 1],
            &ids[..ids.len() - 1],
            "{dir}"
        );
    }
}
