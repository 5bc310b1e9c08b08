// Driven by scripts/web_bench.mjs (Playwright); also works opened by hand.
import { QinsClient } from "./qins-client.js";

const PROMPT = "Write a short story about a robot who learns to paint.";


async function run() {
  const q = new URLSearchParams(location.search);
  const model = new URL(q.get("model"), location.href).href;
  const tokens = Number(q.get("tokens") ?? 32);
  // "auto" (WebGPU), or "cpu": the CPU engine in wasm (one thread).
  const backend = q.get("backend") || "auto";
  // Kernel variants for A/B runs (docs/WEB_API.md's load options), passed on when given.
  const options = { cache: true, backend };
  for (const key of ["prefill", "decode_loads", "compute", "decode_attention"]) {
    if (q.has(key)) options[key] = q.get(key);
  }
  if (q.has("no_fusion")) options.no_fusion = q.get("no_fusion") === "true";
  if (q.has("prefill_batch")) options.prefill_batch = Number(q.get("prefill_batch"));
  const out = { model, tokens, backend, options };
  const qins = new QinsClient();
  await qins.deleteCachedArchive(model);
  let t = performance.now();
  let events = 0;
  const first = await qins.load(model, options, () => events++);
  out.first_load_ms = performance.now() - t;
  out.progress_events = events;
  out.info = first;
  out.stored = first.cache;
  t = performance.now();
  const second = await qins.load(model, options);
  out.cached_load_ms = performance.now() - t;
  out.second_from_cache = second.from_cache;
  // Where each load's time went (docs/WEB_API.md, load_stages).
  out.network_stages = first.load_stages;
  out.cached_stages = second.load_stages;
  out.peak_wasm_bytes = second.peak_wasm_bytes;
  // tokens=0: a load-only run (the load stages of a big archive on a software GPU).
  if (tokens === 0) return out;
  let text = "";
  out.stats = await qins.generate(
    [{ role: "user", content: PROMPT }],
    { temperature: 0, max_tokens: tokens, ignore_eos: true },
    (tok) => (text += tok.text || ""),
  );
  out.text = text;
  return out;
}

run()
  .catch((e) => ({ error: { kind: e.kind || "page", message: String(e.message || e) } }))
  .then((out) => {
    window.qinsBench = out;
    document.getElementById("out").textContent = JSON.stringify(out, null, 2);
    console.log("QINS_BENCH " + JSON.stringify(out));
  });
