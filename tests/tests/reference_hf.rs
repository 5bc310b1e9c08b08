//! The CPU engines (the f32 reference and the packed one) against Hugging Face transformers on
//! the tiny checkpoints: logits
//! at every position within 1e-4 for prompts shorter and longer than Phi-3's
//! original_max_position_embeddings (2e-3 with the packed engine's default f16 KV cache), and
//! the greedy generation that crosses it; Llama (GQA, tied) and Qwen2 (Q/K/V biases, untied
//! head) the same way.

use qins_runtime::chat::{Generator, SamplingParams};
use qins_runtime::codec::Codec;
use qins_runtime::cpu::{CpuEngine, CpuModel};
use qins_runtime::engine::{block_on, Engine};
use qins_runtime::format::Manifest;
use qins_runtime::load::{open, Backend, KvPrecision, LoadOptions};
use qins_runtime::model::Weights;
use qins_tests::{convert_to, fixture, ids, reference};

fn check(name: &str) {
    let dir = tempfile::tempdir().unwrap();
    let path = convert_to(&fixture(name), Codec::F32, dir.path());
    let (manifest, weights) = Weights::read(std::fs::File::open(&path).unwrap(), None).unwrap();
    let engine = CpuEngine::new(CpuModel::new(manifest.config.clone(), weights));
    check_engine(name, "reference", &manifest, engine, 1e-4);
    // The packed CPU engine on the same archive: its f32 kernels, its tiled prefill; with an
    // f32 cache as exact as the reference, with its default f16 one within f16's rounding.
    for (kv_cache, tol) in [(KvPrecision::F32, 1e-4), (KvPrecision::F16, 2e-3)] {
        let opts = LoadOptions {
            backend: Backend::Cpu,
            max_context: manifest.config.max_position_embeddings,
            kv_cache,
            ..Default::default()
        };
        let loaded = open(&path, &opts).unwrap();
        assert_eq!(loaded.info.backend, "cpu");
        let what = format!("packed, {kv_cache:?} cache");
        check_engine(name, &what, &manifest, loaded.generator.engine, tol);
    }
}

fn check_engine<E: Engine>(name: &str, what: &str, manifest: &Manifest, mut engine: E, tol: f32) {
    let reference = reference(name);
    let vocab = manifest.config.vocab_size;
    for case in ["short", "long"] {
        let r = &reference["logits"][case];
        let tokens = ids(&r["ids"]);
        engine.reset();
        let got = block_on(engine.extend(&tokens, true)).unwrap();
        let mut worst = 0f32;
        for (p, row) in r["all_positions"].as_array().unwrap().iter().enumerate() {
            for (i, v) in row.as_array().unwrap().iter().enumerate() {
                worst = worst.max((got[p * vocab + i] - v.as_f64().unwrap() as f32).abs());
            }
        }
        assert!(
            worst < tol,
            "{name} [{what}] {case} ({} tokens): max |Δlogit| {worst}",
            tokens.len()
        );
    }
    // Step by step as generation runs, logits against transformers' own at every step (the
    // Phi-3 prompt ends 4 tokens short of original_max_position_embeddings, so its cache is
    // re-encoded with the long factors mid-generation).
    let g = &reference["greedy"];
    let generated = ids(&g["generated"]);
    engine.reset();
    let mut logits = block_on(engine.extend(&ids(&g["prompt"]), false)).unwrap();
    for (step, want) in g["step_logits"].as_array().unwrap().iter().enumerate() {
        let worst = want
            .as_array()
            .unwrap()
            .iter()
            .zip(&logits)
            .map(|(w, g)| (w.as_f64().unwrap() as f32 - g).abs())
            .fold(0f32, f32::max);
        assert!(
            worst < tol,
            "{name} [{what}] generation step {step}: max |Δlogit| {worst}"
        );
        logits = block_on(engine.extend(&[generated[step]], false)).unwrap();
    }
    let mut gen = Generator::new(engine, manifest).unwrap();
    let out: Vec<u32> = gen
        .generate(&ids(&g["prompt"]), SamplingParams::default(), 12, true)
        .unwrap()
        .map(|e| e.unwrap().id)
        .collect();
    assert_eq!(
        out,
        ids(&g["generated"]),
        "{name} [{what}]: greedy continuation"
    );
}

