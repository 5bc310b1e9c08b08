//! Real models against llama.cpp (reference outputs made by fixtures/make_llamacpp_ref.py from
//! the same GGUF, requantized to F32 by llama.cpp): identical token ids on varied strings, the
//! first step's top-20 logits, and identical greedy answers from the f32 archive, for
//! SmolLM2-135M-Instruct (llama) and Qwen2.5-Coder-0.5B-Instruct (qwen2).

use std::path::Path;

use qins_runtime::chat::{Generator, Message, SamplingParams};
use qins_runtime::codec::Codec;
use qins_runtime::cpu::{CpuEngine, CpuModel};
use qins_runtime::engine::{block_on, Engine};
use qins_runtime::model::Weights;
use qins_tests::{convert_to, ids, qwen_gguf, reference, smollm2_gguf};

#[test]
fn smollm2_matches_llama_cpp() {
    matches_llama_cpp(&smollm2_gguf(), "smollm2-llamacpp.json");
}

#[test]
fn qwen2_5_coder_matches_llama_cpp() {
    matches_llama_cpp(&qwen_gguf(), "qwen2.5-coder-llamacpp.json");
}

fn matches_llama_cpp(gguf: &Path, fixture: &str) {
    let r = reference(fixture);
    let dir = tempfile::tempdir().unwrap();
    let path = convert_to(gguf, Codec::F32, dir.path());
    let (manifest, weights) = Weights::read(std::fs::File::open(path).unwrap(), None).unwrap();
    let engine = CpuEngine::new(CpuModel::new(manifest.config.clone(), weights));
    let mut gen = Generator::new(engine, &manifest).unwrap();

    // The tokenizer the archive carries splits text as llama.cpp does.
    let cases = r["tokenize"].as_array().unwrap();
    assert!(cases.len() >= 12);
    for c in cases {
        let text = c["text"].as_str().unwrap();
        assert_eq!(
            gen.tokenizer.encode(text, false).unwrap(),
            ids(&c["ids"]),
            "{text:?}"
        );
    }

    for case in r["greedy"].as_array().unwrap() {
        let q = case["question"].as_str().unwrap();
        // The archive's own template renders the same prompt llama.cpp was given.
        let prompt = gen.chat_prompt(&[Message::new("user", q)]).unwrap();
        assert_eq!(prompt, case["prompt"].as_str().unwrap());
        let prompt_ids = gen.tokenizer.encode(&prompt, false).unwrap();
        assert_eq!(prompt_ids, ids(&case["prompt_ids"]));
        // First-step logits of llama.cpp's top 20 tokens.
        gen.engine.reset();
        let logits = block_on(gen.engine.extend(&prompt_ids, false)).unwrap();
        for pair in case["first_top"].as_array().unwrap() {
            let (id, want) = (
                pair[0].as_u64().unwrap() as usize,
                pair[1].as_f64().unwrap() as f32,
            );
            assert!(
                (logits[id] - want).abs() < 2e-3 * want.abs().max(1.0),
                "{q}: logit[{id}] {} vs {want}",
                logits[id]
            );
        }
        let run = gen
            .generate(&prompt_ids, SamplingParams::default(), 40, false)
            .unwrap();
        let out: Vec<u32> = run.map(|e| e.unwrap().id).collect();
        assert_eq!(
            out,
            ids(&case["generated"]),
            "{q}: {:?}",
            gen.tokenizer.decode(&out, false)
        );
    }
}
