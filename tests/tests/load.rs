//! The one load path (qins_runtime::load), on both engines: the same checks, the same
//! EngineInfo, the same answers. The browser feeds the same Loader (runtime-wasm/tests/web.rs).

use std::path::Path;

use qins_runtime::codec::Codec;
use qins_runtime::engine::{block_on, Engine};
use qins_runtime::load::{open, Backend, LoadOptions};
use qins_tests::{convert_to, fixture};

fn opts(backend: Backend, max_context: usize) -> LoadOptions {
    let mut o = LoadOptions {
        backend,
        max_context,
        ..Default::default()
    };
    o.gpu.adapter = std::env::var("QINS_ADAPTER").ok();
    o
}

#[test]
fn both_engines_report_what_they_use_and_honour_the_context() {
    let dir = tempfile::tempdir().unwrap();
    let path = convert_to(&fixture("tiny-llama"), Codec::Lut8, dir.path());
    let archive_bytes = std::fs::metadata(&path).unwrap().len();
    let mut logits = Vec::new();
    for backend in [Backend::Cpu, Backend::Reference, Backend::Gpu] {
        let mut loaded = open(&path, &opts(backend, 24)).unwrap();
        let info = &loaded.info;
        let what = format!("{backend:?}");
        assert_eq!(info.architecture, "llama", "{what}");
        assert_eq!(info.archive_bytes, archive_bytes, "{what}");
        assert_eq!(info.codec, "lut8", "{what}");
        assert_eq!(info.context, 24, "{what}: --ctx caps every engine");
        assert!(info.params > 0 && info.load_ms > 0.0, "{what}");
        match backend {
            Backend::Cpu | Backend::Reference => {
                let name = if backend == Backend::Cpu {
                    "cpu"
                } else {
                    "reference"
                };
                assert_eq!(info.backend, name);
                assert_eq!(info.cpu_kernels.is_some(), backend == Backend::Cpu);
                assert!(info.adapter.is_none() && info.gpu_bytes == 0);
            }
            _ => {
                assert_eq!(info.backend, "gpu");
                assert_eq!(info.kv_cache, "f16");
                assert!(info.adapter.is_some() && info.gpu_bytes > 0);
            }
        }
        let engine = &mut loaded.generator.engine;
        let err = block_on(engine.extend(&[1; 25], false)).unwrap_err();
        assert_eq!(err.kind(), "context-full", "{what}: {err}");
        engine.reset();
        logits.push(block_on(engine.extend(&[1, 5, 9], false)).unwrap());
    }
    for (i, l) in logits.iter().enumerate().skip(1) {
        let worst = logits[0]
            .iter()
            .zip(l)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(
            worst < 1e-2,
            "engine {i} differs from the packed CPU one by {worst}"
        );
    }
}

/// A copy of the tiny Llama whose tokenizer names a token past the model's vocabulary.
fn checkpoint_with_extra_token(dir: &Path) -> std::path::PathBuf {
    let src = fixture("tiny-llama");
    let out = dir.join("tiny-llama-extra-token");
    std::fs::create_dir(&out).unwrap();
    for entry in std::fs::read_dir(&src).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), out.join(entry.file_name())).unwrap();
    }
    let path = out.join("tokenizer.json");
    let mut tok: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let vocab = tok["model"]["vocab"].as_object().unwrap().len();
    tok["added_tokens"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({
            "id": vocab, "content": "<|beyond|>", "single_word": false, "lstrip": false,
            "rstrip": false, "normalized": false, "special": true
        }));
    std::fs::write(&path, serde_json::to_vec(&tok).unwrap()).unwrap();
    out
}

/// Grouped 8-bit codes are replaced by their levels at load where this CPU's kernels read
/// levels (AVX2 without AVX-512 VBMI), every multiplied matrix's; none with `no_expand`, and
/// none where the kernels read the codes. Every way gives the reference engine's logits.
#[test]
fn the_cpu_engine_expands_8_bit_levels_unless_asked_not_to() {
    use qins_runtime::cpu::packed::Kernels;
    let dir = tempfile::tempdir().unwrap();
    let codec = Codec::from_name("lut8g", 32).unwrap();
    let path = convert_to(&fixture("tiny-llama"), codec, dir.path());
    let mut reference = open(&path, &opts(Backend::Reference, 64)).unwrap();
    let want = block_on(reference.generator.engine.extend(&[1, 5, 9], false)).unwrap();
    let expands = Kernels::best().rows8_expanded.is_some();
    for no_expand in [false, true] {
        let o = LoadOptions {
            no_expand,
            ..opts(Backend::Cpu, 64)
        };
        let mut loaded = open(&path, &o).unwrap();
        let info = &loaded.info;
        // Every weight but the norms' (two a layer and the final one, 64 wide in tiny-llama).
        let matrices = info.params - (2 * info.layers + 1) * 64;
        let bytes = if expands && !no_expand {
            2 * matrices
        } else {
            0
        };
        assert_eq!(info.expanded_bytes, bytes as u64, "no_expand: {no_expand}");
        let got = block_on(loaded.generator.engine.extend(&[1, 5, 9], false)).unwrap();
        let worst = (got.iter().zip(&want))
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(
            worst < 1e-2,
            "no_expand {no_expand}: {worst} from the reference"
        );
    }
}

