//! The whole forward pass on the GPU against the CPU reference, token by token, on the tiny
//! Phi-3 (longrope, crossing original_max_position_embeddings) and Llama (GQA, tied), for a
//! float and a quantized codec, with the f32 KV cache (within 1e-3) and the default f16 one
//! (within [`F16_KV_TOLERANCE`]), and with f16 products in the LUT mat-vecs (opt-in, within
//! [`F16_COMPUTE_TOLERANCE`]); and greedy decoding of SmolLM2 lut8 equal on the GPU, the f32
//! reference and the packed CPU engine.

use std::path::{Path, PathBuf};

use qins_runtime::chat::{Generator, Message, Sampler, SamplingParams};
use qins_runtime::codec::Codec;
use qins_runtime::cpu::{CpuEngine, CpuModel};
use qins_runtime::engine::{block_on, Engine, Select};
use qins_runtime::gpu::{
    CacheConfig, Compute, DecodeAttention, GpuContext, GpuEngine, GpuModel, GpuOptions, KernelTime,
    Kernels, Phase, Prefill, BATCH,
};
use qins_runtime::load::{open, Backend, LoadOptions};
use qins_runtime::model::Weights;
use qins_tests::{
    convert_to, fixture, gpu, gpu_with, gpu_with_max_binding, ids, reference, smollm2_gguf,
};

/// Largest logit difference from the f32 CPU reference allowed with the f16 KV cache, which
/// rounds k and v to 11 significant bits: measured 1.2e-4 at most on these models (8× margin).
const F16_KV_TOLERANCE: f32 = 1e-3;

/// The same with f16 compute too (codebook values and activations rounded to f16 and
/// multiplied in f16 in decode, sums in f32): measured 5.3e-4 at most (6× margin).
const F16_COMPUTE_TOLERANCE: f32 = 3e-3;

fn engines(
    path: &std::path::Path,
    kv_f16: bool,
) -> (qins_runtime::format::Manifest, CpuEngine, GpuEngine) {
    engines_on(gpu(), path, kv_f16)
}

fn engines_on(
    ctx: GpuContext,
    path: &std::path::Path,
    kv_f16: bool,
) -> (qins_runtime::format::Manifest, CpuEngine, GpuEngine) {
    let (manifest, w) = Weights::read(std::fs::File::open(path).unwrap(), None).unwrap();
    let cpu = CpuEngine::new(CpuModel::new(manifest.config.clone(), w));
    let cache = CacheConfig::new(256).with_f16(kv_f16);
    let split = ctx.max_binding < 1 << 20;
    let (_, model) = GpuModel::load(ctx, std::fs::File::open(path).unwrap(), None, cache).unwrap();
    assert_eq!(model.kv_f16, kv_f16);
    assert_eq!(
        model.split_tensors > 0,
        split,
        "{} tensors split",
        model.split_tensors
    );
    (manifest, cpu, GpuEngine::new(model))
}

/// tiny-llama's long reference ids, and the model converted to lut8 in `dir`.
fn tiny_llama_lut8(dir: &Path) -> (Vec<u32>, PathBuf) {
    let name = "tiny-llama";
    let ids = ids(&reference(name)["logits"]["long"]["ids"]);
    (ids, convert_to(&fixture(name), Codec::Lut8, dir))
}

