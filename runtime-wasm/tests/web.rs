//! The engine in a real browser: headless Chromium (WebGPU on SwiftShader) runs these in a
//! dedicated Web Worker, where the product runs it, against `qins-test-server` serving a tiny
//! archive and the native engine's results for it. `scripts/dev.sh test` sets it all up and
//! passes the server's URL at build time as QINS_TEST_SERVER.
#![cfg(target_arch = "wasm32")]

use js_sys::{Function, Promise, Reflect};
use qins_runtime::web::{QinsEngine, Store};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_dedicated_worker);

fn server() -> &'static str {
    match option_env!("QINS_TEST_SERVER") {
        Some(url) => url,
        None => panic!("build with QINS_TEST_SERVER=http://host:port (scripts/dev.sh test does)"),
    }
}

fn archive(name: &str) -> String {
    format!("{}/models/{name}", server())
}

fn get(v: &JsValue, key: &str) -> JsValue {
    Reflect::get(v, &key.into()).unwrap_or(JsValue::UNDEFINED)
}

fn num(v: &JsValue, key: &str) -> f64 {
    get(v, key)
        .as_f64()
        .unwrap_or_else(|| panic!("{key} missing in {v:?}"))
}

fn call(obj: &JsValue, method: &str, args: &[JsValue]) -> JsValue {
    let f: Function = get(obj, method).unchecked_into();
    let args: js_sys::Array = args.iter().collect();
    f.apply(obj, &args)
        .unwrap_or_else(|e| panic!("{method}: {e:?}"))
}

async fn wait(p: JsValue) -> Result<JsValue, JsValue> {
    JsFuture::from(p.unchecked_into::<Promise>()).await
}

async fn fetch_json(url: &str) -> JsValue {
    let resp = wait(call(&js_sys::global(), "fetch", &[url.into()]))
        .await
        .expect("fetch");
    wait(call(&resp, "json", &[])).await.expect("json")
}

/// A JS callback that records its arguments, optionally running `also` on each.
fn recorder(
    also: impl Fn(&JsValue) + 'static,
) -> (Function, std::rc::Rc<std::cell::RefCell<Vec<JsValue>>>) {
    let seen = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
    let s = seen.clone();
    let f = Closure::<dyn FnMut(JsValue)>::new(move |v: JsValue| {
        also(&v);
        s.borrow_mut().push(v);
    });
    (f.into_js_value().unchecked_into(), seen)
}

fn nothing() -> Function {
    recorder(|_| {}).0
}

fn options(json: &str) -> JsValue {
    js_sys::JSON::parse(json).unwrap()
}

async fn load_reporting(
    engine: &QinsEngine,
    url: &str,
    opts: &str,
    on_progress: Function,
) -> Result<JsValue, JsValue> {
    wait(engine.load(url.into(), options(opts), on_progress).into()).await
}

async fn load(engine: &QinsEngine, url: &str, opts: &str) -> Result<JsValue, JsValue> {
    load_reporting(engine, url, opts, nothing()).await
}

fn kind(err: &JsValue) -> String {
    get(err, "kind").as_string().unwrap_or_default()
}

/// Requests the test server has seen for `path`.
async fn requests(path: &str) -> f64 {
    let stats = fetch_json(&format!("{}/stats", server())).await;
    get(&stats, path).as_f64().unwrap_or(0.0)
}

/// The native engine's answers for `archive` (`tiny`, `tiny-lut8g`), made by `dev.sh web-test`.
async fn expected(archive_name: &str) -> JsValue {
    fetch_json(&archive(&format!("{archive_name}.expected.json"))).await
}

fn ids_of(v: &JsValue) -> Vec<u32> {
    js_sys::Array::from(v)
        .iter()
        .map(|x| x.as_f64().unwrap() as u32)
        .collect()
}

/// Greedy reply to the expected file's prompt, as token ids.
async fn greedy_reply(engine: &QinsEngine, exp: &JsValue) -> (Vec<u32>, JsValue) {
    let messages = options(&format!(
        r#"[{{"role":"user","content":{}}}]"#,
        js_sys::JSON::stringify(&get(exp, "prompt")).unwrap()
    ));
    let opts = options(&format!(
        r#"{{"temperature":0,"max_tokens":{}}}"#,
        num(exp, "max_tokens")
    ));
    let (on_token, tokens) = recorder(|_| {});
    let stats = wait(engine.generate(messages, opts, on_token).into())
        .await
        .expect("generate");
    let ids = tokens
        .borrow()
        .iter()
        .map(|t| num(t, "id") as u32)
        .collect();
    (ids, stats)
}

