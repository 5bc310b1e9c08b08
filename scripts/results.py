#!/usr/bin/env python3
"""Regenerates the generated sections of docs/RESULTS.md, docs/results.json, docs/quality.svg and
docs/speed.svg on this machine:
- quality: every codec of qins against llama.cpp's formats on SmolLM2-135M-Instruct, scored on
  the same tokens (data/corpus/dev.txt, ctx 512) against the f32 archive of the same weights;
- speed: SmolLM2 on the CPU reference, on this machine's wgpu adapter (lavapipe here), in
  headless Chromium (WebGPU) and llama.cpp as the peer, same prompt; mat-vec GB/s vs copy GB/s.

  python3 scripts/results.py [--max-chunks 12] [--skip-speed | --skip-quality] [--skip-browser]
  python3 scripts/results.py --model qwen2.5-coder-0.5b [--max-chunks 6]
      the same quality table for Qwen2.5-Coder-0.5B-Instruct (its own section of RESULTS.md and
      docs/results-qwen2.5-coder-0.5b.json; llama.cpp's IQ4_NL added; no speed part)
  python3 scripts/results.py --load [--phi-layers 2] [--skip-browser]
      only the load-stage table (docs/results-load.json and its section of RESULTS.md): where each
      load's time goes natively (`qins-run --bench-load`) and in headless Chromium (`dev.sh
      web-bench`), for SmolLM2 lut8g, Qwen2.5 lut8g when its archive exists and a Phi-3.5-mini-shaped
      lut8g archive of --phi-layers layers (converted here, the conversion timed); ~10 min

Needs the release binaries' sources (it builds them), the model (fetched by scripts/dev.sh),
llama-cpp-python for the llama.cpp rows (`pip install llama-cpp-python`; skipped if missing)
and Chromium + node for the browser row (`./scripts/dev.sh web-bench` sets them up). Takes about
half an hour on a 2-core machine.
"""
import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GGUF = os.path.join(ROOT, "models", "SmolLM2-135M-Instruct.Q4_1.gguf")
CACHE = os.path.join(os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "qins")

# The models the quality table is made for: where the GGUF is, what the table says of it.
MODELS = {
    "smollm2": {
        "gguf": GGUF, "section": "quality", "json": "results.json", "svg": "quality.svg",
        "synthetic": "smollm2-135m", "llama_types": "Q8_0,Q4_K_M,Q4_1,Q4_0",
        "description": "SmolLM2-135M-Instruct (Q4_1 GGUF, dequantized = the f32 reference)",
        "caveat": "(SmolLM2's 576-wide rows make Q4_K_M fall back to wider types for most tensors). "
        "**Caveat**: the source weights already sit on llama.cpp grids — every matrix on Q4_1 (4-bit, 32-weight groups "
        "with an f16 step and minimum), the embedding/output head on Q8_0 (8-bit, 32-weight groups) — so formats that "
        "can land on those grids (lut4a-g32, lut8g-g32, and llama.cpp's own Q4_1 and Q8_0) reproduce them almost "
        "exactly; \"off-grid SQNR\" is the same codec on bell-shaped random weights in SmolLM2's shapes (4 layers), "
        "which no grid favours.",
    },
    "qwen2.5-coder-0.5b": {
        "gguf": os.path.join(CACHE, "qwen2.5-coder-0.5b-instruct.gguf"), "section": "quality-qwen",
        "json": "results-qwen2.5-coder-0.5b.json", "svg": "quality-qwen.svg", "synthetic": None,
        "llama_types": "Q8_0,Q4_K_M,Q4_1,Q4_0,IQ4_NL",
        "description": "Qwen2.5-Coder-0.5B-Instruct (mostly Q5_0 GGUF, dequantized = the f32 reference)",
        "caveat": "(on this model Q4_K_M's 896-wide rows fall back to Q5_0 for most matrices — the source's own "
        "grid, which flatters it as Q4_1 flattered lut4a on SmolLM2). The source is mostly Q5_0 (5-bit, one scale per 32), "
        "ffn_down Q4_K/Q6_K, the output head Q8_0: no 4-bit format here lands on its grid.",
    },
}
TEXT = os.path.join(ROOT, "data", "corpus", "dev.txt")
CALIB = os.path.join(ROOT, "data", "corpus", "calib.txt")
BIN = os.path.join(ROOT, "target", "release")
WORK = os.path.join(ROOT, "models", "results")