/// The GPU's candidate selection for greedy decoding.
fn greedy() -> Select {
    Select {
        k: 1,
        penalty: 1.0,
        ..Default::default()
    }
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[test]
fn tiny_models_match_the_cpu_token_by_token() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["tiny-phi3", "tiny-llama", "tiny-qwen2"] {
        let ids = ids(&reference(name)["logits"]["long"]["ids"]);
        for codec in [
            Codec::F32,
            Codec::Lut4 {
                group: 32,
                offset: true,
            },
        ] {
            let path = convert_to(&fixture(name), codec, dir.path());
            // Decode attention auto in the first (whole, then split from position 26: the
            // profile says both ran), whole in the second, split in the third;
            // the 20-token prompt through 64 × 64 tiles in the first, 64 × 32 in the second,
            // the mat-vec path's 8-row workgroups in the third; decode mat-vecs of 8 rows a
            // workgroup in the first and last, 4 in the other; the last in workgroups of 128
            // threads, the others by the tensors' rows.
            for (kv_f16, f16_compute, tol, attention, prefill, rows) in [
                (
                    false,
                    false,
                    1e-3,
                    DecodeAttention::Auto,
                    Prefill::Tiled64,
                    8,
                ),
                (
                    true,
                    false,
                    F16_KV_TOLERANCE,
                    DecodeAttention::Whole,
                    Prefill::Tiled,
                    4,
                ),
                (
                    true,
                    true,
                    F16_COMPUTE_TOLERANCE,
                    DecodeAttention::Split,
                    Prefill::Rows,
                    8,
                ),
            ] {
                let ctx = gpu_with(GpuOptions {
                    compute: if f16_compute {
                        Compute::F16
                    } else {
                        Compute::F32
                    },
                    decode_attention: attention,
                    split_attention_from: Some(26),
                    profile: attention == DecodeAttention::Auto,
                    prefill,
                    decode_rows: Some(rows),
                    prefill_rows: (prefill == Prefill::Rows).then_some(8),
                    // By rows (256 threads for these tiny tensors where subgroups allow), and
                    // 128 for every tensor.
                    decode_threads: f16_compute.then_some(128),
                    ..Default::default()
                });
                let (manifest, mut cpu, mut gpu) = engines_on(ctx, &path, kv_f16);
                // A decoded token: qkv (its norm fused), attention (bias, rotation and cache
                // append fused), o_proj, gate_up, down a layer; embedding, head, select's and,
                // greedy and unprofiled, the pick (f16 products leave the norms of LUT
                // mat-vecs unfused).
                if !f16_compute {
                    let layers = manifest.config.num_layers;
                    let pick = usize::from(attention != DecodeAttention::Auto);
                    let fixed = 2 + Kernels::SELECT_DISPATCHES as usize + pick;
                    let recorded = gpu.model.dispatches_per_token();
                    assert_eq!(recorded, 5 * layers + fixed, "{name}");
                }
                // A prompt, then single tokens past the longrope switch at 32 positions.
                let (prompt, rest) = ids.split_at(20);
                let what = format!(
                    "{name} {} kv_f16={kv_f16} f16_compute={f16_compute} {attention:?} {prefill:?} rows={rows}",
                    codec.name()
                );
                let mut worst = max_diff(
                    &block_on(gpu.extend(prompt, true)).unwrap(),
                    &block_on(cpu.extend(prompt, true)).unwrap(),
                );
                assert!(worst < tol, "{what} prompt: max |Δ| {worst}");
                for (i, t) in rest.iter().enumerate() {
                    let d = max_diff(
                        &block_on(gpu.extend(&[*t], false)).unwrap(),
                        &block_on(cpu.extend(&[*t], false)).unwrap(),
                    );
                    assert!(d < tol, "{what} position {}: max |Δ| {d}", 20 + i);
                    worst = worst.max(d);
                }
                eprintln!("{what}: max |Δ| {worst:.2e} over {} positions", ids.len());
                if let Some((kernels, _)) = gpu.model.profile(Phase::Decode) {
                    let ran = |k: &str| kernels.iter().any(|t| t.kernel == k);
                    assert!(
                        ran("attention") && ran("attention_split"),
                        "{what}: {kernels:?}"
                    );
                }
            }
        }
    }
}

