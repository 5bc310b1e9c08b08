//! qins-fuzz: a coverage-blind, stable-Rust fuzzer for every parser of untrusted bytes (cargo
//! fuzz needs a nightly toolchain, which this project's machines do not have). Each target
//! starts from real seeds, mutates them (bit flips, byte sets, inserts, deletes, duplicated
//! ranges, truncation, splices of interesting values), and checks three properties per input:
//! no panic, no run over one second, no allocation beyond a bound derived from the input's size.
//! A time or memory spike counts only when a rerun of the input repeats it (the others are
//! reported as `unconfirmed_spikes`). A failing input is written to `--crashes DIR` and the run
//! exits non-zero.
//!
//!   qins-fuzz TARGET [--execs N] [--seconds S] [--seed X] [--crashes DIR]
//!   qins-fuzz TARGET --replay FILE     (one input, with its panic message)
//!   targets: archive, gguf, hf-config, safetensors, template, tokenizer, worker, all

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use qins_runtime::chat::{ChatTemplate, GenerateOptions, Message, Prompt, Tokenizer};
use qins_runtime::format::{Manifest, StreamReader};
use qins_runtime::load::{Backend, LoadOptions, Loaded};
use qins_runtime::model::canonical_tensors;
use serde_json::Value;

/// Counts live and peak heap bytes, so each input's allocations can be bounded.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let now = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// xorshift64*: reproducible from `--seed`, no dependency for a few lines.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

const INTERESTING: [u64; 8] = [0, 1, 0x7f, 0xff, 0xffff, 0xffff_ffff, u64::MAX, 1 << 40];

fn mutate(rng: &mut Rng, seed: &[u8]) -> Vec<u8> {
    let mut b = seed.to_vec();
    for _ in 0..1 + rng.below(8) {
        let len = b.len();
        match rng.below(7) {
            0 if len > 0 => {
                let i = rng.below(len);
                b[i] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let i = rng.below(len);
                b[i] = rng.next() as u8;
            }
            2 => {
                let i = rng.below(len + 1);
                let n = 1 + rng.below(16);
                let bytes: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
                b.splice(i..i, bytes);
            }
            3 if len > 0 => {
                let i = rng.below(len);
                let n = 1 + rng.below((len - i).min(64));
                b.drain(i..i + n);
            }
            4 if len > 0 => {
                let i = rng.below(len);
                let n = 1 + rng.below((len - i).min(256));
                let copy = b[i..i + n].to_vec();
                let at = rng.below(len + 1);
                b.splice(at..at, copy);
            }
            5 if len > 0 => {
                b.truncate(rng.below(len));
            }
            6 if len >= 8 => {
                // A length or count field set to something extreme.
                let i = rng.below(len - 7);
                let v = INTERESTING[rng.below(INTERESTING.len())];
                let w = [1, 2, 4, 8][rng.below(4)];
                b[i..i + w].copy_from_slice(&v.to_le_bytes()[..w]);
            }
            _ => {}
        }
    }
    b
}

/// Structure-aware mutation for JSON inputs: byte mutations mostly break the syntax and stop
/// at the parser, so half of a JSON target's inputs instead change values inside a valid
/// document (extreme numbers, wrong types, removed keys, grown arrays, odd strings).
fn mutate_json(rng: &mut Rng, seed: &[u8]) -> Vec<u8> {
    let Ok(mut doc) = serde_json::from_slice::<Value>(seed) else {
        return mutate(rng, seed);
    };
    for _ in 0..1 + rng.below(4) {
        mutate_value(rng, &mut doc);
    }
    serde_json::to_vec(&doc).unwrap_or_default()
}

