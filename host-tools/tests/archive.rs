//! Writer → reader round trips, streaming in arbitrary pieces, and every kind of damage.

use std::path::{Path, PathBuf};

use qins_host::convert::{convert, ConvertOptions};
use qins_host::import;
use qins_host::writer::ArchiveWriter;
use qins_runtime::codec::{decode, encode, Codec};
use qins_runtime::format::{
    read_archive, ChunkEncoding, Event, Manifest, StreamReader, HEADER_LEN,
};
use qins_runtime::model::{canonical_tensors, ModelConfig};
use qins_runtime::QinsError;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures")
        .join(name)
}

/// The tiny Llama converted with small chunks, so tensors span chunks.
fn tiny_archive(dir: &Path, codec: Codec, chunk: usize) -> PathBuf {
    let out = dir.join(format!("tiny-{}.qins", codec.name()));
    let opts = ConvertOptions {
        chunk_limit: Some(chunk),
        ..ConvertOptions::new(codec)
    };
    convert(import::open(&fixture("tiny-llama")).unwrap(), &opts, &out).unwrap();
    out
}

fn read_all(bytes: &[u8]) -> Result<(Manifest, Vec<Vec<u8>>), QinsError> {
    let mut tensors = Vec::new();
    let m = read_archive(bytes, Some(bytes.len() as u64), |_, b| {
        tensors.push(b);
        Ok(())
    })?;
    Ok((m, tensors))
}

#[test]
fn f32_archive_holds_exactly_the_imported_weights() {
    let dir = tempfile::tempdir().unwrap();
    let path = tiny_archive(dir.path(), Codec::F32, 4096);
    let (m, tensors) = read_all(&std::fs::read(&path).unwrap()).unwrap();
    assert!(m.chunks.len() > 10, "small chunk limit gives many chunks");
    let imported = import::open(&fixture("tiny-llama")).unwrap();
    let specs = canonical_tensors(&imported.config);
    assert_eq!(specs.len(), m.tensors.len());
    for ((spec, entry), bytes) in specs.iter().zip(&m.tensors).zip(&tensors) {
        assert_eq!(spec.name, entry.name);
        let (r, c) = entry.rows_cols();
        let want = imported.weights.load(spec).unwrap();
        assert_eq!(
            decode(entry.codec, bytes, r, c).unwrap(),
            want,
            "{}",
            spec.name
        );
    }
}

#[test]
fn streaming_in_any_piece_size_gives_the_same_tensors() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(tiny_archive(
        dir.path(),
        Codec::Lut4 {
            group: 32,
            offset: false,
        },
        3000,
    ))
    .unwrap();
    let (m, whole) = read_all(&bytes).unwrap();
    for piece in [1usize, 7, 255, 4096, 65536] {
        let mut reader = StreamReader::new(None);
        let mut got: Vec<Vec<u8>> = vec![Vec::new(); m.tensors.len()];
        let mut completed = 0;
        for part in bytes.chunks(piece) {
            reader
                .feed(part, &mut |ev| {
                    if let Event::TensorPiece {
                        index,
                        offset,
                        bytes,
                        complete,
                        ..
                    } = ev
                    {
                        assert_eq!(offset as usize, got[index].len(), "pieces arrive in order");
                        got[index].extend_from_slice(bytes);
                        completed += complete as usize;
                    }
                    Ok(())
                })
                .unwrap();
        }
        reader.finish().unwrap();
        assert_eq!(completed, m.tensors.len());
        assert_eq!(got, whole, "piece size {piece}");
    }
}

fn base_manifest() -> Manifest {
    let config = ModelConfig {
        architecture: "llama".into(),
        vocab_size: 8,
        hidden_size: 4,
        intermediate_size: 4,
        num_layers: 1,
        num_heads: 1,
        num_kv_heads: 1,
        head_dim: 4,
        rotary_dim: 4,
        rms_norm_eps: 1e-5,
        rope_theta: 10000.0,
        rope_scaling: None,
        max_position_embeddings: 16,
        attention_bias: false,
        tie_word_embeddings: true,
        bos_token_id: None,
        eos_token_ids: vec![],
    };
    Manifest {
        format_version: 0,
        converter: "test".into(),
        config,
        tokenizer: serde_json::Value::Null,
        chat_template: None,
        bos_token: None,
        eos_token: None,
        add_bos_token: false,
        generation: Default::default(),
        source: "test".into(),
        tensors: vec![],
        chunks: vec![],
        total_raw_bytes: 0,
    }
}

#[test]
fn compressible_chunks_are_zstd_and_incompressible_ones_raw() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("mixed.qins");
    let mut w = ArchiveWriter::create(&out, 3)
        .unwrap()
        .with_chunk_limit(1 << 16);
    let zeros = vec![0f32; 16384];
    let mut s = 1u32;
    let noise: Vec<f32> = (0..16384)
        .map(|_| {
            s = s.wrapping_mul(1664525).wrapping_add(1013904223);
            s as f32 / u32::MAX as f32 - 0.5
        })
        .collect();
    // Learned 8-bit codes of uniform noise are incompressible, like real lut8 codes.
    for (name, data, codec) in [
        ("zeros", &zeros, Codec::F32),
        ("noise", &noise, Codec::Lut8),
    ] {
        let (bytes, err) = encode(codec, data, 128, 128).unwrap();
        w.add_tensor(name, &[128, 128], codec, &bytes, Some(err))
            .unwrap();
    }
    let m = w.finish(base_manifest()).unwrap();
    assert_eq!(m.chunks[0].encoding, ChunkEncoding::Zstd);
    assert!(m.chunks[0].stored_len < 1000);
    assert_eq!(m.chunks.last().unwrap().encoding, ChunkEncoding::Raw);
    let (_, tensors) = read_all(&std::fs::read(&out).unwrap()).unwrap();
    let back = decode(Codec::Lut8, &tensors[1], 128, 128).unwrap();
    assert_eq!(
        back,
        decode(
            Codec::Lut8,
            &encode(Codec::Lut8, &noise, 128, 128).unwrap().0,
            128,
            128
        )
        .unwrap()
    );
}