async fn assert_matches_native(engine: &QinsEngine) {
    assert_matches_native_on(engine, "tiny").await
}

async fn assert_matches_native_on(engine: &QinsEngine, archive_name: &str) {
    let exp = expected(archive_name).await;
    let ids = ids_of(&get(&exp, "logits_ids"));
    let want: Vec<f32> = js_sys::Array::from(&get(&exp, "logits"))
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect();
    let got: Vec<f32> = wait(engine.logits(ids).into())
        .await
        .expect("logits")
        .unchecked_into::<js_sys::Float32Array>()
        .to_vec();
    assert_eq!(got.len(), want.len());
    let worst = got
        .iter()
        .zip(&want)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(worst < 1e-3, "browser logits differ from native by {worst}");
    let (reply, stats) = greedy_reply(engine, &exp).await;
    assert_eq!(reply, ids_of(&get(&exp, "greedy_ids")), "greedy reply");
    assert_eq!(num(&stats, "generated_tokens") as usize, reply.len());
}

#[wasm_bindgen_test]
async fn loads_over_http_and_matches_the_native_engine() {
    let engine = QinsEngine::new();
    let (on_progress, events) = recorder(|_| {});
    let info = load_reporting(
        &engine,
        &archive("tiny.qins"),
        r#"{"cache":false}"#,
        on_progress,
    )
    .await
    .expect("load");
    assert_eq!(get(&info, "from_cache"), JsValue::FALSE);
    assert!(num(&info, "peak_wasm_bytes") > 0.0);
    assert!(num(&info, "gpu_bytes") > 0.0);
    assert_eq!(get(&info, "architecture").as_string().unwrap(), "llama");
    assert_eq!(get(&info, "backend").as_string().unwrap(), "webgpu");
    assert!(get(&info, "cpu_fallback").is_undefined());

    let events = events.borrow().clone();
    let network: Vec<&JsValue> = events
        .iter()
        .filter(|e| get(e, "stage").as_string().as_deref() == Some("network"))
        .collect();
    assert!(!network.is_empty(), "no download progress: {events:?}");
    let done: Vec<f64> = network.iter().map(|e| num(e, "bytes_done")).collect();
    assert!(
        done.windows(2).all(|w| w[0] <= w[1]),
        "out of order: {done:?}"
    );
    let last = network.last().unwrap();
    assert_eq!(
        num(last, "bytes_done"),
        num(last, "bytes_total"),
        "ends at 100 %"
    );
    assert_eq!(num(last, "bytes_done"), num(&info, "archive_bytes"));
    assert_eq!(num(last, "tensors_done"), num(last, "tensors_total"));
    let stages: Vec<String> = events
        .iter()
        .map(|e| get(e, "stage").as_string().unwrap())
        .collect();
    assert_eq!(stages.last().unwrap(), "build", "{stages:?}");

    assert_matches_native(&engine).await;
}

/// The kernel variants kept for A/B runs compile in the browser's WGSL compiler and give the
/// native engine's logits and greedy reply: split decode attention, unfused norms, 16-byte
/// code loads, prompts through the mat-vec kernels; then prompts through the 64 × 64 tiles and
/// decode mat-vecs of 8 rows a workgroup.
#[wasm_bindgen_test]
async fn the_a_b_kernel_variants_match_the_native_engine() {
    for options in [
        r#"{"cache":false,"decode_attention":"split","no_fusion":true,"decode_loads":"vec4","prefill":"rows"}"#,
        r#"{"cache":false,"prefill":"tiled64","decode_rows":8}"#,
    ] {
        let engine = QinsEngine::new();
        load(&engine, &archive("tiny.qins"), options)
            .await
            .unwrap_or_else(|e| panic!("load with {options}: {e:?}"));
        assert_matches_native(&engine).await;
    }
}

/// The CPU engine in wasm, no GPU involved: the archive's codes kept as stored, the native
/// engine's logits and greedy reply.
#[wasm_bindgen_test]
async fn the_cpu_engine_runs_in_wasm_and_matches_the_native_engine() {
    let engine = QinsEngine::new();
    let info = load(
        &engine,
        &archive("tiny.qins"),
        r#"{"cache":false,"backend":"cpu"}"#,
    )
    .await
    .expect("load on the CPU");
    assert_eq!(get(&info, "backend").as_string().unwrap(), "cpu");
    assert_eq!(get(&info, "cpu_kernels").as_string().unwrap(), "simd128");
    assert_eq!(num(&info, "gpu_bytes"), 0.0);
    assert_matches_native(&engine).await;
}