#[test]
fn smollm2_lut8_greedy_is_identical_on_gpu_and_cpu() {
    let dir = tempfile::tempdir().unwrap();
    let path = convert_to(&smollm2_gguf(), Codec::Lut8, dir.path());
    let (manifest, cpu, gpu) = engines(&path, true);
    let mut on_cpu = Generator::new(cpu, &manifest).unwrap();
    let mut on_gpu = Generator::new(gpu, &manifest).unwrap();
    let messages = [
        Message::new("system", "Answer briefly."),
        Message::new("user", "Capital of France?"),
    ];
    let prompt = on_cpu.chat_prompt_ids(&messages).unwrap();
    let a: Vec<u32> = on_cpu
        .generate(&prompt, SamplingParams::default(), 8, false)
        .unwrap()
        .map(|e| e.unwrap().id)
        .collect();
    let b: Vec<u32> = on_gpu
        .generate(&prompt, SamplingParams::default(), 8, false)
        .unwrap()
        .map(|e| e.unwrap().id)
        .collect();
    assert!(!a.is_empty());
    assert_eq!(
        a,
        b,
        "{:?} vs {:?}",
        on_cpu.tokenizer.decode(&a, false),
        on_gpu.tokenizer.decode(&b, false)
    );
    // The packed CPU engine (the archive's codes, SIMD kernels, tiled prefill) too.
    let opts = LoadOptions {
        backend: Backend::Cpu,
        ..Default::default()
    };
    let mut packed = open(&path, &opts).unwrap().generator;
    let c: Vec<u32> = packed
        .generate(&prompt, SamplingParams::default(), 8, false)
        .unwrap()
        .map(|e| e.unwrap().id)
        .collect();
    assert_eq!(c, b, "packed CPU: {:?}", packed.tokenizer.decode(&c, false));
    // Sampled with top-k and a repetition penalty: the GPU chooses the candidates
    // (select.wgsl), the CPU engine takes them from its whole row; same seed, same tokens.
    let sampled = SamplingParams {
        temperature: 0.8,
        top_k: 40,
        top_p: 0.95,
        repetition_penalty: 1.3,
        seed: 11,
        ..Default::default()
    };
    fn run<E: Engine>(g: &mut Generator<E>, prompt: &[u32], p: &SamplingParams) -> Vec<u32> {
        g.engine.reset();
        g.generate(prompt, p.clone(), 12, true)
            .unwrap()
            .map(|e| e.unwrap().id)
            .collect()
    }
    let (a, b) = (
        run(&mut on_cpu, &prompt, &sampled),
        run(&mut on_gpu, &prompt, &sampled),
    );
    assert_eq!(a.len(), 12);
    assert_eq!(
        a,
        b,
        "sampled: {:?} vs {:?}",
        on_cpu.tokenizer.decode(&a, false),
        on_gpu.tokenizer.decode(&b, false)
    );
    // The GPU's greedy choice (select.wgsl, k = 1) agrees with the logits it produced.
    on_gpu.engine.reset();
    let logits = block_on(on_gpu.engine.extend(&prompt, false)).unwrap();
    let best = (0..logits.len()).fold(0, |b, i| if logits[i] > logits[b] { i } else { b });
    let greedy = greedy();
    let top = block_on(on_gpu.engine.model.select(&greedy))
        .unwrap()
        .unwrap();
    assert_eq!(top, vec![(best as u32, logits[best])]);
}

/// A chat turn cuts the sequence back to the prefix it shares with the previous one and
/// extends it: the GPU's cache needs no work for that, and the logits must equal a fresh
/// run's — also when the cut-back sequence then crosses Phi-3's longrope boundary.
#[test]
fn gpu_prefix_reuse_matches_a_fresh_run() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["tiny-phi3", "tiny-llama", "tiny-qwen2"] {
        let ids = ids(&reference(name)["logits"]["long"]["ids"]);
        let path = convert_to(&fixture(name), Codec::Lut8, dir.path());
        let (_, mut cpu, mut gpu) = engines(&path, true);
        let (first, keep) = (ids.len() / 2, ids.len() / 3);
        block_on(gpu.extend(&ids[..first], false)).unwrap();
        gpu.truncate(keep);
        assert_eq!(gpu.tokens(), &ids[..keep]);
        let reused = block_on(gpu.extend(&ids[keep..], false)).unwrap();
        let fresh = block_on(cpu.extend(&ids, false)).unwrap();
        let d = max_diff(&reused, &fresh);
        assert!(
            d < F16_KV_TOLERANCE,
            "{name}: max |Δ| {d} after reusing {keep} positions"
        );
    }
}