#[test]
fn every_kind_of_damage_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let good = std::fs::read(tiny_archive(dir.path(), Codec::Lut8, 8192)).unwrap();
    let (m, _) = read_all(&good).unwrap();
    let manifest_len = u64::from_le_bytes(good[16..24].try_into().unwrap()) as usize;
    let data_start = HEADER_LEN + manifest_len;

    // A flipped byte anywhere in any chunk names that chunk.
    for (i, c) in m.chunks.iter().enumerate() {
        for at in [0, c.stored_len / 2, c.stored_len - 1] {
            let mut bad = good.clone();
            bad[data_start + (c.stored_offset + at) as usize] ^= 0x40;
            match read_all(&bad) {
                Err(QinsError::Checksum { what, .. }) => {
                    assert!(what.contains(&format!("chunk {i}")), "{what}")
                }
                other => panic!(
                    "chunk {i} +{at}: expected a checksum error, got {:?}",
                    other.err()
                ),
            }
        }
    }
    // The manifest is covered by its own checksum.
    let mut bad = good.clone();
    bad[HEADER_LEN + manifest_len / 2] ^= 1;
    assert!(matches!(read_all(&bad), Err(QinsError::Checksum { .. })));
    // Wrong magic, wrong version.
    let mut bad = good.clone();
    bad[0] = b'X';
    assert!(matches!(read_all(&bad), Err(QinsError::BadMagic)));
    let mut bad = good.clone();
    bad[8] = 9;
    assert!(matches!(
        read_all(&bad),
        Err(QinsError::UnsupportedVersion { found: 9, .. })
    ));
    // A huge manifest length is refused before anything is allocated for it.
    let mut bad = good.clone();
    bad[16..24].copy_from_slice(&u64::MAX.to_le_bytes());
    assert!(matches!(read_all(&bad), Err(QinsError::Corrupt(_))));
    // Truncation at every region: header, manifest, each chunk; and trailing bytes.
    for cut in [
        0,
        5,
        HEADER_LEN + 3,
        data_start - 1,
        data_start + 1,
        good.len() / 2,
        good.len() - 1,
    ] {
        let err = read_all(&good[..cut])
            .err()
            .unwrap_or_else(|| panic!("cut at {cut} accepted"));
        assert!(
            matches!(err, QinsError::Truncated { .. }),
            "cut {cut}: {err}"
        );
        // Also without knowing the length up front (a stream without Content-Length).
        let mut r = StreamReader::new(None);
        let fed = r.feed(&good[..cut], &mut |_| Ok(()));
        assert!(
            fed.is_err() || r.finish().is_err(),
            "cut {cut} accepted by the stream reader"
        );
    }
    let mut long = good.clone();
    long.extend_from_slice(b"junk");
    assert!(matches!(read_all(&long), Err(QinsError::Corrupt(_))));
}

/// Calibration measures every matrix's input channels on a text (the tiny Llama's embedding is
/// tied, so it is weighted as the output head), the converter takes the weights, and a text
/// shorter than one window is refused.
#[test]
fn calibration_weights_every_matrix_and_converts() {
    use qins_host::calibrate::{calibrate, CalibrationOptions};
    use qins_runtime::codec::Importance;
    use qins_runtime::model::TensorRole;
    let imp = import::open(&fixture("tiny-llama")).unwrap();
    let text = std::fs::read_to_string(fixture("../../data/corpus/calib.txt")).unwrap();
    let opts = CalibrationOptions {
        windows: 2,
        window_len: 32,
        progress: false,
    };
    let cal = calibrate(&imp, &text, &opts).unwrap();
    assert_eq!(cal.tokens, 64);
    for spec in canonical_tensors(&imp.config) {
        if spec.role != TensorRole::Matrix {
            continue;
        }
        let Importance::PerColumn(v) = cal.importance(&spec.name) else {
            panic!("{} has no importance", spec.name);
        };
        assert_eq!(v.len(), spec.shape[1], "{}", spec.name);
        let mean = v.iter().map(|&a| a as f64).sum::<f64>() / v.len() as f64;
        assert!((mean - 1.0).abs() < 0.01, "{}: mean {mean}", spec.name);
        assert!(v.iter().all(|a| a.is_finite() && *a > 0.0));
    }
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("tiny-calibrated.qins");
    let codec = Codec::from_name("lut4", 32).unwrap();
    let summary = convert(
        imp,
        &ConvertOptions {
            calibration: Some(cal),
            ..ConvertOptions::new(codec)
        },
        &out,
    )
    .unwrap();
    assert_eq!(summary.calibration_tokens, Some(64));
    assert!(
        summary.matrix_error.sqnr_db > 10.0,
        "{:?}",
        summary.matrix_error
    );
    let bytes = std::fs::read(&out).unwrap();
    read_all(&bytes).unwrap();

    let imp = import::open(&fixture("tiny-llama")).unwrap();
    let err = calibrate(&imp, "too short", &opts).unwrap_err().to_string();
    assert!(err.contains("fewer than one window"), "{err}");
}
