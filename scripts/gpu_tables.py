#!/usr/bin/env python3
"""RESULTS.md's GPU tables from a `scripts/gpu-bench.sh` output folder, and issue 20's goals
computed from them: python3 scripts/gpu_tables.py OUT_DIR. Missing steps are left out (a run
cut short still gives what it measured)."""
import json
import os
import re
import sys


def load(out, name):
    try:
        with open(os.path.join(out, name + ".json")) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def by_kernel(bench):
    return {(r["kernel"], r.get("shape")): r for r in (bench or {}).get("results", [])}


def kernels(bench, decode_alts, prefill_alts):
    """Decode mat-vecs (GB/s, share of the copy kernel) and 64-token prefill batches, per codec
    and shape, with a column for each other run of qins-bench present (label, its output)."""
    copy = bench["copy_gb_s"]
    decode_alts = [(label, by_kernel(b)) for label, b in decode_alts if b]
    prefill_alts = [(label, by_kernel(b)) for label, b in prefill_alts if b]
    probes = [("ArithmeticCodebook", "no codebook (lookups, its load and barrier)"), ("NoGroups", "no group scales")]
    # The same dispatch in a chain with a bind group, and a source buffer, of its own each
    # (binaries from session 38 on).
    chained = "".join(f'; {label} {r["us"]:.2f} µs' for label, r in
                      [("with its own bind group", by_kernel(bench).get(("dispatch, own bind group", None))),
                       ("from its own buffer", by_kernel(bench).get(("dispatch, own buffer", None)))] if r)
    out = [f'Device: `{bench["device"]}`; copy kernel {copy:.0f} GB/s; a submission waited on and '
           f'read back {bench["submit_us"]:.1f} µs; a dispatch inside a submission {bench["dispatch_us"]:.2f} µs'
           f'{chained}. Shares of copy: the tensor repeated (from the caches where it fits them) / from memory '
           '(copies of it in turn), where the binary measured both.', "",
           "| codec | shape | decode µs | GB/s | of copy | from memory µs | "
           + "".join(f"probe {label}: µs from memory | " for _, label in probes)
           + "".join(f"{label}: of copy | " for label, _ in decode_alts)
           + "every code equal: of copy | norm or SiLU fused: µs | prefill 64 tok/s | GFLOP/s | "
           + "".join(f"{label}: tok/s | " for label, _ in prefill_alts),
           "|---|---|" + "---:|" * (8 + len(probes) + len(decode_alts) + len(prefill_alts))]
    here = by_kernel(bench)
    res = bench["results"]

    def pct(r):
        if not r:
            return "—"
        cold = r.get("cold_fraction_of_copy")
        return f'{100 * r["fraction_of_copy"]:.0f} %' + (f' / {100 * cold:.0f} %' if cold else "")

    cold_us = lambda r: f'{r["cold_us"]:.1f}' if r and "cold_us" in r else "—"
    for r in res:
        if not r["kernel"].startswith("matvec") or r["kernel"].endswith("one code"):
            continue
        codec = r["kernel"].split(" ", 1)[1]
        key = ("prefill " + codec, r["shape"])
        pre = here.get(key)
        fused = here.get(("fused " + r["kernel"], r["shape"]))
        same = here.get((r["kernel"] + " one code", r["shape"]))
        cells = [codec, r["shape"], f'{r["us"]:.1f}', f'{r["gb_s"]:.3g}', pct(r), cold_us(r)]
        cells += [cold_us(here.get((f"probe {codec} {name}", r["shape"]))) for name, _ in probes]
        cells += [pct(alt.get((r["kernel"], r["shape"]))) for _, alt in decode_alts]
        cells += [pct(same), f'{fused["us"]:.1f}' if fused else "—",
                  f'{pre["tok_s"]:.0f}' if pre else "—", f'{pre["gflop_s"]:.3g}' if pre else "—"]
        cells += [f'{alt[key]["tok_s"]:.0f}' if key in alt else "—" for _, alt in prefill_alts]
        out.append("| " + " | ".join(cells) + " |")
    return out