/// Decoded tokens alternating between logits read back and candidates chosen on the GPU, at
/// consecutive positions: each step runs its own dispatches even though the engine recorded the
/// next position's step ahead as the previous one asked (candidates left stale, or logits not
/// computed, would differ from the CPU's).
#[test]
fn decode_alternating_logits_and_candidates_matches_the_cpu() {
    let dir = tempfile::tempdir().unwrap();
    let (ids, path) = tiny_llama_lut8(dir.path());
    let (_, mut cpu, mut gpu) = engines(&path, false);
    let greedy = greedy();
    block_on(gpu.extend(&ids[..10], false)).unwrap();
    block_on(cpu.extend(&ids[..10], false)).unwrap();
    for (i, &t) in ids.iter().enumerate().take(22).skip(10) {
        let want = block_on(cpu.extend(&[t], false)).unwrap();
        // Two logits steps, then two candidates steps, and so on.
        if i % 4 < 2 {
            let got = block_on(gpu.extend(&[t], false)).unwrap();
            let d = max_diff(&got, &want);
            assert!(d < 1e-3, "logits at {i}: max |Δ| {d}");
        } else {
            let (id, value) = block_on(gpu.extend_select(&[t], &greedy)).unwrap()[0];
            let best = want.iter().copied().fold(f32::MIN, f32::max);
            let at = want[id as usize];
            assert!(
                (value - at).abs() < 1e-3 && best - at < 1e-3,
                "candidate at {i}: {id} ({value}, cpu {at}, cpu max {best})"
            );
        }
    }
}

/// `steps` tokens after `prompt` as a `Generation` samples them with `params`: the sampler's
/// selection, the engine's candidates, the sampler's choice.
fn sampled_tokens<E: Engine>(
    e: &mut E,
    prompt: &[u32],
    steps: usize,
    params: &SamplingParams,
) -> Vec<u32> {
    let mut sampler = Sampler::new(params.clone());
    let mut history = prompt.to_vec();
    let mut run = prompt.to_vec();
    for _ in 0..steps {
        let sel = sampler.selection(&history).expect("top-k or greedy");
        let id = sampler.sample_from(block_on(e.extend_select(&run, &sel)).unwrap());
        history.push(id);
        run = vec![id];
    }
    history.split_off(prompt.len())
}

/// Decoding queues each next step before the host reads the last one back, its token chosen
/// on the GPU (pick.wgsl): greedy, with and without a repetition penalty (the pick marks its
/// token seen on the GPU), and drawn with top-k, top-p, min-p and a penalty (the GPU draws
/// with the sampler's next uniform numbers, the host's draw decides). The tokens are the
/// CPU's and those of an engine that waits; every step after the first was the queued one
/// (the GPU drew as the CPU did); and a sequence cut back and extended with other tokens
/// afterwards gives the CPU's logits (what the last, unused queued step wrote is overwritten
/// or never read).
#[test]
fn decoding_queued_ahead_matches_the_cpu_and_leaves_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let (ids, path) = tiny_llama_lut8(dir.path());
    let steps = 10;
    let greedy = |penalty| SamplingParams {
        repetition_penalty: penalty,
        ..Default::default()
    };
    let drawn = SamplingParams {
        temperature: 0.9,
        top_k: 40,
        top_p: 0.95,
        min_p: 0.02,
        repetition_penalty: 1.1,
        seed: 5,
    };
    // A penalty strong enough to change each choice (tiny-llama repeats one token without).
    for params in [greedy(1.0), greedy(20.0), drawn] {
        let (_, mut cpu, mut gpu) = engines(&path, false);
        let waits = gpu_with(GpuOptions {
            no_speculation: true,
            ..Default::default()
        });
        let (_, _, mut waiting) = engines_on(waits, &path, false);
        let prompt = &ids[..7];
        let want = sampled_tokens(&mut cpu, prompt, steps, &params);
        let got = sampled_tokens(&mut gpu, prompt, steps, &params);
        let waited = sampled_tokens(&mut waiting, prompt, steps, &params);
        assert_eq!(got, want, "{params:?}: queued against the CPU");
        assert_eq!(waited, want, "{params:?}: waiting against the CPU");
        assert_eq!(gpu.model.queued_steps(), steps as u64 - 1, "{params:?}");
        assert_eq!(waiting.model.queued_steps(), 0);
        // Back to 2 decoded tokens, then other tokens, every position's logits.
        let keep = prompt.len() + 2;
        gpu.truncate(keep);
        cpu.truncate(keep);
        let more = &ids[20..26];
        let d = max_diff(
            &block_on(gpu.extend(more, true)).unwrap(),
            &block_on(cpu.extend(more, true)).unwrap(),
        );
        assert!(d < 1e-3, "{params:?}: max |Δ| {d} after the cut");
        // And again from there: a new chain of queued steps.
        let again = sampled_tokens(&mut gpu, &[ids[26]], 4, &params);
        assert_eq!(again, sampled_tokens(&mut cpu, &[ids[26]], 4, &params));
    }
}

