//! GGUF import: dequantization equal to llama.cpp's gguf-py on every block type, SmolLM2's
//! metadata, and its tokenizer rebuilt from `tokenizer.ggml.*`.

use qins_host::import::{self, gguf::dequantize};
use qins_tests::{fixture, smollm2_gguf};
use serde_json::Value;

#[test]
fn dequantization_matches_gguf_py_bit_for_bit() {
    let cases: Vec<Value> =
        serde_json::from_slice(&std::fs::read(fixture("quants.json")).unwrap()).unwrap();
    assert_eq!(cases.len(), 10);
    for c in cases {
        let bytes: Vec<u8> = c["bytes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as u8)
            .collect();
        let want: Vec<f32> = c["expected"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap() as f32)
            .collect();
        let got = dequantize(
            c["type"].as_u64().unwrap() as u32,
            &bytes,
            c["n"].as_u64().unwrap() as usize,
        )
        .unwrap();
        assert_eq!(got.len(), want.len());
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert!(
                (g - w).abs() <= 1e-6 * w.abs().max(1e-3),
                "{} value {i}: {g} vs gguf-py {w}",
                c["name"]
            );
        }
    }
    assert!(
        dequantize(12, &[0u8; 100], 256).is_err(),
        "short block data is an error"
    );
}

#[test]
fn smollm2_tokenizer_rebuilt_from_gguf() {
    let imp = import::open(&smollm2_gguf()).unwrap();
    assert_eq!(imp.bos_token.as_deref(), Some("<|im_start|>"));
    assert!(!imp.add_bos_token);
    let tok =
        tokenizers::Tokenizer::from_bytes(serde_json::to_vec(&imp.tokenizer).unwrap()).unwrap();
    assert_eq!(tok.get_vocab_size(true), 49152);
    let ids = |s: &str| tok.encode(s, false).unwrap().get_ids().to_vec();
    assert_eq!(
        ids("<|im_start|>user\n"),
        [vec![1], ids("user\n")].concat(),
        "special tokens are atomic"
    );
    assert_eq!(ids("<|im_end|>"), vec![2]);
    assert_eq!(
        ids("2024").len(),
        4,
        "the smollm pre-tokenizer splits digits"
    );
    for s in [
        "Hello, world!",
        "  leading spaces\tand tabs",
        "fn main() { println!(\"hi\"); }",
        "日本語のテキスト",
        "emoji 🦀🎉",
        "naïve café",
    ] {
        let enc = tok.encode(s, false).unwrap();
        assert_eq!(tok.decode(enc.get_ids(), false).unwrap(), s);
    }
    assert_eq!(
        ids(" the").len(),
        1,
        "common words are single tokens: merges loaded"
    );
}