# name, qins-convert arguments
CODECS = [
    ("f32", ["--codec", "f32"]),
    ("lut8", ["--codec", "lut8"]),
    ("lut8g-g32", ["--codec", "lut8g", "--group", "32"]),
    ("qins8", ["--codec", "qins8"]),
    ("lut4-g32", ["--codec", "lut4", "--group", "32"]),
    ("lut4-g64", ["--codec", "lut4", "--group", "64"]),
    ("lut4-g128", ["--codec", "lut4", "--group", "128"]),
    ("lut4a-g32", ["--codec", "lut4a", "--group", "32"]),
    ("lut4a-g32 + lut8g-g32 embedding", ["--codec", "lut4a", "--group", "32", "--embed-codec", "lut8g"]),
    # llama.cpp's 4-bit file types keep the output head at Q8_0 (Q6_K where rows are a multiple
    # of 256): the same layout, unweighted and weighted by a calibration text apart from TEXT.
    ("lut4-g32 + lut8g-g32 head", ["--codec", "lut4", "--group", "32", "--output-codec", "lut8g"]),
    ("lut4-g32 + lut8g-g32 head, calibrated", ["--codec", "lut4", "--group", "32", "--output-codec", "lut8g",
                                               "--calibration", CALIB]),
    ("lut4a-g32 + lut8g-g32 head", ["--codec", "lut4a", "--group", "32", "--output-codec", "lut8g"]),
    ("lut4a-g32 + lut8g-g32 head, calibrated", ["--codec", "lut4a", "--group", "32", "--output-codec", "lut8g",
                                                "--calibration", CALIB]),
    ("int8 (uniform baseline)", ["--codec", "int8"]),
    ("int4-g32 (uniform baseline)", ["--codec", "int4", "--group", "32"]),
]


def cpu_name():
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def versions():
    """The toolchain and peers the figures came from."""
    out = lambda cmd: subprocess.run(cmd, capture_output=True, text=True).stdout.split(" ", 1)[-1].strip()
    v = {"qins-run": out([os.path.join(BIN, "qins-run"), "--version"]), "rustc": out(["rustc", "--version"])}
    try:
        import llama_cpp
        v["llama-cpp-python"] = llama_cpp.__version__
    except ImportError:
        pass
    return v


def run(cmd):
    print("+", " ".join(cmd), file=sys.stderr, flush=True)
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        sys.stderr.write(p.stderr[-4000:])
        raise SystemExit(f"failed ({p.returncode}): {' '.join(cmd)}")
    return p.stdout


def svg_plot(rows, path):
    """bits/weight vs mean KL divergence (log scale), one point per format."""
    import math
    pts = [r for r in rows if r["kld"] and r["kld"] > 0 and r["bpw"]]
    w, h, m = 720, 420, 60
    xs = [r["bpw"] for r in pts]
    ks = [math.log10(r["kld"]) for r in pts]
    x0, x1 = min(xs) - 0.5, max(xs) + 0.5
    k0, k1 = math.floor(min(ks)), math.ceil(max(ks))
    X = lambda v: m + (v - x0) / (x1 - x0) * (w - 2 * m)
    Y = lambda v: h - m - (v - k0) / (k1 - k0) * (h - 2 * m)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12">',
           f'<rect width="{w}" height="{h}" fill="white"/>',
           f'<line x1="{m}" y1="{h-m}" x2="{w-m}" y2="{h-m}" stroke="black"/>',
           f'<line x1="{m}" y1="{m}" x2="{m}" y2="{h-m}" stroke="black"/>',
           f'<text x="{w/2}" y="{h-15}" text-anchor="middle">bits per weight (matrices; llama.cpp: whole file)</text>',
           f'<text x="15" y="{h/2}" transform="rotate(-90 15 {h/2})" text-anchor="middle">mean KL divergence vs f32 (log)</text>',
           '<text x="360" y="25" text-anchor="middle" font-size="14">SmolLM2-135M-Instruct: size vs quality</text>']
    for k in range(k0, k1 + 1):
        out.append(f'<text x="{m-8}" y="{Y(k)+4}" text-anchor="end">1e{k}</text>')
        out.append(f'<line x1="{m}" y1="{Y(k)}" x2="{w-m}" y2="{Y(k)}" stroke="#ddd"/>')
    for b in range(int(x0) + 1, int(x1) + 1):
        out.append(f'<text x="{X(b)}" y="{h-m+16}" text-anchor="middle">{b}</text>')
    for r, x, k in zip(pts, xs, ks):
        color = "#c0392b" if r["name"].startswith("llama.cpp") else "#2471a3"
        out.append(f'<circle cx="{X(x):.1f}" cy="{Y(k):.1f}" r="5" fill="{color}"/>')
        out.append(f'<text x="{X(x)+8:.1f}" y="{Y(k)-6:.1f}">{r["name"]}</text>')
    out.append("</svg>")
    open(path, "w").write("\n".join(out))