/// Every weight tensor split by rows across 4 KiB bindings (the embedding/output head into 5
/// to 20 parts), as on an adapter whose maxStorageBufferBindingSize is smaller than the
/// tensors, and work buffers that hold only a few tokens (the batches shrink to fit, so the
/// prompt runs as several): the logits still match the CPU reference.
#[test]
fn tensors_split_across_bindings_match_the_cpu() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["tiny-phi3", "tiny-llama", "tiny-qwen2"] {
        let ids = ids(&reference(name)["logits"]["long"]["ids"]);
        for codec in [Codec::F32, Codec::Lut8] {
            let path = convert_to(&fixture(name), codec, dir.path());
            let ctx = gpu_with_max_binding(Some(4096));
            let (_, mut cpu, mut gpu) = engines_on(ctx, &path, false);
            let batch = gpu.model.batch_tokens;
            assert!(
                (1..BATCH).contains(&batch) && ids.len() > batch,
                "{name}: batches of {batch} for {} tokens",
                ids.len()
            );
            let d = max_diff(
                &block_on(gpu.extend(&ids, true)).unwrap(),
                &block_on(cpu.extend(&ids, true)).unwrap(),
            );
            assert!(d < 1e-3, "{name} {}: max |Δ| {d}", codec.name());
        }
    }
}

/// `prefill_batch` sets the prompt's batch size (here 7 tokens, so the prompt runs as several
/// batches with a partial last one) and the logits still match the CPU; sizes outside 1 to
/// 1024 are refused before a device is opened, as are decode and prefill rows other than 4 and 8
/// and decode threads other than 64, 128 and 256.
#[test]
fn a_chosen_prefill_batch_is_used_and_bad_ones_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (ids, path) = tiny_llama_lut8(dir.path());
    let ctx = gpu_with(GpuOptions {
        prefill_batch: Some(7),
        ..Default::default()
    });
    let (_, mut cpu, mut gpu) = engines_on(ctx, &path, false);
    assert_eq!(gpu.model.batch_tokens, 7);
    assert!(
        !ids.len().is_multiple_of(7) && ids.len() > 14,
        "{} ids",
        ids.len()
    );
    let d = max_diff(
        &block_on(gpu.extend(&ids, true)).unwrap(),
        &block_on(cpu.extend(&ids, true)).unwrap(),
    );
    assert!(d < 1e-3, "max |Δ| {d}");
    let batches = [0, 1025].map(|bad| GpuOptions {
        prefill_batch: Some(bad),
        ..Default::default()
    });
    let rows = [0, 5, 16].map(|bad| GpuOptions {
        decode_rows: Some(bad),
        ..Default::default()
    });
    let prefill_rows = [0, 5, 16].map(|bad| GpuOptions {
        prefill_rows: Some(bad),
        ..Default::default()
    });
    let threads = [0, 32, 1024].map(|bad| GpuOptions {
        decode_threads: Some(bad),
        ..Default::default()
    });
    for opts in batches
        .iter()
        .chain(&rows)
        .chain(&prefill_rows)
        .chain(&threads)
    {
        let err = block_on(GpuContext::new(opts)).err().expect("refused");
        assert_eq!(err.kind(), "bad-request", "{opts:?}: {err}");
    }
}