def fixed_and_streaming(bench):
    """Each codec's decode mat-vecs fitted as t = fixed + bytes / rate (least squares over the
    shapes, repeated): the fixed µs a dispatch pays whatever its size (launch, the chain of
    dependent loads, the reduction) against the rate it streams at, which say whether a kernel
    change should shorten the chain or widen the stream."""
    out = []
    by_codec = {}
    for r in bench["results"]:
        k = r["kernel"]
        if k.startswith("matvec ") and not k.endswith("one code") and r.get("gb_s"):
            by_codec.setdefault(k[7:], []).append((r["gb_s"] * r["us"] * 1e3, r["us"]))
    for codec, pts in by_codec.items():
        if len(pts) < 3:
            continue
        n = len(pts)
        mx = sum(b for b, _ in pts) / n
        my = sum(t for _, t in pts) / n
        sxx = sum((b - mx) ** 2 for b, _ in pts)
        if sxx == 0:
            continue
        slope = sum((b - mx) * (t - my) for b, t in pts) / sxx
        fixed = my - slope * mx
        rate = 1e-3 / slope if slope > 0 else float("inf")
        out.append(f'- {codec}: {fixed:.1f} µs fixed a dispatch + streaming at {rate:.0f} GB/s '
                   f'({100 * rate / bench["copy_gb_s"]:.0f} % of copy), fitted over {n} shapes')
    return (["Decode mat-vecs as t = fixed + bytes / rate (repeated):"] + out) if out else []


def attention(bench):
    """A decoded token's attention at each context length, whole-context and split kernels."""
    res = by_kernel(bench)

    def heads_then_length(shape):
        label, _, length = shape.rpartition(" ")
        return (label, int(length)) if length.isdigit() else (shape, 0)

    shapes = sorted({r["shape"] for r in bench["results"] if r["kernel"].startswith("attention")},
                    key=heads_then_length)
    out = ["| heads, context | whole µs | GB/s | split µs | GB/s | split / whole speed |",
           "|---|---:|---:|---:|---:|---:|"]
    for s in shapes:
        w, p = res.get(("attention whole", s)), res.get(("attention split", s))
        if w and p:
            out.append(f'| {s} | {w["us"]:.1f} | {w["gb_s"]:.3g} | {p["us"]:.1f} | {p["gb_s"]:.3g} | '
                       f'{w["us"] / p["us"]:.2f}× |')
    return out if len(out) > 2 else []


def select(bench):
    """A decoded token's sampling candidates (select.wgsl) per vocabulary and k."""
    rows = [r for r in bench["results"] if r["kernel"] == "select"]
    out = ["| vocabulary, k | select µs |", "|---|---:|"]
    out += [f'| {r["shape"]} | {r["us"]:.1f} |' for r in rows]
    return out if rows else []