def last_json(text, key=None):
    """The last line of `text` that is a JSON object (holding `key` when given)."""
    for line in reversed(text.strip().splitlines()):
        if line.startswith("{"):
            obj = json.loads(line)
            if key is None or key in obj:
                return obj
    raise ValueError(f"no JSON object{' with ' + key if key else ''} in output")


def speed(a, log):
    """Decode/prefill speed of SmolLM2 (lut8g, the default codec, and f32) per backend, with llama.cpp as the peer,
    and the mat-vec kernels' GB/s next to a copy kernel's on this machine's adapter."""
    rows = []
    # The default codec (lut8g-g32) on each backend; f32 as the CPU oracle.
    f32, lut8g = os.path.join(WORK, "f32.qins"), os.path.join(WORK, "lut8g-g32.qins")
    lut4a = os.path.join(WORK, "lut4a-g32.qins")
    for name, model, backend, tokens in [("qins f32 · CPU reference", f32, "reference", 64),
                                         ("qins lut8g · CPU reference", lut8g, "reference", 64),
                                         ("qins lut8g · CPU", lut8g, "cpu", 64),
                                         ("qins lut4a · CPU", lut4a, "cpu", 64),
                                         ("qins lut8g · wgpu native", lut8g, "gpu", 8)]:
        if not os.path.exists(model):
            log(f"{model} missing: {name} skipped")
            continue
        r = last_json(run([os.path.join(BIN, "qins-run"), model, "--backend", backend, "--bench",
                           "--max-tokens", str(tokens)]))
        # The CPU rows name their kernel set: AVX-512 and AVX2-only machines differ by 2-3x on lut8g.
        kernels = (r.get("engine") or {}).get("cpu_kernels")
        adapter = r.get("adapter") or (f"CPU ({kernels})" if kernels else "CPU")
        rows.append({"name": name, "where": adapter if isinstance(adapter, str) else json.dumps(adapter),
                     "load_ms": r["load_s"] * 1e3, "cached_load_ms": None, "prefill_tok_s": r["prefill_tok_s"],
                     "ttft_ms": r["ttft_ms"], "decode_tok_s": r["decode_tok_s"], "tokens": tokens,
                     "mem_mb": (r.get("rss_bytes") or 0) / 1e6 or None})
    if not a.skip_browser:
        out = run([os.path.join(ROOT, "scripts", "dev.sh"), "web-bench", lut8g, str(a.browser_tokens)])
        r = last_json(out, "first_load_ms")
        st, info = r["stats"], r.get("info", {})
        adapter = info.get("adapter") or {}
        browser = adapter.get("browser") or {}
        gpu = adapter.get("name") or " ".join(v for v in (browser.get("vendor"), browser.get("architecture")) if v) \
            or "WebGPU adapter"
        rows.append({"name": "qins lut8g · headless Chromium (WebGPU)", "where": gpu,
                     "load_ms": r["first_load_ms"], "cached_load_ms": r["cached_load_ms"],
                     "prefill_tok_s": st["prefill_tok_s"], "ttft_ms": st["ttft_ms"],
                     "decode_tok_s": st["decode_tok_s"], "tokens": st["generated_tokens"],
                     "mem_mb": r.get("peak_wasm_bytes", 0) / 1e6})
        # The CPU engine in wasm (no WebGPU involved, one thread) next to the native one on one thread.
        for name, model in (("lut8g", lut8g), ("lut4a", lut4a)):
            out = run([os.path.join(ROOT, "scripts", "dev.sh"), "web-bench", model, "64", "cpu"])
            r, native = last_json(out, "first_load_ms"), last_json(out)
            st = r["stats"]
            rows.append({"name": f"qins {name} · headless Chromium, CPU engine (wasm, 1 thread)", "where": "CPU",
                         "load_ms": r["first_load_ms"], "cached_load_ms": r["cached_load_ms"],
                         "prefill_tok_s": st["prefill_tok_s"], "ttft_ms": st["ttft_ms"],
                         "decode_tok_s": st["decode_tok_s"], "tokens": st["generated_tokens"],
                         "mem_mb": r.get("peak_wasm_bytes", 0) / 1e6})
            rows.append({"name": f"qins {name} · CPU, 1 thread", "where": "CPU", "load_ms": native["load_s"] * 1e3,
                         "cached_load_ms": None, "prefill_tok_s": native["prefill_tok_s"],
                         "ttft_ms": native["ttft_ms"], "decode_tok_s": native["decode_tok_s"],
                         "tokens": native["generated_tokens"], "mem_mb": (native.get("rss_bytes") or 0) / 1e6 or None})
    try:
        import llama_cpp  # noqa: F401
        out = run([sys.executable, os.path.join(ROOT, "scripts", "llamacpp_speed.py"), GGUF, "F32", "Q8_0", "Q4_1"])
        for line in out.splitlines():
            r = json.loads(line)
            rows.append({"name": r["name"] + " (peer)", "where": "CPU", "load_ms": None, "cached_load_ms": None,
                         "prefill_tok_s": r["prefill_tok_s"], "ttft_ms": r["ttft_ms"],
                         "decode_tok_s": r["decode_tok_s"], "tokens": 64, "mem_mb": None})
    except ImportError:
        log("llama-cpp-python missing: llama.cpp speed rows skipped")
    bench = json.loads(run([os.path.join(BIN, "qins-bench"), "--small", "--iters", "10", "--reps", "1",
                            "--batch", "0", "--json", "--codecs", "lut8g,lut8,lut4a,f16"]))
    return rows, bench


