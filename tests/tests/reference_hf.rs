//! The CPU reference engine against Hugging Face transformers on the tiny checkpoints: logits
//! at every position within 1e-4 for prompts shorter and longer than Phi-3's
//! original_max_position_embeddings, and the greedy generation that crosses it.

use qins_runtime::chat::{block_on, Engine, Generator, SamplingParams};
use qins_runtime::codec::Codec;
use qins_runtime::cpu::{CpuEngine, CpuModel};
use qins_runtime::model::Weights;
use qins_tests::{convert_to, fixture, ids, reference};

fn check(name: &str) {
    let dir = tempfile::tempdir().unwrap();
    let path = convert_to(&fixture(name), Codec::F32, dir.path());
    let (manifest, weights) = Weights::read(std::fs::File::open(&path).unwrap(), None).unwrap();
    let reference = reference(name);
    let mut engine = CpuEngine::new(CpuModel::new(manifest.config.clone(), weights));
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
            worst < 1e-4,
            "{name} {case} ({} tokens): max |Δlogit| {worst}",
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
            worst < 1e-4,
            "{name} generation step {step}: max |Δlogit| {worst}"
        );
        logits = block_on(engine.extend(&[generated[step]], false)).unwrap();
    }
    let mut gen = Generator::new(engine, &manifest).unwrap();
    let out: Vec<u32> = gen
        .generate(&ids(&g["prompt"]), SamplingParams::default(), 12, true)
        .unwrap()
        .map(|e| e.unwrap().id)
        .collect();
    assert_eq!(out, ids(&g["generated"]), "{name}: greedy continuation");
}

#[test]
fn tiny_phi3_longrope_matches_transformers() {
    check("tiny-phi3");
}

#[test]
fn tiny_llama_gqa_tied_matches_transformers() {
    check("tiny-llama");
}