def runs(out_dir):
    """Every end-to-end run, one row each."""
    out = ["| run | prompt tokens | prefill tok/s | TTFT ms | decode tok/s | dispatches / token | "
           "host µs / step | queued steps | GPU MB | load s |",
           "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for f in sorted(os.listdir(out_dir)):
        if not (f.startswith("run-") and f.endswith(".json")):
            continue
        r = load(out_dir, f[:-5])
        if not r:
            continue
        disp = (r.get("engine") or {}).get("dispatches_per_token") or "—"
        # A decoded token's host time up to its submission (binaries from session 38 on).
        host = r.get("host_step_us")
        host = f"{host:.0f}" if host else "—"
        # Decoded tokens whose step the GPU had queued (greedy, binaries from session 39 on).
        queued = r.get("queued_steps")
        queued = "—" if queued is None else f"{queued} of {r['generated_tokens']}"
        gpu = r.get("gpu_bytes")
        gpu = f"{gpu / 1e6:.0f}" if gpu else "—"
        out.append(f'| {f[4:-5]} | {r["prompt_tokens"]} | {r["prefill_tok_s"]:.0f} | {r["ttft_ms"]:.0f} | '
                   f'{r["decode_tok_s"]:.1f} | {disp} | {host} | {queued} | {gpu} | {r["load_s"]:.2f} |')
    return out


def profiles(out_dir, bench):
    """Where a decoded token's GPU time goes (`qins-run --profile`): per kernel, and for the
    mat-vecs the GB/s of their tensors' bytes; the token's GPU span against the wall time per
    token of the same model's unprofiled run (the rest is the host's and the submission's)."""
    out = []
    copy = bench["copy_gb_s"] if bench else None
    for f in sorted(os.listdir(out_dir)):
        if not (f.startswith("run-") and f.endswith("-profile.json")):
            continue
        name = f[4:-len("-profile.json")]
        r = load(out_dir, f[:-5])
        prof = (r or {}).get("profile")
        if not prof:
            continue
        # The base binary's runs and the longer prompts' use the same archive as this one's.
        archive = re.sub(r"-p\d+", "", name.removesuffix("-base"))
        ins = load(out_dir, "inspect-" + name) or load(out_dir, "inspect-" + archive)
        role_bytes, role_params = {}, {}
        for t in (ins or {}).get("tensors", []):
            role = t["name"].split(".", 2)[2] if t["name"].startswith("layers.") else t["name"]
            role_bytes["matvec " + role] = role_bytes.get("matvec " + role, 0) + t["bytes"]
            params = t["shape"][0] * t["shape"][1] if len(t.get("shape", [])) == 2 else 0
            role_params["matvec " + role] = role_params.get("matvec " + role, 0) + params
        plain = load(out_dir, "run-" + name)
        span = prof["gpu_us_per_token"]
        head = f'`{name}` with `--profile`, {prof["tokens"]} decoded tokens timed: GPU span {span:.0f} µs a token'
        if plain and plain["decode_tok_s"]:
            wall = 1e6 / plain["decode_tok_s"]
            head += (f'; the unprofiled run takes {wall:.0f} µs a token, so {wall - span:.0f} µs '
                     f'({100 * (wall - span) / wall:.0f} %) is outside the GPU span (host, submission, read-back)')
        out += [head + ".", "",
                "| kernel | dispatches / token | µs / token | share | GB/s | of copy |",
                "|---|---:|---:|---:|---:|---:|"]
        for k in prof["kernels"]:
            b = role_bytes.get(k["kernel"])
            gbs = b / (k["us_per_token"] * 1e3) if b and k["us_per_token"] > 0 else None
            out.append(f'| {k["kernel"]} | {k["dispatches_per_token"]:g} | {k["us_per_token"]:.1f} | '
                       f'{100 * k["share"]:.1f} % | {f"{gbs:.3g}" if gbs else "—"} | '
                       f'{f"{100 * gbs / copy:.0f} %" if gbs and copy else "—"} |')
        out.append("")
        out += prefill_profile(name, r.get("prefill_profile"), plain, role_params)
    return out


def prefill_profile(name, prof, plain, role_params):
    """The prompt's kernels per prompt token (binaries from session 38 on): a mat-vec's GFLOP/s
    counts 2 FLOPs a weight a token, the prompt's batches timed one submission each."""
    if not prof:
        return []
    span = prof["gpu_us_per_token"]
    head = (f'`{name}` prompt with `--profile`, {prof["tokens"]} prompt tokens timed: GPU span '
            f'{span:.1f} µs a prompt token')
    if plain and plain.get("prefill_tok_s"):
        head += f'; the unprofiled prefill takes {1e6 / plain["prefill_tok_s"]:.1f}'
    out = [head + ".", "",
           "| kernel | dispatches / prompt token | µs / prompt token | share | GFLOP/s |",
           "|---|---:|---:|---:|---:|"]
    for k in prof["kernels"]:
        params = role_params.get(k["kernel"])
        gflops = 2 * params / (k["us_per_token"] * 1e3) if params and k["us_per_token"] > 0 else None
        out.append(f'| {k["kernel"]} | {k["dispatches_per_token"]:.3g} | {k["us_per_token"]:.2f} | '
                   f'{100 * k["share"]:.1f} % | {f"{gflops:.4g}" if gflops else "—"} |')
    return out + [""]


def bytes_per_token(inspect):
    """Weight bytes a decoded token reads: every tensor, less the embedding table when the
    output head has its own (a token reads one row of the table)."""
    total = sum(t["bytes"] for t in inspect["tensors"])
    if not inspect["config"].get("tie_word_embeddings"):
        total -= next(t["bytes"] for t in inspect["tensors"] if t["name"] == "token_embd")
    return total


def goals(out_dir, bench):
    out = []
    copy = bench["copy_gb_s"] if bench else None
    if bench:
        for r in bench["results"]:
            if (r["kernel"].startswith("matvec") and not r["kernel"].endswith("one code")
                    and r["shape"] in ("phi3.5 qkv", "phi3.5 gate_up", "phi3.5 down")):
                # From memory where measured: the copy kernel's bytes come from there too.
                f = r.get("cold_fraction_of_copy", r["fraction_of_copy"])
                where = "from memory" if "cold_fraction_of_copy" in r else "repeated"
                out.append(f'- decode mat-vec {r["kernel"][7:]} {r["shape"]}: {100 * f:.0f} % of copy, {where} '
                           f'({"met" if f >= 0.7 else "not met"}, goal 70 %)')
    for codec in ("lut8g", "lut4a"):
        run, ins = load(out_dir, f"run-phi35-{codec}"), load(out_dir, f"inspect-phi35-{codec}")
        if run and ins and copy:
            b = bytes_per_token(ins)
            bound = copy * 1e9 / b
            share = run["decode_tok_s"] / bound
            line = (f'- end-to-end decode {codec}: {run["decode_tok_s"]:.1f} tok/s, bound {bound:.0f} tok/s '
                    f'({b / 1e9:.2f} GB a token at {copy:.0f} GB/s) = {100 * share:.0f} % '
                    f'({"met" if share >= 0.5 else "not met"}, goal 50 %)')
            disp = (run.get("engine") or {}).get("dispatches_per_token")
            if disp:
                fixed = bench["submit_us"] + disp * bench["dispatch_us"]
                line += (f'; fixed cost a token ≈ {fixed:.0f} µs (a submission read back, {bench["submit_us"]:.0f} µs, + '
                         f'{disp} dispatches × {bench["dispatch_us"]:.1f} µs) of {1e6 / run["decode_tok_s"]:.0f} µs')
            out.append(line)
        p512 = load(out_dir, f"run-phi35-{codec}-p512")
        if run and p512:
            x = p512["prefill_tok_s"] / run["decode_tok_s"]
            out.append(f'- prefill of 512 tokens {codec}: {p512["prefill_tok_s"]:.0f} tok/s = {x:.1f}× decode '
                       f'({"met" if x >= 10 else "not met"}, goal 10×)')
        # The fastest prompt of any variant this binary ran (path, rows, batch size).
        variants = [(load(out_dir, f[:-5]), f[4:-5]) for f in sorted(os.listdir(out_dir))
                    if f.startswith(f"run-phi35-{codec}-p512") and f.endswith(".json") and "base" not in f]
        best = max(((r["prefill_tok_s"], name) for r, name in variants if r), default=None)
        if run and best and p512 and best[0] > p512["prefill_tok_s"]:
            x = best[0] / run["decode_tok_s"]
            out.append(f'  - fastest variant `{best[1]}`: {best[0]:.0f} tok/s = {x:.1f}× decode '
                       f'({"met" if x >= 10 else "not met"} with it as the default)')
        lim = load(out_dir, f"run-phi35-{codec}-binding128mib")
        if run and lim:
            cost = 1 - lim["decode_tok_s"] / run["decode_tok_s"]
            out.append(f'- 128 MiB bindings {codec}: decode {lim["decode_tok_s"]:.1f} vs {run["decode_tok_s"]:.1f} '
                       f'tok/s, cost {100 * cost:.1f} % ({"met" if cost <= 0.05 else "not met"}, goal ≤ 5 %)')
    return out


def main():
    out_dir = sys.argv[1] if len(sys.argv) > 1 else "gpu-bench-out"
    bench = load(out_dir, "matvec")
    lines = []
    if bench:
        alt = lambda name: load(out_dir, name)
        lines += kernels(bench,
                         [("vec4 loads", alt("matvec-vec4")), ("u32 loads", alt("matvec-u32")), ("4 rows", alt("matvec-drows4")), ("64 threads", alt("matvec-threads64")), ("128 threads", alt("matvec-threads128")), ("256 threads", alt("matvec-threads256")),
                          ("16 codebook copies", alt("matvec-lutcopies16")), ("32 codebook copies", alt("matvec-lutcopies32")),
                          ("8 rows", alt("matvec-drows8")), ("base binary", alt("matvec-base"))],
                         [("8 rows a workgroup", alt("matvec-prows8")), ("64 × 32 tiles", alt("matvec-tiled")), ("64 × 32 tiles, base binary", alt("matvec-tiled-base")), ("64 × 64 tiles", alt("matvec-tiled64")),
                          ("mat-vec path", alt("matvec-rows")), ("base binary", alt("matvec-base"))]) + [""]
        lines += fixed_and_streaming(bench) + [""]
        lines += attention(bench) + [""]
        lines += select(bench) + [""]
    lines += runs(out_dir) + [""] + profiles(out_dir, bench) + goals(out_dir, bench)
    steps = os.path.join(out_dir, "steps.txt")
    if os.path.exists(steps):
        lines += ["", "Steps:", "```", open(steps).read().rstrip(), "```"]
    print("\n".join(lines))


if __name__ == "__main__":
    main()
