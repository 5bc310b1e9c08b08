//! The command-line tools as a user runs them: SmolLM2-135M (the real default model) through
//! every codec, the tiny Hugging Face checkpoints, synthetic Phi-3.5 shapes, and bad input.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The SmolLM2 GGUF fetched by `scripts/dev.sh fetch` (or named by QINS_SMOLLM2_GGUF).
fn smollm2() -> PathBuf {
    let p = std::env::var_os("QINS_SMOLLM2_GGUF")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("models/SmolLM2-135M-Instruct.Q4_1.gguf"));
    assert!(
        p.exists(),
        "{} missing: run ./scripts/dev.sh fetch",
        p.display()
    );
    p
}

fn run(bin: &str, args: &[&str]) -> Output {
    let exe = match bin {
        "convert" => env!("CARGO_BIN_EXE_qins-convert"),
        "inspect" => env!("CARGO_BIN_EXE_qins-inspect"),
        _ => unreachable!(),
    };
    Command::new(exe)
        .args(args)
        .env_remove("RUST_BACKTRACE")
        .output()
        .unwrap()
}

fn json_of(out: &Output) -> Value {
    assert!(
        out.status.success(),
        "failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn convert(input: &Path, out: &Path, codec: &str) -> Value {
    json_of(&run(
        "convert",
        &[
            input.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
            "--codec",
            codec,
            "--json",
        ],
    ))
}

/// One stderr line, no panic, non-zero exit.
fn assert_clean_failure(out: &Output, expect: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "should fail: {err}");
    assert!(
        !err.contains("panicked") && !err.contains("backtrace"),
        "{err}"
    );
    assert_eq!(err.trim_end().lines().count(), 1, "one clear line: {err}");
    assert!(
        err.to_lowercase().contains(expect),
        "expected '{expect}' in: {err}"
    );
}

#[test]
fn smollm2_converts_with_every_codec_within_budget() {
    let dir = tempfile::tempdir().unwrap();
    let gguf = smollm2();
    let mut sqnr = std::collections::HashMap::new();
    for (codec, max_bpw) in [
        ("qins8", 8.3),
        ("lut8", 8.3),
        ("lut4", 4.7),
        ("f16", 16.0),
        ("f32", 32.0),
    ] {
        let out = dir.path().join(format!("{codec}.qins"));
        let s = convert(&gguf, &out, codec);
        let bpw = s["bits_per_weight"].as_f64().unwrap();
        assert!(bpw <= max_bpw, "{codec}: {bpw} bits/weight > {max_bpw}");
        assert_eq!(
            s["parameters"], 134_515_008u64,
            "SmolLM2-135M parameter count"
        );
        sqnr.insert(codec, s["matrix_error"]["sqnr_db"].as_f64().unwrap());
        // Every archive passes a full check.
        let info = json_of(&run("inspect", &["--json", out.to_str().unwrap()]));
        assert_eq!(info["checksums_ok"], true);
        assert_eq!(info["tensors"].as_array().unwrap().len(), 1 + 30 * 6 + 1);
    }
    assert!(sqnr["lut8"] > sqnr["qins8"] + 15.0, "{sqnr:?}");
    assert!(sqnr["lut8"] > 40.0 && sqnr["lut4"] > 20.0, "{sqnr:?}");
    assert!(sqnr["f16"] > 70.0 && sqnr["f32"] >= 200.0, "{sqnr:?}");
}