fn odd_value(rng: &mut Rng) -> Value {
    const NUMBERS: [f64; 12] = [
        0.0,
        -1.0,
        1.0,
        0.5,
        2.0,
        255.0,
        4294967295.0,
        4294967296.0,
        9007199254740993.0,
        1e308,
        -1e308,
        5e-324,
    ];
    match rng.below(9) {
        0 => Value::Null,
        1 => Value::Bool(rng.below(2) == 0),
        2 | 3 => serde_json::json!(NUMBERS[rng.below(NUMBERS.len())]),
        4 => serde_json::json!(-(rng.next() as i64).abs()),
        5 => Value::String(String::new()),
        6 => Value::String(
            ["\u{0}", "<|im_end|>", "{{", "\u{1f600}", "é", "\n\n"][rng.below(6)]
                .repeat(1 + rng.below(300)),
        ),
        7 => Value::Array(vec![]),
        _ => Value::Object(Default::default()),
    }
}

/// Changes one value somewhere in `v`: replaced, removed, or its array grown.
fn mutate_value(rng: &mut Rng, v: &mut Value) {
    let children = match v {
        Value::Array(a) => a.len(),
        Value::Object(o) => o.len(),
        _ => 0,
    };
    // Stop here a third of the time, or at a leaf.
    if children == 0 || rng.below(3) == 0 {
        match v {
            Value::Array(a) if !a.is_empty() && rng.below(2) == 0 => {
                let item = a[rng.below(a.len())].clone();
                let n = 1 + rng.below(64);
                a.extend(std::iter::repeat_n(item, n));
            }
            Value::Object(o) if !o.is_empty() && rng.below(2) == 0 => {
                let key = o
                    .keys()
                    .nth(rng.below(o.len()))
                    .cloned()
                    .unwrap_or_default();
                o.remove(&key);
            }
            _ => *v = odd_value(rng),
        }
        return;
    }
    let i = rng.below(children);
    match v {
        Value::Array(a) => mutate_value(rng, &mut a[i]),
        Value::Object(o) => {
            if let Some((_, child)) = o.iter_mut().nth(i) {
                mutate_value(rng, child)
            }
        }
        _ => {}
    }
}

/// A target: its seeds, what it runs on one input, and the allocation bound for an input.
struct Target {
    name: &'static str,
    seeds: Vec<Vec<u8>>,
    /// The inputs are JSON: half of them mutated as documents ([`mutate_json`]).
    json: bool,
    run: fn(&[u8], &mut Rng),
    /// Bytes an input of this length may allocate at the peak.
    bound: fn(usize) -> usize,
}

/// The archive reader, fed in random piece sizes as a network would.
fn run_archive(bytes: &[u8], rng: &mut Rng) {
    let mut r = StreamReader::new(if rng.below(2) == 0 {
        Some(bytes.len() as u64)
    } else {
        None
    });
    let mut rest = bytes;
    while !rest.is_empty() {
        let n = (1 + rng.below(4096)).min(rest.len());
        if r.feed(&rest[..n], &mut |_| Ok(())).is_err() {
            return;
        }
        rest = &rest[n..];
    }
    let _ = r.finish();
}

fn run_gguf(bytes: &[u8], _: &mut Rng) {
    let _ = qins_host::import::parse_gguf(bytes);
}

/// A small valid GGUF v3 file: metadata of every common kind (strings, integers, floats, an
/// array of strings) and two F32 tensors, as the seed the mutations start from.
fn tiny_gguf() -> Vec<u8> {
    fn string(out: &mut Vec<u8>, s: &str) {
        out.extend((s.len() as u64).to_le_bytes());
        out.extend(s.as_bytes());
    }
    let mut b = b"GGUF".to_vec();
    b.extend(3u32.to_le_bytes());
    b.extend(2u64.to_le_bytes()); // tensors
    b.extend(5u64.to_le_bytes()); // metadata entries
    string(&mut b, "general.architecture");
    b.extend(8u32.to_le_bytes());
    string(&mut b, "llama");
    string(&mut b, "llama.block_count");
    b.extend(4u32.to_le_bytes());
    b.extend(1u32.to_le_bytes());
    string(&mut b, "llama.rope.freq_base");
    b.extend(6u32.to_le_bytes());
    b.extend(10000f32.to_le_bytes());
    string(&mut b, "general.alignment");
    b.extend(4u32.to_le_bytes());
    b.extend(32u32.to_le_bytes());
    string(&mut b, "tokenizer.ggml.tokens");
    b.extend(9u32.to_le_bytes());
    b.extend(8u32.to_le_bytes());
    b.extend(3u64.to_le_bytes());
    for t in ["<s>", "a", "b"] {
        string(&mut b, t);
    }
    for (name, offset) in [("token_embd.weight", 0u64), ("output_norm.weight", 64)] {
        string(&mut b, name);
        b.extend(2u32.to_le_bytes());
        b.extend(4u64.to_le_bytes());
        b.extend(3u64.to_le_bytes());
        b.extend(0u32.to_le_bytes()); // F32
        b.extend(offset.to_le_bytes());
    }
    b.resize(b.len().next_multiple_of(32), 0);
    b.extend((0..32).flat_map(|i| (i as f32 * 0.1).to_le_bytes()));
    b
}