def speed_section(rows, bench, meta):
    table = ["| engine | device | load ms | cached load ms | prefill tok/s | TTFT ms | decode tok/s | tokens | memory MB |",
             "|--------|--------|--------:|---------------:|--------------:|--------:|-------------:|-------:|----------:|"]
    num = lambda v, f="{:.1f}": "—" if v is None else f.format(v)
    for r in rows:
        table.append(f'| {r["name"]} | {r["where"]} | {num(r["load_ms"], "{:.0f}")} | '
                     f'{num(r["cached_load_ms"], "{:.0f}")} | {num(r["prefill_tok_s"], "{:.2f}")} | '
                     f'{num(r["ttft_ms"], "{:.0f}")} | {num(r["decode_tok_s"], "{:.2f}")} | {r["tokens"]} | '
                     f'{num(r.get("mem_mb"), "{:.0f}")} |')
    kern = ["| kernel | shape | GB/s | of copy |", "|--------|-------|-----:|--------:|",
            f'| copy | — | {bench["copy_gb_s"]:.2f} | 100 % |']
    for k in bench["results"]:
        if k["kernel"].startswith("matvec"):
            kern.append(f'| {k["kernel"]} | {k["shape"]} | {k["gb_s"]:.3f} | {100 * k["fraction_of_copy"]:.1f} % |')
    return "\n".join([
        f'Generated {meta.get("speed_date", meta["date"])} on {meta["machine"]} by `python3 scripts/results.py`: SmolLM2-135M-Instruct, '
        "the 42-token chat prompt of `qins-run --bench`, greedy decoding of the number of tokens in the last column "
        "(fewer where the engine is slow). GPU rows use the default f16 KV cache and f32 compute. Load times include "
        "creating the GPU device and compiling pipelines; the browser loads over localhost from `qins-serve` (first: "
        "network, cached: the browser's store). The CPU engine in Chromium runs without WebGPU (`load(url, {backend: "
        "\"cpu\"})`, SIMD128, one thread), next to the native CPU engine on one thread (`RAYON_NUM_THREADS=1`). Memory: "
        "resident set after the run natively (`rss_bytes`), peak wasm memory in the browser. llama.cpp "
        "(llama-cpp-python) runs in the same script on the same cores as the peer; nothing else ran meanwhile.",
        "", *table, "",
        "![tokens/s by backend](speed.svg)", "",
        f'Mat-vec kernels vs a copy kernel on `{bench["device"]}` (`qins-bench --small`):', "", *kern])