#[test]
fn tiny_phi3_longrope_matches_transformers() {
    check("tiny-phi3");
}

#[test]
fn tiny_llama_gqa_tied_matches_transformers() {
    check("tiny-llama");
}

#[test]
fn tiny_qwen2_biases_untied_matches_transformers() {
    check("tiny-qwen2");
}

/// A chat turn keeps the cache of the prefix it shares with the previous one: cutting the
/// sequence back and extending it must give transformers' logits, also when the extension
/// crosses Phi-3's longrope boundary (the kept prefix was encoded with the short factors).
fn prefix_reuse(name: &str) {
    let dir = tempfile::tempdir().unwrap();
    let path = convert_to(&fixture(name), Codec::F32, dir.path());
    let (manifest, weights) = Weights::read(std::fs::File::open(&path).unwrap(), None).unwrap();
    let vocab = manifest.config.vocab_size;
    let r = &reference(name)["logits"]["long"];
    let tokens = ids(&r["ids"]);
    let want: Vec<f32> = r["all_positions"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap() as f32)
        .collect();
    let mut engine = CpuEngine::new(CpuModel::new(manifest.config.clone(), weights));
    let (first, keep) = (tokens.len() / 2, tokens.len() / 3);
    block_on(engine.extend(&tokens[..first], false)).unwrap();
    engine.truncate(keep);
    assert_eq!(engine.tokens(), &tokens[..keep]);
    let got = block_on(engine.extend(&tokens[keep..], false)).unwrap();
    let worst = got
        .iter()
        .zip(&want)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert_eq!(got.len(), vocab);
    assert!(
        worst < 1e-4,
        "{name}: max |Δlogit| {worst} after reusing {keep} positions"
    );
}

#[test]
fn tiny_llama_prefix_reuse_matches_transformers() {
    prefix_reuse("tiny-llama");
}

#[test]
fn tiny_phi3_prefix_reuse_across_the_longrope_boundary_matches_transformers() {
    prefix_reuse("tiny-phi3");
}

/// With prefix reuse on, a second turn prefills only its new tokens and still generates what
/// a fresh engine generates.
#[test]
fn generator_reuses_the_previous_turn() {
    let dir = tempfile::tempdir().unwrap();
    let path = convert_to(&fixture("tiny-llama"), Codec::F32, dir.path());
    let open = || {
        let (manifest, weights) = Weights::read(std::fs::File::open(&path).unwrap(), None).unwrap();
        let engine = CpuEngine::new(CpuModel::new(manifest.config.clone(), weights));
        Generator::new(engine, &manifest).unwrap()
    };
    let (mut chat, mut fresh) = (open(), open());
    chat.set_prefix_reuse(true);
    let first: Vec<u32> = (3..40).collect();
    let mut run = chat
        .generate(&first, SamplingParams::default(), 6, true)
        .unwrap();
    for ev in run.by_ref() {
        ev.unwrap();
    }
    let mut second = first.clone();
    second.extend(run.generated());
    second.extend([7, 8, 9]);
    let mut run = chat
        .generate(&second, SamplingParams::default(), 6, true)
        .unwrap();
    let reused: Vec<u32> = run.by_ref().map(|e| e.unwrap().id).collect();
    assert!(
        run.stats().cached_tokens >= first.len(),
        "{:?}",
        run.stats()
    );
    let mut run = fresh
        .generate(&second, SamplingParams::default(), 6, true)
        .unwrap();
    let fresh_ids: Vec<u32> = run.by_ref().map(|e| e.unwrap().id).collect();
    assert_eq!(run.stats().cached_tokens, 0);
    assert_eq!(reused, fresh_ids);
}