fn run_template(bytes: &[u8], _: &mut Rng) {
    let Ok(src) = std::str::from_utf8(bytes) else {
        return;
    };
    if let Ok(t) = ChatTemplate::new(src) {
        let m = [
            Message::new("system", "Be brief."),
            Message::new("user", "Hi!"),
            Message::new("assistant", "Hello."),
            Message::new("user", "Again?"),
        ];
        let _ = t.render(&m, true, "<s>", "</s>");
    }
}

fn run_tokenizer(bytes: &[u8], _: &mut Rng) {
    let Ok(json) = serde_json::from_slice::<serde_json::Value>(bytes) else {
        return;
    };
    if let Ok(t) = Tokenizer::from_manifest(&Manifest::carrying_tokenizer(json, 8)) {
        let _ = t.encode("Hello, world! 123 \u{4f60}\u{597d} \u{1f600}\n\n  x", false);
    }
}

/// The tiny Llama's and Phi-3's folders (Phi-3's sharded), each file by name.
fn checkpoints() -> &'static [BTreeMap<String, Vec<u8>>] {
    static FOLDERS: OnceLock<Vec<BTreeMap<String, Vec<u8>>>> = OnceLock::new();
    FOLDERS.get_or_init(|| {
        ["tiny-llama", "tiny-phi3"]
            .iter()
            .map(|name| {
                let dir = fixtures().join(name);
                std::fs::read_dir(&dir)
                    .expect("fixture folder")
                    .filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|f| f != "reference.json")
                    .map(|f| {
                        (
                            f.clone(),
                            std::fs::read(dir.join(&f)).expect("fixture file"),
                        )
                    })
                    .collect()
            })
            .collect()
    })
}

/// A checkpoint whose file `name` is `bytes` (the others as in the fixture): imported, then
/// every canonical tensor loaded, as qins-convert would.
fn import_with(folder: &BTreeMap<String, Vec<u8>>, name: &str, bytes: &[u8]) {
    let mut files = folder.clone();
    files.insert(name.to_string(), bytes.to_vec());
    let Ok(imported) = qins_host::import::hf::open_files(Box::new(files), "fuzz") else {
        return;
    };
    for spec in canonical_tensors(&imported.config) {
        if imported.weights.load(&spec).is_err() {
            return;
        }
    }
}

/// config.json of both tiny checkpoints.
fn run_hf_config(bytes: &[u8], _: &mut Rng) {
    for folder in checkpoints() {
        import_with(folder, "config.json", bytes);
    }
}

/// The tiny Llama's model.safetensors, or one of the tiny Phi-3's shards.
fn run_safetensors(bytes: &[u8], rng: &mut Rng) {
    let [llama, phi3] = checkpoints() else {
        unreachable!("two fixture folders")
    };
    if rng.below(2) == 0 {
        import_with(llama, "model.safetensors", bytes);
    } else {
        let shard = format!("model-0000{}-of-00005.safetensors", 1 + rng.below(5));
        import_with(phi3, &shard, bytes);
    }
}