#[test]
fn inspect_reports_the_imported_model() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("s.qins");
    convert(&smollm2(), &out, "lut4");
    let info = json_of(&run("inspect", &["--json", out.to_str().unwrap()]));
    assert_eq!(info["format_version"], 1);
    assert_eq!(info["architecture"], "llama");
    let c = &info["config"];
    assert_eq!(
        (c["num_layers"].as_u64(), c["hidden_size"].as_u64()),
        (Some(30), Some(576))
    );
    assert_eq!(
        (
            c["num_heads"].as_u64(),
            c["num_kv_heads"].as_u64(),
            c["head_dim"].as_u64()
        ),
        (Some(9), Some(3), Some(64))
    );
    assert_eq!(
        (c["intermediate_size"].as_u64(), c["vocab_size"].as_u64()),
        (Some(1536), Some(49152))
    );
    assert_eq!(c["rope_theta"].as_f64(), Some(100000.0));
    assert_eq!(c["tie_word_embeddings"], true);
    assert_eq!(
        (c["bos_token_id"].as_u64(), c["eos_token_ids"][0].as_u64()),
        (Some(1), Some(2))
    );
    assert_eq!(info["eos_token"], "<|im_end|>");
    assert!(info["chat_template"]
        .as_str()
        .unwrap()
        .contains("<|im_start|>"));
    let qkv = info["tensors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "layers.0.attn_qkv")
        .unwrap();
    assert_eq!(qkv["shape"], serde_json::json!([576 + 2 * 192, 576]));
    assert_eq!(qkv["codec"], "lut4-g32");
    let total = std::fs::metadata(&out).unwrap().len();
    assert_eq!(info["total_bytes"].as_u64(), Some(total));
}

#[test]
fn damaged_archives_fail_with_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    let good_path = dir.path().join("good.qins");
    let s = convert(&root().join("tests/fixtures/tiny-phi3"), &good_path, "lut8");
    assert!(s["archive_bytes"].as_u64().unwrap() > 0);
    let good = std::fs::read(&good_path).unwrap();
    let check = |name: &str, bytes: &[u8], expect: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, bytes).unwrap();
        assert_clean_failure(&run("inspect", &[p.to_str().unwrap()]), expect);
        let out = run("inspect", &["--json", p.to_str().unwrap()]);
        assert!(!out.status.success());
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["checksums_ok"], false);
    };
    check("truncated.qins", &good[..good.len() * 2 / 3], "truncated");
    check("empty.qins", &[], "truncated");
    let mut flipped = good.clone();
    let n = flipped.len();
    flipped[n - 10] ^= 0xff;
    check("flipped.qins", &flipped, "checksum");
    let mut magic = good.clone();
    magic[..4].copy_from_slice(b"GGUF");
    check("magic.qins", &magic, "magic");
    let mut version = good.clone();
    version[8] = 2;
    check("version.qins", &version, "version 2");
    assert_clean_failure(
        &run("inspect", &[dir.path().join("nope.qins").to_str().unwrap()]),
        "cannot open",
    );
}

#[test]
fn phi3_longrope_checkpoint_converts_and_keeps_its_rope() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("phi.qins");
    convert(&root().join("tests/fixtures/tiny-phi3"), &out, "lut4");
    let info = json_of(&run("inspect", &["--json", out.to_str().unwrap()]));
    let rope = &info["config"]["rope_scaling"];
    assert_eq!(rope["type"], "longrope");
    assert_eq!(rope["original_max_position_embeddings"], 32);
    assert_eq!(rope["short_factor"].as_array().unwrap().len(), 8);
    let expected = (1.0f64 + (128f64 / 32.0).ln() / 32f64.ln()).sqrt();
    assert!((rope["attention_factor"].as_f64().unwrap() - expected).abs() < 1e-6);
    assert_eq!(info["config"]["tie_word_embeddings"], false);
    assert!(info["tensors"]
        .as_array()
        .unwrap()
        .iter()
        .any(|t| t["name"] == "output"));
}