def speed_svg(rows, path):
    """Prefill and decode tokens/s per engine (log scale), horizontal bars."""
    import math
    w, bh, m = 760, 22, 250
    h = 70 + len(rows) * (2 * bh + 10)
    vals = [v for r in rows for v in (r["prefill_tok_s"], r["decode_tok_s"]) if v]
    lo, hi = math.floor(math.log10(min(vals))), math.ceil(math.log10(max(vals)))
    X = lambda v: m + (math.log10(v) - lo) / (hi - lo) * (w - m - 30)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12">',
           f'<rect width="{w}" height="{h}" fill="white"/>',
           f'<text x="{w/2}" y="20" text-anchor="middle" font-size="14">SmolLM2-135M: tokens/s by engine (log)</text>',
           '<rect x="260" y="30" width="12" height="12" fill="#2471a3"/><text x="278" y="40">prefill</text>',
           '<rect x="340" y="30" width="12" height="12" fill="#c0392b"/><text x="358" y="40">decode</text>']
    for k in range(lo, hi + 1):
        out.append(f'<line x1="{X(10**k):.1f}" y1="50" x2="{X(10**k):.1f}" y2="{h-15}" stroke="#ddd"/>')
        out.append(f'<text x="{X(10**k):.1f}" y="{h-3}" text-anchor="middle">{10**k:g}</text>')
    y = 55
    for r in rows:
        out.append(f'<text x="{m-8}" y="{y+bh+4}" text-anchor="end">{r["name"]}</text>')
        for v, color in ((r["prefill_tok_s"], "#2471a3"), (r["decode_tok_s"], "#c0392b")):
            if v:
                out.append(f'<rect x="{m}" y="{y}" width="{max(X(v) - m, 1):.1f}" height="{bh-2}" fill="{color}"/>')
                out.append(f'<text x="{X(v)+4:.1f}" y="{y+bh-7}">{v:.3g}</text>')
            y += bh
        y += 10
    out.append("</svg>")
    open(path, "w").write("\n".join(out))


STAGES = ["device", "read", "checksum", "decompress", "upload", "other", "build", "total"]


def load_table(a, log):
    """The load-stage rows: each archive natively (the last of three loads from a warm page cache, then the first
    token of a 100-token prompt) and, unless skipped, in headless Chromium from the network and from its store."""
    archives = [("SmolLM2 lut8g-g32", os.path.join(WORK, "lut8g-g32.qins")),
                ("Qwen2.5-Coder-0.5B lut8g-g32", os.path.join(WORK, "qwen2.5-coder-0.5b", "lut8g-g32.qins"))]
    if not os.path.exists(archives[0][1]):
        subprocess.run([os.path.join(ROOT, "scripts", "dev.sh"), "fetch", "smollm2"], check=True,
                       stdout=subprocess.DEVNULL)
        os.makedirs(WORK, exist_ok=True)
        run([os.path.join(BIN, "qins-convert"), GGUF, "-o", archives[0][1], "--codec", "lut8g", "--group", "32"])
    phi = os.path.join(WORK, f"phi-3.5-mini-{a.phi_layers}layers.lut8g.qins")
    t = time.time()
    conv = json.loads(run([os.path.join(BIN, "qins-convert"), "--synthetic", "phi-3.5-mini", "--synthetic-layers",
                           str(a.phi_layers), "--codec", "lut8g", "-o", phi, "--json"]))
    conversion = {"layers": a.phi_layers, "parameters": conv["parameters"], "seconds": time.time() - t}
    archives.append((f"Phi-3.5-mini shapes, {a.phi_layers} of 32 layers, lut8g", phi))
    rows = []
    for name, path in archives:
        if not os.path.exists(path):
            log(f"{path} missing: {name} skipped (python3 scripts/results.py --model qwen2.5-coder-0.5b makes it)")
            continue
        mb = os.path.getsize(path) / 1e6
        # The GPU path, then the CPU engine's: in the browser the latter has no GPU process to feed, so its rows show
        # what the page's own path (store, checksum, zstd, wasm) costs next to the native one.
        for backend, label in (("gpu", ""), ("cpu", "CPU engine, ")):
            r = last_json(run([os.path.join(BIN, "qins-run"), path, "--bench-load", "--load-runs", "3", "--backend",
                               backend, "--json"]), "loads")
            rows.append({"name": name, "where": f"{label}native", "mb": mb, "stages": r["loads"][-1]["stages"],
                         "ttft_ms": r["ttft_ms"]})
            if a.skip_browser:
                continue
            b = last_json(run([os.path.join(ROOT, "scripts", "dev.sh"), "web-bench", path, "1", backend]),
                          "network_stages")
            for where, key in (("Chromium, network", "network_stages"), ("Chromium, from the store", "cached_stages")):
                rows.append({"name": name, "where": label + where, "mb": mb, "stages": b[key], "ttft_ms": None,
                             "peak_wasm_mb": b.get("peak_wasm_bytes", 0) / 1e6})
    return rows, conversion