thread_local! {
    /// The tiny Llama, converted and loaded on the CPU engine once, for the worker target.
    static WORKER: RefCell<Option<Loaded>> = const { RefCell::new(None) };
}

/// Replies longer than this are cut in the fuzzer only, to keep each input fast (the engine
/// itself bounds a reply by the context).
const FUZZ_MAX_TOKENS: usize = 12;

/// One worker request (docs/WEB_API.md), read as the worker and the browser engine read it:
/// `messages` and `options` through serde (`from_js` is JSON.stringify and serde_json), `ids` as
/// numbers cast to u32, `text` as a string; then the reply generated on the tiny Llama.
fn run_worker(bytes: &[u8], _: &mut Rng) {
    let Ok(msg) = serde_json::from_slice::<Value>(bytes) else {
        return;
    };
    fn serde_or_default<T: serde::de::DeserializeOwned + Default>(v: &Value) -> Option<T> {
        if v.is_null() {
            return Some(T::default());
        }
        serde_json::from_value(v.clone()).ok()
    }
    let prompt = match msg["type"].as_str() {
        Some("generate") => match serde_or_default::<Vec<Message>>(&msg["messages"]) {
            Some(m) => Prompt::Chat(m),
            None => return,
        },
        Some("complete") => Prompt::Ids(
            msg["ids"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_f64)
                        .map(|v| v as u32)
                        .collect()
                })
                .unwrap_or_default(),
        ),
        Some("complete_text") => Prompt::Text(msg["text"].as_str().unwrap_or_default().into()),
        _ => return,
    };
    let Some(mut opts) = serde_or_default::<GenerateOptions>(&msg["options"]) else {
        return;
    };
    opts.max_tokens = opts.max_tokens.min(FUZZ_MAX_TOKENS);
    WORKER.with_borrow_mut(|w| {
        let loaded = w.as_mut().expect("the worker target's model");
        if let Ok(mut run) = loaded.generator.start(prompt, opts) {
            while let Some(Ok(_)) = qins_runtime::engine::block_on(run.next_token()) {}
            let _ = run.held_text();
        }
    });
}