#[test]
fn synthetic_phi35_has_the_real_shapes() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("syn.qins");
    let o = out.to_str().unwrap();
    let s = json_of(&run(
        "convert",
        &[
            "--synthetic",
            "phi-3.5-mini",
            "--synthetic-layers",
            "1",
            "--codec",
            "lut4",
            "--repeat-rows",
            "64",
            "-o",
            o,
            "--json",
        ],
    ));
    // Every row is stored (4 bits and an f16 scale per 32), though only 64 a matrix were
    // fitted; their repeats compress.
    let bits = s["bits_per_weight"].as_f64().unwrap();
    assert!((4.5..=4.7).contains(&bits), "{bits} bits a weight");
    let (raw, packed) = (
        s["raw_bytes"].as_f64().unwrap(),
        s["archive_bytes"].as_f64().unwrap(),
    );
    assert!(packed < raw / 4.0, "{packed} bytes of {raw} raw");
    let info = json_of(&run("inspect", &["--json", o]));
    let shape = |name: &str| {
        info["tensors"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["name"] == name)
            .unwrap()["shape"]
            .clone()
    };
    assert_eq!(shape("token_embd"), serde_json::json!([32064, 3072]));
    assert_eq!(shape("layers.0.attn_qkv"), serde_json::json!([9216, 3072]));
    assert_eq!(
        shape("layers.0.ffn_gate_up"),
        serde_json::json!([16384, 3072])
    );
    assert_eq!(shape("layers.0.ffn_down"), serde_json::json!([3072, 8192]));
    assert_eq!(shape("output"), serde_json::json!([32064, 3072]));
    let tiny = root().join("tests/fixtures/tiny-llama");
    let real = run(
        "convert",
        &[tiny.to_str().unwrap(), "--repeat-rows", "4", "-o", o],
    );
    assert!(!real.status.success(), "--repeat-rows needs --synthetic");
}

#[test]
fn bad_checkpoints_name_the_file_and_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("x.qins");
    let o = out.to_str().unwrap();
    // Unsupported architecture.
    let gpt2 = dir.path().join("gpt2");
    std::fs::create_dir(&gpt2).unwrap();
    std::fs::write(
        gpt2.join("config.json"),
        r#"{"architectures": ["GPT2LMHeadModel"]}"#,
    )
    .unwrap();
    let r = run("convert", &[gpt2.to_str().unwrap(), "-o", o]);
    assert_clean_failure(&r, "unsupported architecture gpt2lmheadmodel");
    assert!(String::from_utf8_lossy(&r.stderr).contains("config.json"));
    // A shard missing from a sharded checkpoint.
    let phi = dir.path().join("phi");
    std::fs::create_dir(&phi).unwrap();
    for e in std::fs::read_dir(root().join("tests/fixtures/tiny-phi3")).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), phi.join(e.file_name())).unwrap();
    }
    std::fs::remove_file(phi.join("model-00002-of-00005.safetensors")).unwrap();
    assert_clean_failure(
        &run("convert", &[phi.to_str().unwrap(), "-o", o]),
        "model-00002-of-00005.safetensors",
    );
    // A truncated GGUF.
    let gguf = std::fs::read(smollm2()).unwrap();
    let cut = dir.path().join("cut.gguf");
    std::fs::write(&cut, &gguf[..gguf.len() / 2]).unwrap();
    assert_clean_failure(
        &run("convert", &[cut.to_str().unwrap(), "-o", o]),
        "past the end of the file",
    );
    std::fs::write(&cut, &gguf[..100_000]).unwrap();
    assert_clean_failure(
        &run("convert", &[cut.to_str().unwrap(), "-o", o]),
        "truncated",
    );
    // Nothing was left under the output name by any failed run.
    assert!(!out.exists());
    // Unknown codec.
    assert_clean_failure(
        &run(
            "convert",
            &[cut.to_str().unwrap(), "-o", o, "--codec", "int3"],
        ),
        "unknown codec",
    );
}

/// A conversion killed part-way (SIGKILL: no cleanup runs) leaves the archive already at the
/// output path exactly as it was; a later run completes normally.
#[test]
fn a_killed_conversion_leaves_the_previous_archive_intact() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("model.qins");
    let previous = b"the previous archive".to_vec();
    std::fs::write(&out, &previous).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_qins-convert"))
        .args([
            smollm2().to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
            "--codec",
            "lut8g",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Well into the conversion (a minute on this model), before it finishes.
    std::thread::sleep(std::time::Duration::from_secs(4));
    assert!(child.try_wait().unwrap().is_none(), "still converting");
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(
        std::fs::read(&out).unwrap(),
        previous,
        "the output path is untouched"
    );
    // A later run replaces it with a whole archive.
    let tiny = root().join("tests/fixtures/tiny-llama");
    let o = run(
        "convert",
        &[
            tiny.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
            "--codec",
            "lut8",
        ],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = run("inspect", &[out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}
