#!/usr/bin/env python3
"""Regenerates the quality section of docs/RESULTS.md, docs/results.json and docs/quality.svg:
every codec of qins against llama.cpp's formats on SmolLM2-135M-Instruct, scored on the same
tokens (data/corpus/dev.txt, ctx 512) against the f32 archive of the same weights.

  python3 scripts/results.py [--max-chunks 20]

Needs the release binaries' sources (it builds them), the model (fetched by scripts/dev.sh) and,
for the llama.cpp rows, llama-cpp-python (`pip install llama-cpp-python`; rows are skipped if
it is missing). Takes about half an hour on a 2-core machine at 20 windows.
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
TEXT = os.path.join(ROOT, "data", "corpus", "dev.txt")
BIN = os.path.join(ROOT, "target", "release")
WORK = os.path.join(ROOT, "models", "results")

# name, qins-convert arguments
CODECS = [
    ("f32", ["--codec", "f32"]),
    ("lut8", ["--codec", "lut8"]),
    ("qins8", ["--codec", "qins8"]),
    ("lut4-g32", ["--codec", "lut4", "--group", "32"]),
    ("lut4-g64", ["--codec", "lut4", "--group", "64"]),
    ("lut4-g128", ["--codec", "lut4", "--group", "128"]),
    ("lut4-g32 + lut8 embedding", ["--codec", "lut4", "--group", "32", "--embed-codec", "lut8"]),
    ("int8 (uniform baseline)", ["--codec", "int8"]),
    ("int4-g32 (uniform baseline)", ["--codec", "int4", "--group", "32"]),
]


def run(cmd):
    print("+", " ".join(cmd), file=sys.stderr, flush=True)
    return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout


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


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--max-chunks", type=int, default=20)
    a = ap.parse_args()
    t0 = time.time()
    subprocess.run([os.path.join(ROOT, "scripts", "dev.sh"), "fetch"], check=True, stdout=subprocess.DEVNULL)
    subprocess.run(["cargo", "build", "--release", "-p", "qins-host"], check=True, cwd=ROOT)
    os.makedirs(WORK, exist_ok=True)
    n_params = None
    rows = []
    ref = os.path.join(WORK, "f32.qins")
    for name, args in CODECS:
        out = os.path.join(WORK, name.split(" (")[0].replace(" ", "").replace("+", "_") + ".qins")
        s = json.loads(run([os.path.join(BIN, "qins-convert"), GGUF, "-o", out, "--json"] + args))
        n_params = s["parameters"]
        e = json.loads(run([os.path.join(BIN, "qins-eval"), out, "--text", TEXT, "--ctx", "512",
                            "--max-chunks", str(a.max_chunks), "--ref", ref, "--json"]))
        rows.append({"name": f"qins {name}", "bpw": s["bits_per_weight"], "archive_bytes": s["archive_bytes"],
                     "sqnr_db": s["matrix_error"]["sqnr_db"], "ppl": e["ppl"], "kld": e.get("kld_mean"),
                     "top1": e.get("top1_agree"), "tokens": e["tokens"]})
    try:
        import llama_cpp  # noqa: F401
        out = run([sys.executable, os.path.join(ROOT, "scripts", "llamacpp_quality.py"), GGUF, TEXT, "--ctx", "512",
                   "--max-chunks", str(a.max_chunks), "--types", "Q8_0,Q4_K_M,Q4_0"])
        for line in out.splitlines():
            r = json.loads(line)
            if r["name"].endswith("F32"):
                continue
            rows.append({"name": r["name"], "bpw": r["file_bytes"] * 8 / n_params, "archive_bytes": r["file_bytes"],
                         "sqnr_db": None, "ppl": r["ppl"], "kld": r["kld_mean"], "top1": r["top1_agree"],
                         "tokens": r["tokens"]})
    except ImportError:
        print("llama-cpp-python missing: llama.cpp rows skipped", file=sys.stderr)
    minutes = (time.time() - t0) / 60
    meta = {"date": datetime.date.today().isoformat(), "machine": f"{platform.machine()}, {os.cpu_count()} cores",
            "model": "SmolLM2-135M-Instruct (Q4_1 GGUF, dequantized = the f32 reference)",
            "text": "data/corpus/dev.txt", "ctx": 512, "windows": a.max_chunks, "minutes": round(minutes, 1)}
    json.dump({"meta": meta, "rows": rows}, open(os.path.join(ROOT, "docs", "results.json"), "w"), indent=1)
    svg_plot(rows, os.path.join(ROOT, "docs", "quality.svg"))
    table = ["| format | bits/weight | archive MiB | SQNR dB | perplexity | mean KL vs f32 | top-1 agreement |",
             "|--------|-----------:|------------:|--------:|-----------:|---------------:|----------------:|"]
    for r in rows:
        sq = f'{r["sqnr_db"]:.2f}' if r["sqnr_db"] is not None else "—"
        table.append(f'| {r["name"]} | {r["bpw"]:.3f} | {r["archive_bytes"] / 2**20:.2f} | {sq} | {r["ppl"]:.3f} | '
                     f'{r["kld"]:.5f} | {100 * r["top1"]:.2f} % |')
    section = "\n".join([
        "<!-- quality:begin (generated by scripts/results.py; edits here are overwritten) -->",
        f'Generated {meta["date"]} on {meta["machine"]} in {meta["minutes"]} min by `python3 scripts/results.py '
        f'--max-chunks {a.max_chunks}`: {rows[0]["tokens"]} scored tokens of data/corpus/dev.txt ({a.max_chunks} windows '
        "of 512, second halves), KL divergence from the f32 archive of the same weights. llama.cpp rows: the same GGUF "
        "requantized by llama.cpp (from its own F32), scored on the same windows; their bits/weight is the whole file's "
        "(SmolLM2's 576-wide rows make Q4_K_M fall back to wider types for most tensors). Caveat: the source weights "
        "already sit on a Q4_1 grid (4-bit, 32-weight groups with a minimum), which favours 4-bit formats aligned to "
        "32-weight groups with an offset.",
        "", *table, "", "![size vs KL divergence](quality.svg)", "<!-- quality:end -->"])
    path = os.path.join(ROOT, "docs", "RESULTS.md")
    doc = open(path).read()
    b, e = doc.find("<!-- quality:begin"), doc.find("<!-- quality:end -->")
    doc = doc[:b] + section + doc[e + len("<!-- quality:end -->"):] if b >= 0 and e >= 0 else doc + "\n" + section + "\n"
    open(path, "w").write(doc)
    print("\n".join(table))


if __name__ == "__main__":
    main()
