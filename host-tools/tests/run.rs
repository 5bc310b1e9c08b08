//! qins-run and qins-eval as a user runs them.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn bin(name: &str) -> Command {
    let exe = match name {
        "convert" => env!("CARGO_BIN_EXE_qins-convert"),
        "run" => env!("CARGO_BIN_EXE_qins-run"),
        "eval" => env!("CARGO_BIN_EXE_qins-eval"),
        _ => unreachable!(),
    };
    let mut c = Command::new(exe);
    c.env_remove("RUST_BACKTRACE");
    c
}

fn ok_json(out: Output) -> Value {
    assert!(
        out.status.success(),
        "failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
}

fn convert(input: &Path, out: &Path, codec: &str) {
    let o = bin("convert")
        .args([
            input.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
            "--codec",
            codec,
            "--json",
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

/// `qins-run MODEL --chat ARGS…` with `input` typed at its prompt; its output once it ends.
fn chat_session(model: &Path, args: &[&str], input: &[u8]) -> Output {
    let mut child = bin("run")
        .arg(model)
        .arg("--chat")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    child.wait_with_output().unwrap()
}

fn ids(v: &Value) -> Vec<u64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap())
        .collect()
}

#[test]
fn logits_and_tokens_through_the_cli_match_transformers() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("tiny.qins");
    convert(&root().join("tests/fixtures/tiny-llama"), &model, "f32");
    let m = model.to_str().unwrap();
    let reference: Value = serde_json::from_slice(
        &std::fs::read(root().join("tests/fixtures/tiny-llama/reference.json")).unwrap(),
    )
    .unwrap();
    let short = &reference["logits"]["short"];
    let list: Vec<String> = ids(&short["ids"]).iter().map(u64::to_string).collect();
    // An f32 cache: the f16 one (the default) rounds keys and values, by more than this
    // comparison with transformers allows.
    let all = ok_json(
        bin("run")
            .args([m, "--kv-cache", "f32", "--logits-for", &list.join(",")])
            .arg("--all-positions")
            .output()
            .unwrap(),
    );
    let want = short["all_positions"].as_array().unwrap();
    let got = all["logits"].as_array().unwrap();
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(want) {
        for (a, b) in g.as_array().unwrap().iter().zip(w.as_array().unwrap()) {
            assert!((a.as_f64().unwrap() - b.as_f64().unwrap()).abs() < 1e-4);
        }
    }
    let last = ok_json(
        bin("run")
            .args([m, "--kv-cache", "f32", "--logits-for", &list.join(",")])
            .output()
            .unwrap(),
    );
    // The last-position path runs the head as a one-row mat-vec, the all-positions path as a
    // matrix product: the same logits up to float summation order.
    let (a, b) = (
        last["logits"].as_array().unwrap(),
        got.last().unwrap().as_array().unwrap(),
    );
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(b) {
        assert!((x.as_f64().unwrap() - y.as_f64().unwrap()).abs() < 1e-5);
    }
    let tok = ok_json(
        bin("run")
            .args([m, "--tokenize", "<|im_start|>user"])
            .output()
            .unwrap(),
    );
    assert_eq!(ids(&tok["ids"])[0], 1, "special token text is one id");
}

#[test]
fn smollm2_answers_like_llama_cpp_and_benches() {
    let dir = tempfile::tempdir().unwrap();
    let gguf = std::env::var_os("QINS_SMOLLM2_GGUF")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("models/SmolLM2-135M-Instruct.Q4_1.gguf"));
    let model = dir.path().join("smollm2.f32.qins");
    convert(&gguf, &model, "f32");
    let m = model.to_str().unwrap();
    let out = ok_json(
        bin("run")
            .args([
                m,
                "--prompt",
                "What is the capital of France?",
                "--temperature",
                "0",
                "--repeat-penalty",
                "1",
                "--json",
            ])
            .output()
            .unwrap(),
    );
    let reference: Value = serde_json::from_slice(
        &std::fs::read(root().join("tests/fixtures/smollm2-llamacpp.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(ids(&out["ids"]), ids(&reference["greedy"][0]["generated"]));
    assert!(
        out["text"].as_str().unwrap().contains("Paris"),
        "{}",
        out["text"]
    );
    assert_eq!(out["stats"]["stop_reason"], "eos");
    let bench = ok_json(
        bin("run")
            .args([m, "--bench", "--max-tokens", "8"])
            .output()
            .unwrap(),
    );
    for key in ["load_s", "ttft_ms", "prefill_tok_s", "decode_tok_s"] {
        assert!(bench[key].as_f64().unwrap() > 0.0, "{key}: {bench}");
    }
    assert_eq!(bench["generated_tokens"], 8);
    assert_eq!(
        bench["compute"],
        Value::Null,
        "no GPU fields on the CPU: {bench}"
    );
    // On the GPU the JSON says what the engine used: f16 products only with shader-f16.
    let gpu = ok_json(
        bin("run")
            .args([m, "--backend", "gpu", "--bench", "--max-tokens", "2"])
            .args(["--compute", "f16", "--ctx", "256"])
            .output()
            .unwrap(),
    );
    let adapter = gpu["adapter"].as_str().unwrap();
    let f16 = adapter.contains("shader-f16 available");
    assert_eq!(gpu["compute"], if f16 { "f16" } else { "f32" }, "{adapter}");
    assert_eq!(gpu["kv_cache"], "f16");
    assert!(gpu["gpu_bytes"].as_u64().unwrap() > 0);

    // The load's stage table: every stage counted once, adding up to the total.
    let stages = ok_json(
        bin("run")
            .args([m, "--bench-load", "--load-runs", "2", "--backend", "cpu"])
            .args(["--ctx", "256", "--json"])
            .output()
            .unwrap(),
    );
    assert_eq!(stages["loads"].as_array().unwrap().len(), 2);
    for load in stages["loads"].as_array().unwrap() {
        let st = &load["stages"];
        let part = |k: &str| st[k].as_f64().unwrap_or_else(|| panic!("{k}: {st}"));
        let parts = [
            "device_ms",
            "read_ms",
            "checksum_ms",
            "decompress_ms",
            "upload_ms",
        ]
        .into_iter()
        .chain(["other_ms", "build_ms"]);
        let sum: f64 = parts
            .map(|k| {
                assert!(part(k) >= 0.0, "{k}: {st}");
                part(k)
            })
            .sum();
        let total = part("total_ms");
        assert!(
            (sum - total).abs() <= 0.02 * total + 1.0,
            "{sum} vs {total}: {st}"
        );
        assert!(part("checksum_ms") > 0.0 && part("upload_ms") > 0.0, "{st}");
        assert_eq!(
            load["archive_bytes"],
            std::fs::metadata(&model).unwrap().len()
        );
    }
    assert_eq!(stages["prompt_tokens"], 100);
    assert!(stages["ttft_ms"].as_f64().unwrap() > 0.0);
}

#[test]
fn interactive_chat_keeps_history_and_resets() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("tiny.qins");
    convert(&root().join("tests/fixtures/tiny-llama"), &model, "lut8");
    let out = chat_session(
        &model,
        &[
            "--max-tokens",
            "5",
            "--temperature",
            "0",
            "--ignore-eos",
            "-v",
        ],
        b"hello there\nand again\n/reset\nhello there\n",
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert_eq!(err.matches("[5 tokens").count(), 3, "three replies: {err}");
    assert!(err.contains("(conversation cleared)"));
    // The first and the post-reset reply equal a one-shot reply to the same message; the one
    // in between answered with the history in its prompt.
    let one = ok_json(
        bin("run")
            .args([
                model.to_str().unwrap(),
                "--prompt",
                "hello there",
                "--max-tokens",
                "5",
                "--temperature",
                "0",
                "--ignore-eos",
                "--json",
            ])
            .output()
            .unwrap(),
    );
    let first = format!("{}\n", one["text"].as_str().unwrap());
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        stdout.starts_with(&first) && stdout.ends_with(&first),
        "{stdout:?} vs {first:?}"
    );
    assert!(stdout.len() > 2 * first.len());
}

#[test]
fn eval_scores_perplexity_and_divergence() {
    let dir = tempfile::tempdir().unwrap();
    let (f32m, lut4m) = (dir.path().join("f32.qins"), dir.path().join("lut4.qins"));
    convert(&root().join("tests/fixtures/tiny-llama"), &f32m, "f32");
    convert(&root().join("tests/fixtures/tiny-llama"), &lut4m, "lut4");
    let text = root().join("data/corpus/dev.txt");
    let text = text.to_str().unwrap();
    let eval = |model: &Path, reference: &Path| {
        ok_json(
            bin("eval")
                .args([
                    model.to_str().unwrap(),
                    "--text",
                    text,
                    "--ctx",
                    "64",
                    "--max-chunks",
                    "3",
                    "--ref",
                    reference.to_str().unwrap(),
                    "--json",
                ])
                .output()
                .unwrap(),
        )
    };
    let same = eval(&f32m, &f32m);
    assert_eq!(same["tokens"], 3 * 31);
    assert!(same["kld_mean"].as_f64().unwrap().abs() < 1e-9);
    assert_eq!(same["top1_agree"], 1.0);
    let ppl = same["ppl"].as_f64().unwrap();
    // A random model is close to uniform over its 320 tokens.
    assert!(ppl > 100.0 && ppl < 1000.0, "{ppl}");
    let q = eval(&lut4m, &f32m);
    assert!(q["kld_mean"].as_f64().unwrap() > 0.0);
    assert_ne!(q["ppl"], same["ppl"]);
}

#[test]
fn bad_archives_and_requests_fail_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.qins");
    std::fs::write(&bad, b"QINSARC\x1a\x01\x00\x00\x00garbage").unwrap();
    let out = bin("run")
        .args([bad.to_str().unwrap(), "--prompt", "hi"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("truncated") && !err.contains("panicked"),
        "{err}"
    );
    let model = dir.path().join("tiny.qins");
    convert(&root().join("tests/fixtures/tiny-llama"), &model, "lut8");
    let out = bin("run")
        .args([model.to_str().unwrap(), "--logits-for", "99999"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("outside the vocabulary"),
        "{err}"
    );
    let many = vec!["5"; 300].join(",");
    let out = bin("run")
        .args([
            model.to_str().unwrap(),
            "--backend",
            "cpu",
            "--logits-for",
            &many,
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("context full: 300 tokens exceed the 256"),
        "{err}"
    );
    let out = bin("run").arg(model.to_str().unwrap()).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("nothing to do"));
}

/// On a machine without a desktop a run that works prints no error (the Vulkan loader's
/// Wayland probe used to print "error: XDG_RUNTIME_DIR is invalid or not set" twice).
#[test]
fn a_working_gpu_run_without_a_desktop_prints_no_error() {
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("tiny.qins");
    convert(&root().join("tests/fixtures/tiny-llama"), &archive, "lut8");
    let out = bin("run")
        .args([
            archive.to_str().unwrap(),
            "--backend",
            "gpu",
            "--prompt",
            "hi",
            "--max-tokens",
            "2",
        ])
        .env_remove("XDG_RUNTIME_DIR")
        .env_remove("WAYLAND_DISPLAY")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(!stderr.contains("error"), "{stderr}");
}

/// 200 turns on a 96-position context: the oldest turns leave the model's view, every turn
/// gets its reply, and a message longer than the context is refused without ending the chat.
#[test]
fn a_long_chat_keeps_going_past_the_context() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("tiny.qins");
    convert(&root().join("tests/fixtures/tiny-llama"), &model, "lut8");
    for backend in ["cpu", "gpu"] {
        let mut input: String = (0..200).map(|i| format!("turn number {i}\n")).collect();
        input.insert_str(input.len() / 2, &format!("{}\n", "word ".repeat(200)));
        let out = chat_session(
            &model,
            &[
                "--ctx",
                "96",
                "--max-tokens",
                "6",
                "--ignore-eos",
                "--backend",
                backend,
                "--system",
                "Be brief.",
                "-v",
            ],
            input.as_bytes(),
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{backend}: {err}");
        assert_eq!(
            err.matches("[6 tokens").count(),
            200,
            "{backend}: every turn replied"
        );
        assert!(
            err.contains("no longer fit the context"),
            "{backend}: {err}"
        );
        assert_eq!(
            err.matches("this message was not sent").count(),
            1,
            "{backend}: {err}"
        );
    }
}