def load_section(rows, conversion, meta):
    table = ["| archive | where | MB | " + " | ".join(STAGES) + " | MB/s | TTFT ms |",
             "|---|---|---:|" + "---:|" * (len(STAGES) + 2)]
    for r in rows:
        st = r["stages"]
        cells = " | ".join(f'{st[k + "_ms"]:.0f}' for k in STAGES)
        ttft = "—" if r["ttft_ms"] is None else f'{r["ttft_ms"]:.0f}'
        table.append(f'| {r["name"]} | {r["where"]} | {r["mb"]:.1f} | {cells} | '
                     f'{r["mb"] / max(st["total_ms"], 1e-3) * 1e3:.0f} | {ttft} |')
    per_s = conversion["parameters"] / conversion["seconds"]
    return "\n".join([
        f'Generated {meta["date"]} on {meta["cpu"]} ({meta["machine"]}) by `python3 scripts/results.py --load '
        f'--phi-layers {conversion["layers"]}`. Native: `qins-run ARCHIVE --bench-load --load-runs 3 --backend gpu` '
        "(this machine's wgpu adapter, the last of three loads from a warm page cache), then the first token of a "
        "100-token prompt (TTFT). Chromium: `./scripts/dev.sh web-bench ARCHIVE 1` (headless, its WebGPU adapter), the "
        "first load from `qins-serve` over localhost, stored in the Origin Private File System as it streams, then a "
        "second load from that store. The \"CPU engine\" rows are the same with `--backend cpu` (natively) and "
        "`web-bench ARCHIVE 1 cpu` (the page's CPU engine in wasm): no GPU upload, so the browser rows show the "
        "page's own path. Each stage in ms; stages overlap chunk by chunk on one thread, so they add up "
        "to the total: \"read\" is waiting for bytes, \"upload\" creating and writing GPU buffers, \"build\" what "
        "follows the last byte.", "", *table, "",
        f'Converting the Phi-3.5-mini-shaped archive ({conversion["layers"]} layers, {conversion["parameters"] / 1e6:.1f} M '
        f'parameters, lut8g) took {conversion["seconds"]:.0f} s: {per_s / 1e6:.2f} M parameters/s, so the whole '
        f'model (3,821 M) would take about {3821e6 / per_s / 60:.1f} min at that rate.'])