/// `profile` times each dispatch of a decoded token (lavapipe has timestamps inside passes):
/// every dispatch the token records is counted under its kernel or tensor role, the fused
/// norms and SiLU·mul record none, prompt batches are not timed, and the chosen tokens are
/// the unprofiled engine's.
#[test]
fn a_profiled_decode_times_every_dispatch_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (ids, path) = tiny_llama_lut8(dir.path());
    let ctx = gpu_with(GpuOptions {
        profile: true,
        ..Default::default()
    });
    assert!(ctx.profile, "the adapter has no timestamps inside passes");
    let (manifest, _, mut profiled) = engines_on(ctx, &path, false);
    let (_, _, mut plain) = engines(&path, false);
    assert!(plain.model.profile(Phase::Decode).is_none());
    let greedy = greedy();
    let (mut a, mut b) = (ids[..5].to_vec(), ids[..5].to_vec());
    for _ in 0..3 {
        let next =
            |e: &mut GpuEngine, run: &[u32]| block_on(e.extend_select(run, &greedy)).unwrap()[0].0;
        let (ra, rb) = if profiled.len() == 0 {
            (a.clone(), b.clone())
        } else {
            (vec![*a.last().unwrap()], vec![*b.last().unwrap()])
        };
        a.push(next(&mut profiled, &ra));
        b.push(next(&mut plain, &rb));
    }
    assert_eq!(a, b);
    let layers = manifest.config.num_layers as f64;
    let per_token = |kernels: &[KernelTime], k: &str| {
        kernels
            .iter()
            .find(|t| t.kernel == k)
            .map_or(0.0, |t| t.dispatches_per_token)
    };
    // The prompt, one batch of 5 tokens: a dispatch a batch is a fifth of one a prompt token;
    // the norms, the rotation and SiLU·mul run as dispatches of their own there.
    let (prompt, tokens) = profiled.model.profile(Phase::Prefill).unwrap();
    assert_eq!(tokens, 5);
    for k in ["rope_store", "silu_mul", "attention", "matvec attn_qkv"] {
        let batches = per_token(&prompt, k) * 5.0;
        assert!((batches - layers).abs() < 1e-9, "{k}: {prompt:?}");
    }
    let (kernels, tokens) = profiled.model.profile(Phase::Decode).unwrap();
    // The two one-token batches after it.
    assert_eq!(tokens, 2);
    let count = |k: &str| per_token(&kernels, k);
    // Auto decode attention at a short context: the whole kernel, no split one; the bias,
    // rotation and cache append inside it (no add_bias, no rope_store).
    for k in ["matvec attn_qkv", "matvec ffn_down", "attention"] {
        assert_eq!(count(k), layers, "{k}: {kernels:?}");
    }
    assert_eq!(count("embed"), 1.0, "{kernels:?}");
    assert_eq!(
        count("select"),
        Kernels::SELECT_DISPATCHES as f64,
        "{kernels:?}"
    );
    assert_eq!(
        count("rmsnorm")
            + count("silu_mul")
            + count("attention_split")
            + count("rope_store")
            + count("add_bias"),
        0.0,
        "{kernels:?}"
    );
    let all: f64 = kernels.iter().map(|t| t.dispatches_per_token).sum();
    assert_eq!(all as usize, profiled.model.dispatches_per_token());
    let share: f64 = kernels.iter().map(|t| t.share).sum();
    assert!((share - 1.0).abs() < 1e-9, "shares add up to {share}");
    assert!(kernels.iter().map(|t| t.us_per_token).sum::<f64>() > 0.0);
}