fn worker_seeds() -> Vec<Vec<u8>> {
    [
        r#"{"type":"generate","id":1,"messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"Hi there!"},{"role":"assistant","content":"Hello."},{"role":"user","content":"Again \u00e9 \ud83d\ude00"}],"options":{"temperature":0.7,"top_k":40,"top_p":0.9,"min_p":0.05,"repetition_penalty":1.1,"seed":7,"max_tokens":8,"stop":["\n\n","ab"]}}"#,
        r#"{"type":"complete","id":"x","ids":[1,5,9,300,17],"options":{"max_tokens":4,"ignore_eos":true,"temperature":0}}"#,
        r#"{"type":"complete_text","id":3,"text":"Once upon a time","options":{"max_tokens":6,"stop":["e","time"],"top_k":1}}"#,
        r#"{"type":"generate","id":4,"messages":[{"role":"user","content":"x"}]}"#,
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect()
}

/// The tiny Phi-3's template, from its tokenizer_config.json.
fn phi3_template() -> Vec<u8> {
    let cfg = std::fs::read(fixtures().join("tiny-phi3/tokenizer_config.json")).expect("tiny-phi3");
    let cfg: serde_json::Value = serde_json::from_slice(&cfg).expect("json");
    cfg["chat_template"]
        .as_str()
        .unwrap_or_default()
        .as_bytes()
        .to_vec()
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

fn targets(dir: &Path) -> Vec<Target> {
    let tiny = fixtures().join("tiny-llama");
    let archive = dir.join("tiny.qins");
    qins_host::convert::convert(
        qins_host::import::open(&tiny).expect("tiny-llama"),
        &qins_host::convert::ConvertOptions {
            chunk_limit: Some(2048),
            ..qins_host::convert::ConvertOptions::new(qins_runtime::codec::Codec::Lut8)
        },
        &archive,
    )
    .expect("convert");
    let read = |p: PathBuf| std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    let loaded = qins_runtime::load::open(
        &archive,
        &LoadOptions {
            backend: Backend::Cpu,
            ..LoadOptions::default()
        },
    )
    .expect("load the tiny archive");
    WORKER.with_borrow_mut(|w| *w = Some(loaded));
    let archive_bytes = read(archive);
    let file = |folder: usize, name: &str| checkpoints()[folder][name].clone();
    vec![
        Target {
            name: "archive",
            seeds: vec![archive_bytes],
            json: false,
            run: run_archive,
            // One stored and one decoded chunk (<= 16 MiB each) or the manifest, whatever the
            // input claims; the reader never allocates what the input does not hold beyond that.
            bound: |n| 4 * n + (34 << 20),
        },
        Target {
            name: "gguf",
            seeds: vec![tiny_gguf()],
            json: false,
            run: run_gguf,
            bound: |n| 8 * n + (1 << 20),
        },
        Target {
            name: "hf-config",
            seeds: vec![file(0, "config.json"), file(1, "config.json")],
            json: true,
            run: run_hf_config,
            // The fixtures' own tensors (under 1 MB) as f32, whatever the config claims.
            bound: |n| 64 * n + (8 << 20),
        },
        Target {
            name: "safetensors",
            seeds: vec![
                file(0, "model.safetensors"),
                file(1, "model-00001-of-00005.safetensors"),
            ],
            json: false,
            run: run_safetensors,
            // A copy of the input, its tensors as f32 (2x for f16), and the other files.
            bound: |n| 8 * n + (8 << 20),
        },
        Target {
            name: "template",
            seeds: vec![read(tiny.join("chat_template.jinja")), phi3_template()],
            json: false,
            run: run_template,
            bound: |n| 64 * n + (32 << 20),
        },
        Target {
            name: "tokenizer",
            seeds: vec![read(tiny.join("tokenizer.json"))],
            json: true,
            run: run_tokenizer,
            bound: |n| 64 * n + (16 << 20),
        },
        Target {
            name: "worker",
            seeds: worker_seeds(),
            json: true,
            run: run_worker,
            bound: |n| 64 * n + (16 << 20),
        },
    ]
}

struct Stats {
    execs: u64,
    slowest: Duration,
    peak_ratio: f64,
    /// Over-time or over-bound inputs whose rerun stayed within bounds (see [`measure`]).
    unconfirmed: u64,
}

/// One run of `input`: whether it panicked, how long it took, the peak bytes it allocated.
fn measure(t: &Target, input: &[u8], exec_seed: u64) -> (bool, Duration, usize) {
    let before = LIVE.load(Ordering::Relaxed);
    PEAK.store(before, Ordering::Relaxed);
    let t0 = Instant::now();
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        (t.run)(input, &mut Rng(exec_seed))
    }));
    let took = t0.elapsed();
    let peak = PEAK.load(Ordering::Relaxed).saturating_sub(before);
    (result.is_err(), took, peak)
}