/// The default codec's grouped 8-bit codes have their levels expanded at load within the wasm
/// memory left beside the codes and the KV cache: with room, every multiplied matrix's (the
/// tied embedding included); with none (a limit of exactly what the model needs), none, the
/// codes looked up as stored; none with `no_expand`. The first two give the native engine's
/// logits and greedy reply.
#[wasm_bindgen_test]
async fn the_cpu_engine_expands_8_bit_levels_within_the_memory_left() {
    let engine = QinsEngine::new();
    let url = archive("tiny-lut8g.qins");
    let info = load(&engine, &url, r#"{"cache":false,"backend":"cpu"}"#)
        .await
        .expect("load on the CPU");
    // Every weight but the norms' (two a layer and the final one, 64 wide in tiny-llama).
    let norms = (2.0 * num(&info, "layers") + 1.0) * 64.0;
    let matrices = num(&info, "params") - norms;
    assert_eq!(num(&info, "expanded_bytes"), 2.0 * matrices);
    assert_matches_native_on(&engine, "tiny-lut8g").await;

    let over = r#"{"cache":false,"backend":"cpu","wasm_memory_limit":1000}"#;
    let err = load(&engine, &url, over).await.expect_err("over the limit");
    assert_eq!(kind(&err), "memory-limit", "{err:?}");
    assert_eq!(num(&err, "available"), 1000.0);
    let needed = num(&err, "needed");
    let exact = format!(r#"{{"cache":false,"backend":"cpu","wasm_memory_limit":{needed}}}"#);
    let info = load(&engine, &url, &exact)
        .await
        .expect("a model within the limit loads");
    assert_eq!(num(&info, "expanded_bytes"), 0.0);
    assert_matches_native_on(&engine, "tiny-lut8g").await;

    // Asked not to: the codes as stored, whatever the room.
    let info = load(
        &engine,
        &url,
        r#"{"cache":false,"backend":"cpu","no_expand":true}"#,
    )
    .await
    .expect("load on the CPU without expanding");
    assert_eq!(num(&info, "expanded_bytes"), 0.0);
}

/// Every kernel set of this wasm build (SIMD128) against the portable one, on odd shapes
/// (remainders of 4, 8 and 16 columns, groups of 6 and 12) and batches, for every codec.
#[wasm_bindgen_test]
fn the_wasm_simd_kernels_match_the_portable_ones() {
    use qins_runtime::codec::{encode, Codec};
    use qins_runtime::cpu::packed::{Kernels, PackedMatrix};
    let sets = Kernels::available();
    assert!(
        sets.iter().any(|k| k.name == "simd128"),
        "built without SIMD128"
    );
    let values = |n: usize, seed: u32| -> Vec<f32> {
        (0..n as u32)
            .map(|i| ((i.wrapping_mul(2654435761) ^ seed) % 2001) as f32 / 1000.0 - 1.0)
            .map(|u| u * u * u + if u > 0.99 { 6.0 } else { 0.0 })
            .collect()
    };
    let codecs = [
        ("f32", 32),
        ("f16", 32),
        ("qins8", 32),
        ("lut8", 32),
        ("int8", 32),
        ("lut8g", 32),
        ("lut8g", 12),
        ("lut8a", 32),
        ("lut4", 32),
        ("lut4", 6),
        ("lut4a", 32),
        ("int4", 6),
        ("lut4", 64),
    ];
    for (name, group) in codecs {
        let codec = Codec::from_name(name, group).unwrap();
        // Columns in whole blocks of 32 take the integer kernels for 4-bit codes.
        for (rows, cols) in [
            (1, 1),
            (3, 7),
            (33, 65),
            (5, 131),
            (64, 31),
            (3, 64),
            (9, 576),
        ] {
            let (bytes, _) = encode(codec, &values(rows * cols, 3), rows, cols).unwrap();
            let m = PackedMatrix::new(codec, rows, cols, &bytes).unwrap();
            // One token, and the integer kernels' 2-, 1- and 4-token passes.
            for n in [1, 3, 5] {
                let x = values(n * cols, 5 + n as u32);
                let exact = m.matmul_t_with(&Kernels::PORTABLE, &x, n);
                let integer = m.matmul_t_with(&Kernels::portable_integer(), &x, n);
                for k in &sets {
                    // An 8-bit integer kernel quantizes the activations as the portable one
                    // does; it takes prompts here too, to test its passes of several tokens.
                    let k = &Kernels {
                        row8_q16_prompts_below: usize::MAX,
                        ..*k
                    };
                    let want = if k.row8_q16.is_some() {
                        &integer
                    } else {
                        &exact
                    };
                    // The levels expanded at load, where the set expands these codes: the
                    // same integers as the portable 8-bit kernel's lookups.
                    let mut e = PackedMatrix::new(codec, rows, cols, &bytes).unwrap();
                    let expanded = e.expand_levels(k, usize::MAX) > 0;
                    let expands = k.rows8_expanded.is_some()
                        && codec.code_bits() == 8
                        && codec.group() == Some(32)
                        && cols % 32 == 0;
                    assert_eq!(expanded, expands, "{} {name}/{group} {rows}x{cols}", k.name);
                    let mut runs = vec![(m.matmul_t_with(k, &x, n), want, "codes")];
                    if expanded {
                        runs.push((e.matmul_t_with(k, &x, n), &integer, "expanded"));
                    }
                    for (got, want, kind) in runs {
                        for (g, w) in got.iter().zip(want) {
                            let tol = 1e-4 * (1.0 + w.abs()) * (cols as f32).sqrt();
                            assert!(
                                (g - w).abs() <= tol,
                                "{} ({kind}) {name}/{group} {rows}x{cols} n={n}: {g} vs {w}",
                                k.name
                            );
                        }
                    }
                }
            }
        }
    }
}

/// The SIMD128 8-bit kernels' i32 sums hold the largest products (levels ±16383 times
/// activations 32767), codes and expanded levels alike: the native tests' check.
#[wasm_bindgen_test]
fn the_8_bit_integer_kernels_hold_the_largest_products() {
    use qins_runtime::cpu::packed::{checks, Kernels};
    checks::assert_8_bit_kernels_hold_the_largest_products(Kernels::best());
}

/// A model whose weights and KV cache cannot fit the tab's WebAssembly memory is refused as
/// soon as its manifest is read, and the engine stays usable.
#[wasm_bindgen_test]
async fn a_model_too_big_for_wasm_memory_is_refused_before_its_tensors() {
    let engine = QinsEngine::new();
    let url = archive("tiny.qins");
    let err = load(
        &engine,
        &url,
        r#"{"cache":false,"backend":"cpu","wasm_memory_limit":1000}"#,
    )
    .await
    .expect_err("a model over the limit is refused");
    assert_eq!(kind(&err), "memory-limit", "{err:?}");
    let message = get(&err, "message").as_string().unwrap();
    assert!(message.contains("WebAssembly memory"), "{message}");
    let info = load(&engine, &url, r#"{"cache":false,"backend":"cpu"}"#)
        .await
        .expect("the engine loads after a refusal");
    assert_eq!(get(&info, "backend").as_string().unwrap(), "cpu");
}

#[wasm_bindgen_test]
async fn load_options_are_checked_and_f16_compute_applies_only_with_shader_f16() {
    let engine = QinsEngine::new();
    for bad in [
        r#"{"compute":"f8"}"#,
        r#"{"kv_cache":"f8"}"#,
        r#"{"decode_attention":"paged"}"#,
        r#"{"no_fusion":"yes"}"#,
    ] {
        let err = load(&engine, &archive("tiny.qins"), bad)
            .await
            .expect_err(bad);
        assert_eq!(kind(&err), "bad-request", "{bad}");
    }
    let info = load(
        &engine,
        &archive("tiny.qins"),
        r#"{"cache":false,"compute":"f16"}"#,
    )
    .await
    .expect("load with compute f16");
    let f16 = get(&get(&info, "adapter"), "shader_f16") == JsValue::TRUE;
    assert_eq!(
        get(&info, "precision").as_string().unwrap(),
        if f16 { "f16" } else { "f32" }
    );
    assert_matches_native(&engine).await;
}

#[wasm_bindgen_test]
async fn abort_mid_load_and_mid_generation_leaves_the_engine_usable() {
    let engine = std::rc::Rc::new(QinsEngine::new());
    let e = engine.clone();
    let (on_progress, _) = recorder(move |_| e.abort());
    let err = load_reporting(
        &engine,
        &archive("tiny.qins"),
        r#"{"cache":false}"#,
        on_progress,
    )
    .await
    .expect_err("an aborted load must fail");
    assert_eq!(kind(&err), "aborted");
    assert!(engine.info().is_null(), "no half-loaded model");

    load(&engine, &archive("tiny.qins"), r#"{"cache":false}"#)
        .await
        .expect("load after abort");
    let e = engine.clone();
    let (on_token, tokens) = recorder(move |_| e.abort());
    let stats = wait(
        engine
            .complete(
                vec![1, 5, 9],
                options(r#"{"temperature":0,"max_tokens":20}"#),
                on_token,
            )
            .into(),
    )
    .await
    .expect("an aborted generation resolves");
    assert_eq!(get(&stats, "stop_reason").as_string().unwrap(), "aborted");
    assert_eq!(tokens.borrow().len(), 1);
    assert_matches_native(&engine).await;
}

#[wasm_bindgen_test]
async fn a_corrupted_archive_is_refused_with_a_checksum_error() {
    let engine = QinsEngine::new();
    let err = load(&engine, &archive("tiny-corrupt.qins"), r#"{"cache":false}"#)
        .await
        .expect_err("corrupt archive");
    assert_eq!(kind(&err), "checksum", "{err:?}");
    let err = load(&engine, &archive("missing.qins"), r#"{"cache":false}"#)
        .await
        .expect_err("missing archive");
    assert_eq!(kind(&err), "http", "{err:?}");
}

async fn store() -> Store {
    Store::open().await.expect("the Origin Private File System")
}

async fn is_stored(url: &str) -> bool {
    store()
        .await
        .list()
        .await
        .unwrap()
        .iter()
        .any(|(u, _)| u == url)
}

#[wasm_bindgen_test]
async fn a_second_load_is_served_from_the_store() {
    let url = format!("{}?second-load", archive("tiny.qins"));
    store().await.delete(&url).await.unwrap();
    let engine = QinsEngine::new();
    let first = load(&engine, &url, "{}").await.expect("first load");
    assert_eq!(get(&first, "from_cache"), JsValue::FALSE);
    assert_eq!(get(&first, "cache").as_string().unwrap(), "stored");
    assert!(is_stored(&url).await, "stored when the load resolves");

    let before = requests("/models/tiny.qins").await;
    let second = load(&engine, &url, "{}").await.expect("second load");
    assert_eq!(get(&second, "from_cache"), JsValue::TRUE);
    assert_eq!(
        requests("/models/tiny.qins").await,
        before,
        "no network request"
    );
    assert_matches_native(&engine).await;
    assert!(store().await.delete(&url).await.unwrap());
    assert!(!is_stored(&url).await);
}

#[wasm_bindgen_test]
async fn a_damaged_stored_copy_is_fetched_again() {
    let url = format!("{}?damaged-copy", archive("tiny.qins"));
    let engine = QinsEngine::new();
    load(&engine, &url, "{}").await.expect("first load");
    store().await.damage_for_test(&url).await.unwrap();
    let before = requests("/models/tiny.qins").await;
    let info = load(&engine, &url, "{}")
        .await
        .expect("load despite the bad copy");
    assert_eq!(get(&info, "from_cache"), JsValue::FALSE);
    assert_eq!(requests("/models/tiny.qins").await, before + 1.0);
    assert_matches_native(&engine).await;
    // The good copy took the damaged one's place.
    let again = load(&engine, &url, "{}").await.expect("third load");
    assert_eq!(get(&again, "from_cache"), JsValue::TRUE);
}

#[wasm_bindgen_test]
async fn a_resumed_download_is_not_stored() {
    let url = format!("{}/flaky/tiny.qins?not-stored", server());
    let engine = QinsEngine::new();
    let info = load(&engine, &url, "{}").await.expect("resumed load");
    assert_eq!(
        get(&info, "cache").as_string().unwrap(),
        "not stored: the download was resumed"
    );
    assert!(!is_stored(&url).await);
}

#[wasm_bindgen_test]
async fn a_dropped_download_resumes_with_a_range_request() {
    let url = format!("{}/flaky/tiny.qins", server());
    let engine = QinsEngine::new();
    let info = load(&engine, &url, r#"{"cache":false}"#)
        .await
        .expect("resumed load");
    assert!(num(&info, "resumes") >= 1.0, "{info:?}");
    assert_matches_native(&engine).await;
}

/// 200 turns on a 96-position context: every turn is answered, the oldest turns leave the
/// model's view (reported as `dropped_messages`), and a message longer than the context is
/// refused with `context-full` without ending the conversation.
#[wasm_bindgen_test]
async fn a_long_conversation_keeps_going_past_the_context() {
    let engine = QinsEngine::new();
    load(
        &engine,
        &archive("tiny.qins"),
        r#"{"cache":false,"max_context":96}"#,
    )
    .await
    .expect("load");
    let mut turns: Vec<(String, String)> = Vec::new();
    let mut start = 0; // the first turn the model still sees, as the page keeps it
    let mut dropped_any = false;
    for i in 0..200 {
        let content = if i == 100 {
            "word ".repeat(200)
        } else {
            format!("turn number {i}")
        };
        turns.push(("user".into(), content));
        let messages: Vec<serde_json::Value> =
            std::iter::once(serde_json::json!({"role": "system", "content": "Be brief."}))
                .chain(
                    turns[start..]
                        .iter()
                        .map(|(r, c)| serde_json::json!({"role": r, "content": c})),
                )
                .collect();
        let (on_token, tokens) = recorder(|_| {});
        let result = wait(
            engine
                .generate(
                    options(&serde_json::to_string(&messages).unwrap()),
                    options(r#"{"max_tokens":4,"ignore_eos":true}"#),
                    on_token,
                )
                .into(),
        )
        .await;
        if i == 100 {
            let err = result.expect_err("a message longer than the context");
            assert_eq!(kind(&err), "context-full");
            turns.pop();
            continue;
        }
        let stats = result.unwrap_or_else(|e| panic!("turn {i}: {e:?}"));
        assert_eq!(num(&stats, "generated_tokens"), 4.0, "turn {i}");
        let dropped = num(&stats, "dropped_messages") as usize;
        dropped_any |= dropped > 0;
        start += dropped;
        let text: String = tokens
            .borrow()
            .iter()
            .filter_map(|t| get(t, "text").as_string())
            .collect();
        turns.push(("assistant".into(), text));
    }
    assert!(dropped_any, "a 96-position context cannot hold 200 turns");
    assert!(
        start > 100,
        "the model's view moved on: it starts at turn {start}"
    );
}

/// The GPU device lost mid-generation (destroyed through the test hook, as a driver reset
/// would): the reply rejects with kind "device-lost", the model is unloaded, and loading it
/// again works and answers as before.
#[wasm_bindgen_test]
async fn a_device_lost_mid_generation_rejects_and_a_reload_works() {
    let engine = std::rc::Rc::new(QinsEngine::new());
    load(&engine, &archive("tiny.qins"), r#"{"cache":false}"#)
        .await
        .expect("load");
    let e = engine.clone();
    let (on_token, tokens) = recorder(move |_| e.lose_device_for_test());
    let err = wait(
        engine
            .complete(
                vec![1, 5, 9],
                options(r#"{"temperature":0,"max_tokens":20,"ignore_eos":true}"#),
                on_token,
            )
            .into(),
    )
    .await
    .expect_err("a generation on a lost device must fail");
    assert_eq!(kind(&err), "device-lost", "{err:?}");
    assert_eq!(tokens.borrow().len(), 1, "nothing after the loss");
    assert!(engine.info().is_null(), "the lost model is unloaded");
    let err = wait(engine.complete(vec![1], JsValue::NULL, nothing()).into())
        .await
        .expect_err("no model");
    assert_eq!(kind(&err), "not-loaded");
    load(&engine, &archive("tiny.qins"), r#"{"cache":false}"#)
        .await
        .expect("reload after the loss");
    assert_matches_native(&engine).await;
}

/// A load that needs more than the adapter allows (here: one binding capped at 64 bytes, less than a codebook) is
/// refused with kind "adapter-limit" before anything is kept, and the engine loads normally
/// after.
#[wasm_bindgen_test]
async fn a_load_beyond_the_adapter_limits_is_refused_and_the_engine_stays_usable() {
    let engine = QinsEngine::new();
    let err = load(
        &engine,
        &archive("tiny.qins"),
        r#"{"cache":false,"max_binding":64}"#,
    )
    .await
    .expect_err("a 64-byte binding cannot hold a codebook");
    assert_eq!(kind(&err), "adapter-limit", "{err:?}");
    assert!(
        engine.info().is_null(),
        "nothing kept from the refused load"
    );
    load(&engine, &archive("tiny.qins"), r#"{"cache":false}"#)
        .await
        .expect("load after the refusal");
    assert_matches_native(&engine).await;
}