def replace_section(doc, name, body):
    """Replaces the text between <!-- NAME:begin ... --> and <!-- NAME:end --> (appends if absent)."""
    begin = f"<!-- {name}:begin (generated by scripts/results.py; edits here are overwritten) -->"
    end = f"<!-- {name}:end -->"
    section = f"{begin}\n{body}\n{end}"
    b, e = doc.find(f"<!-- {name}:begin"), doc.find(end)
    return doc[:b] + section + doc[e + len(end):] if b >= 0 and e >= 0 else doc + "\n" + section + "\n"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--max-chunks", type=int, default=12)
    ap.add_argument("--skip-speed", action="store_true", help="quality only")
    ap.add_argument("--skip-quality", action="store_true",
                    help="speed only: keep docs/results.json's quality rows (needs models/results from a full run)")
    ap.add_argument("--skip-browser", action="store_true", help="no headless Chromium row")
    ap.add_argument("--browser-tokens", type=int, default=4)
    ap.add_argument("--model", choices=list(MODELS), default="smollm2")
    ap.add_argument("--load", action="store_true", help="only the load-stage table")
    ap.add_argument("--phi-layers", type=int, default=2, help="layers of the Phi-3.5-mini-shaped archive (--load)")
    a = ap.parse_args()
    if a.load:
        return load_main(a)
    m = MODELS[a.model]
    if a.model != "smollm2":
        a.skip_speed = True
        if a.skip_quality:
            sys.exit("--skip-quality is for SmolLM2's speed part")
    log = lambda msg: print(msg, file=sys.stderr, flush=True)
    t0 = time.time()
    subprocess.run([os.path.join(ROOT, "scripts", "dev.sh"), "fetch", a.model], check=True, stdout=subprocess.DEVNULL)
    subprocess.run(["cargo", "build", "--release", "-p", "qins-host"], check=True, cwd=ROOT)
    work = WORK if a.model == "smollm2" else os.path.join(WORK, a.model)
    gguf = m["gguf"]
    os.makedirs(work, exist_ok=True)
    rows = []
    ref = os.path.join(work, "f32.qins")
    old = json.load(open(os.path.join(ROOT, "docs", "results.json"))) if a.skip_quality else None
    if old:
        rows = old["rows"]
        for f in ("f32.qins", "lut8g-g32.qins"):
            if not os.path.exists(os.path.join(WORK, f)):
                sys.exit(f"--skip-quality needs {os.path.join(WORK, f)}: run without it once")
    for name, args in [] if old else CODECS:
        out = os.path.join(work, name.split(" (")[0].replace(" ", "").replace("+", "_").replace(",", "_") + ".qins")
        log(f"{a.model}: {name}")
        s = json.loads(run([os.path.join(BIN, "qins-convert"), gguf, "-o", out, "--json"] + args))
        # The same codec on weights off any grid (bell-shaped random ones in SmolLM2's shapes,
        # 4 layers): the source GGUF's Q4_1/Q8_0 grids favour codecs that can land on them.
        off = json.loads(run([os.path.join(BIN, "qins-convert"), "--synthetic", m["synthetic"],
                              "--synthetic-layers", "4", "-o", os.path.join(work, "synthetic.qins"), "--json"]
                             + args)) if m["synthetic"] else {"matrix_error": {"sqnr_db": None}}
        e = json.loads(run([os.path.join(BIN, "qins-eval"), out, "--text", TEXT, "--ctx", "512",
                            "--max-chunks", str(a.max_chunks), "--ref", ref, "--json"]))
        # Bits/weight as for llama.cpp's rows: stored tensor bytes (before zstd) over every parameter.
        rows.append({"name": f"qins {name}", "bpw": s["raw_bytes"] * 8 / s["parameters"], "archive_bytes": s["archive_bytes"],
                     "sqnr_db": s["matrix_error"]["sqnr_db"],
                     "offgrid_sqnr_db": off["matrix_error"]["sqnr_db"], "ppl": e["ppl"], "kld": e.get("kld_mean"),
                     "top1": e.get("top1_agree"), "tokens": e["tokens"]})
    try:
        if old:
            raise ImportError("quality rows kept")
        import llama_cpp  # noqa: F401
        out = run([sys.executable, os.path.join(ROOT, "scripts", "llamacpp_quality.py"), gguf, TEXT, "--ctx", "512",
                   "--max-chunks", str(a.max_chunks), "--types", m["llama_types"]])
        for line in out.splitlines():
            r = json.loads(line)
            if r["name"].endswith("F32"):
                continue
            rows.append({"name": r["name"], "bpw": r["bpw"], "archive_bytes": r["file_bytes"],
                         "sqnr_db": None, "ppl": r["ppl"], "kld": r["kld_mean"], "top1": r["top1_agree"],
                         "tokens": r["tokens"]})
    except ImportError as e:
        if not old:
            log(f"llama-cpp-python missing ({e}): llama.cpp rows skipped")
    quality_min = old["meta"]["quality_minutes"] if old else (time.time() - t0) / 60
    speed_rows, bench = ([], None) if a.skip_speed else speed(a, log)
    minutes = (time.time() - t0) / 60
    meta = {"date": datetime.date.today().isoformat(), "machine": f"{platform.machine()}, {os.cpu_count()} cores",
            "cpu": cpu_name(), "versions": versions(), "quality_minutes": round(quality_min, 1),
            "model": m["description"],
            "text": "data/corpus/dev.txt", "ctx": 512, "windows": a.max_chunks, "minutes": round(minutes, 1)}
    if old:
        # Speed only: the quality rows, their meta and their section stay as they were.
        meta = {**old["meta"], "speed_date": meta["date"], "speed_minutes": round(minutes, 1)}
    json.dump({"meta": meta, "rows": rows, "speed": speed_rows, "kernels": bench},
              open(os.path.join(ROOT, "docs", m["json"]), "w"), indent=1)
    if not old:
        svg_plot(rows, os.path.join(ROOT, "docs", m["svg"]))
    table = ["| format | bits/weight | archive MiB | SQNR dB | off-grid SQNR dB | perplexity | mean KL vs f32 | "
             "top-1 agreement |",
             "|--------|-----------:|------------:|--------:|--------:|-----------:|---------------:|----------------:|"]
    db = lambda v: "—" if v is None else "exact" if v >= 200 else f"{v:.2f}"
    for r in rows:
        table.append(f'| {r["name"]} | {r["bpw"]:.3f} | {r["archive_bytes"] / 2**20:.2f} | {db(r["sqnr_db"])} | '
                     f'{db(r.get("offgrid_sqnr_db"))} | {r["ppl"]:.3f} | {r["kld"]:.6f} | {100 * r["top1"]:.2f} % |')
    section = "\n".join([
        f'Generated {meta["date"]} on {meta["machine"]} in {meta["minutes"]} min by `python3 scripts/results.py '
        f'--max-chunks {a.max_chunks}' + ("" if a.model == "smollm2" else f" --model {a.model}")
        + f'`: {meta["model"]}; {rows[0]["tokens"]} scored tokens of data/corpus/dev.txt ({a.max_chunks} windows '
        "of 512, second halves), KL divergence from the f32 archive of the same weights. llama.cpp rows: the same GGUF "
        "requantized by llama.cpp (from its own F32), scored on the same windows. Bits/weight, both sides: stored tensor "
        "bytes (qins before zstd, GGUF without its metadata) × 8 over every parameter, norms and embedding included "
        + m["caveat"],
        f'Machine: {meta["cpu"]} ({meta["machine"]}); {", ".join(f"{k} {v}" for k, v in meta["versions"].items())}. '
        f'Quality part {meta["quality_minutes"]} min.',
        "", *table, "", f'![size vs KL divergence]({m["svg"]})'])
    path = os.path.join(ROOT, "docs", "RESULTS.md")
    doc = open(path).read() if old else replace_section(open(path).read(), m["section"], section)
    if speed_rows:
        speed_svg(speed_rows, os.path.join(ROOT, "docs", "speed.svg"))
        doc = replace_section(doc, "speed", speed_section(speed_rows, bench, meta))
    open(path, "w").write(doc)
    print("\n".join(table))


def load_main(a):
    log = lambda msg: print(msg, file=sys.stderr, flush=True)
    subprocess.run(["cargo", "build", "--release", "-p", "qins-host"], check=True, cwd=ROOT)
    rows, conversion = load_table(a, log)
    meta = {"date": datetime.date.today().isoformat(), "machine": f"{platform.machine()}, {os.cpu_count()} cores",
            "cpu": cpu_name(), "versions": versions()}
    json.dump({"meta": meta, "rows": rows, "conversion": conversion},
              open(os.path.join(ROOT, "docs", "results-load.json"), "w"), indent=1)
    path = os.path.join(ROOT, "docs", "RESULTS.md")
    section = load_section(rows, conversion, meta)
    # Read before opening for writing: `open(path, "w")` truncates the file first.
    doc = replace_section(open(path).read(), "load", section)
    open(path, "w").write(doc)
    print(section)


if __name__ == "__main__":
    main()