fn fuzz(t: &Target, execs: u64, seconds: f64, seed: u64, crashes: &Path) -> Result<Stats, String> {
    let mut rng = Rng(seed | 1);
    let started = Instant::now();
    let mut stats = Stats {
        execs: 0,
        slowest: Duration::ZERO,
        peak_ratio: 0.0,
        unconfirmed: 0,
    };
    while stats.execs < execs && started.elapsed().as_secs_f64() < seconds {
        let base = &t.seeds[rng.below(t.seeds.len())];
        let input = if t.json && rng.below(2) == 0 {
            mutate_json(&mut rng, base)
        } else {
            mutate(&mut rng, base)
        };
        let exec_seed = rng.next() | 1;
        let (panicked, took, peak) = measure(t, &input, exec_seed);
        stats.execs += 1;
        let bound = (t.bound)(input.len());
        let over = |took: Duration, peak: usize| took > Duration::from_secs(1) || peak > bound;
        // A time or memory spike is confirmed by a rerun: a busy machine (another process on
        // the two cores) or a one-time initialisation inside a dependency is not the input's
        // doing. Panics need no confirmation.
        let (took, peak) = if !panicked && over(took, peak) {
            let (_, again_took, again_peak) = measure(t, &input, exec_seed);
            if !over(again_took, again_peak) {
                stats.unconfirmed += 1;
            }
            (again_took, again_peak)
        } else {
            (took, peak)
        };
        stats.slowest = stats.slowest.max(took);
        stats.peak_ratio = stats.peak_ratio.max(peak as f64 / bound as f64);
        let problem = if panicked {
            Some("panic".to_string())
        } else if took > Duration::from_secs(1) {
            Some(format!("took {took:?} (twice)"))
        } else if peak > bound {
            Some(format!("allocated {peak} bytes, bound {bound} (twice)"))
        } else {
            None
        };
        if let Some(problem) = problem {
            std::fs::create_dir_all(crashes).map_err(|e| e.to_string())?;
            let path = crashes.join(format!("{}-{}", t.name, stats.execs));
            std::fs::write(&path, &input).map_err(|e| e.to_string())?;
            return Err(format!(
                "{}: {problem} on input {} ({} bytes)",
                t.name,
                path.display(),
                input.len()
            ));
        }
    }
    Ok(stats)
}

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let flag = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let which = args.first().cloned().unwrap_or_else(|| "all".into());
    let execs: u64 = flag("--execs")
        .and_then(|v| v.parse().ok())
        .unwrap_or(u64::MAX);
    let seconds: f64 = flag("--seconds")
        .and_then(|v| v.parse().ok())
        .unwrap_or(f64::INFINITY);
    let seed: u64 = flag("--seed")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x5eed);
    let crashes = PathBuf::from(flag("--crashes").unwrap_or_else(|| "target/fuzz-crashes".into()));
    if execs == u64::MAX && seconds.is_infinite() && flag("--replay").is_none() {
        eprintln!("qins-fuzz: give --execs N or --seconds S");
        return std::process::ExitCode::from(2);
    }
    let dir = std::env::temp_dir().join(format!("qins-fuzz-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let all = targets(&dir);
    // `--replay FILE`: one input of TARGET, its panic message shown (a finding's reproduction).
    if let Some(file) = flag("--replay") {
        let input = std::fs::read(&file).unwrap_or_default();
        let t = all.iter().find(|t| t.name == which).expect("a target name");
        // Twice: a peak that only the first run shows is a one-time initialisation.
        // The panic hook is still the default one here: a panic's message is printed.
        for run in 1..=2 {
            let (panicked, took, peak) = measure(t, &input, seed | 1);
            println!(
                "{}: {file}: run {run}: {}, {took:?}, peak allocation {peak} bytes (bound {})",
                t.name,
                if panicked { "panic" } else { "no panic" },
                (t.bound)(input.len())
            );
        }
        return std::process::ExitCode::SUCCESS;
    }
    // Panics are caught and reported as findings; their default message would only be noise.
    std::panic::set_hook(Box::new(|_| {}));
    let mut failed = false;
    for t in all.iter().filter(|t| which == "all" || which == t.name) {
        match fuzz(t, execs, seconds, seed, &crashes) {
            Ok(s) => println!(
                "{{\"target\":\"{}\",\"execs\":{},\"crashes\":0,\"slowest_ms\":{:.3},\"peak_alloc_of_bound\":{:.4},\"unconfirmed_spikes\":{}}}",
                t.name,
                s.execs,
                s.slowest.as_secs_f64() * 1e3,
                s.peak_ratio,
                s.unconfirmed
            ),
            Err(e) => {
                eprintln!("qins-fuzz: {e}");
                failed = true;
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    if failed {
        std::process::ExitCode::FAILURE
    } else {
        std::process::ExitCode::SUCCESS
    }
}