#[test]
fn a_tokenizer_larger_than_the_vocabulary_is_refused_by_every_engine() {
    let dir = tempfile::tempdir().unwrap();
    let path = convert_to(
        &checkpoint_with_extra_token(dir.path()),
        Codec::Lut8,
        dir.path(),
    );
    for backend in [Backend::Cpu, Backend::Gpu] {
        let err = open(&path, &opts(backend, 64))
            .err()
            .unwrap_or_else(|| panic!("{backend:?} accepted the archive"));
        assert_eq!(err.kind(), "corrupt-archive", "{backend:?}: {err}");
        assert!(
            err.to_string()
                .contains("the tokenizer has 321 tokens but the model only 320"),
            "{backend:?}: {err}"
        );
    }
}

/// A reply that fills the context ends with stop_reason "length" on both engines; a prompt
/// that does not fit is an error before any work.
#[test]
fn a_reply_that_fills_the_context_ends_with_length() {
    use qins_runtime::chat::SamplingParams;
    let dir = tempfile::tempdir().unwrap();
    let path = convert_to(&fixture("tiny-llama"), Codec::Lut8, dir.path());
    for backend in [Backend::Cpu, Backend::Gpu] {
        let mut loaded = open(&path, &opts(backend, 20)).unwrap();
        let gen = &mut loaded.generator;
        let prompt: Vec<u32> = (1..=12).collect();
        let mut run = gen
            .generate(&prompt, SamplingParams::default(), 100, true)
            .unwrap();
        for ev in run.by_ref() {
            ev.unwrap();
        }
        let stats = run.stats();
        assert_eq!(stats.stop_reason, "length", "{backend:?}");
        // The last token comes from the logits of the context's last position.
        assert_eq!(stats.generated_tokens, 20 - 12 + 1, "{backend:?}");
        let long: Vec<u32> = (1..=21).collect();
        let mut run = gen
            .generate(&long, SamplingParams::default(), 5, true)
            .unwrap();
        let err = run.next().unwrap().unwrap_err();
        assert_eq!(err.kind(), "context-full", "{backend:?}");
    }
}

/// A request as the browser engine runs it (`Generator::start`): a stop string ends the reply
/// before it, on a piece boundary or inside a token's text, and is never sent; token ids
/// outside the vocabulary are refused on both engines.
#[test]
fn a_request_stops_before_its_stop_string_and_refuses_unknown_ids() {
    use qins_runtime::chat::{GenerateOptions, Prompt};
    let dir = tempfile::tempdir().unwrap();
    let path = convert_to(&fixture("tiny-llama"), Codec::Lut8, dir.path());
    for backend in [Backend::Cpu, Backend::Gpu] {
        let mut loaded = open(&path, &opts(backend, 64)).unwrap();
        let gen = &mut loaded.generator;
        let opts = |stop: Vec<String>| GenerateOptions {
            max_tokens: 24,
            ignore_eos: true,
            stop,
            ..Default::default()
        };
        let reply = |gen: &mut qins_runtime::chat::Generator<_>, stop| {
            let mut run = gen.start(Prompt::Ids(vec![1, 5, 9]), opts(stop)).unwrap();
            let mut text: String = run.by_ref().filter_map(|ev| ev.unwrap().text).collect();
            text += &run.held_text();
            (text, run.stats().stop_reason.clone())
        };
        let (full, reason) = reply(gen, vec![]);
        assert_eq!(reason, "max_tokens", "{backend:?}");
        let plain: String = gen
            .generate(&[1, 5, 9], Default::default(), 24, true)
            .unwrap()
            .filter_map(|ev| ev.unwrap().text)
            .collect();
        assert_eq!(plain, full, "{backend:?}: a reply without stop strings");
        let chars: Vec<char> = full.chars().collect();
        assert!(chars.len() > 6, "{backend:?}: {full:?}");
        // A stop string that starts mid-reply and spans characters the tokens emit separately.
        let stop: String = chars[chars.len() / 2..chars.len() / 2 + 3].iter().collect();
        let (cut, reason) = reply(gen, vec!["never appears".into(), stop.clone()]);
        assert_eq!(reason, "stop", "{backend:?}");
        assert_eq!(cut, full[..full.find(&stop).unwrap()], "{backend:?}");
        for bad in [vec![1, 320], vec![u32::MAX]] {
            let err = match gen.start(Prompt::Ids(bad), opts(vec![])) {
                Err(e) => e,
                Ok(mut run) => run.next().unwrap().unwrap_err(),
            };
            assert_eq!(err.kind(), "bad-request", "{backend:?}: {err}");
        }
    }
}

/// A device lost mid-generation (destroyed as a driver reset would) ends the reply with kind
/// "device-lost", not a panic or a hang; a fresh load works after.
#[test]
fn a_device_lost_mid_generation_is_reported_and_a_new_load_works() {
    use qins_runtime::chat::SamplingParams;
    let dir = tempfile::tempdir().unwrap();
    let path = convert_to(&fixture("tiny-llama"), Codec::Lut8, dir.path());
    let mut loaded = open(&path, &opts(Backend::Gpu, 64)).unwrap();
    let ctx = loaded.generator.engine.gpu().unwrap().model.ctx.clone();
    let mut run = loaded
        .generator
        .generate(&[1, 5, 9], SamplingParams::default(), 20, true)
        .unwrap();
    run.next()
        .unwrap()
        .expect("the first token, before the loss");
    ctx.destroy_for_test();
    let err = run
        .find_map(|ev| ev.err())
        .expect("the reply ends with an error");
    assert_eq!(err.kind(), "device-lost", "{err}");
    drop(loaded);
    let mut again = open(&path, &opts(Backend::Gpu, 64)).unwrap();
    let ids: Vec<u32> = again
        .generator
        .generate(&[1, 5, 9], SamplingParams::default(), 4, true)
        .unwrap()
        .map(|ev| ev.unwrap().id)
        .collect();
    assert_eq!(ids.len(), 4);
}
