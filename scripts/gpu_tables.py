#!/usr/bin/env python3
"""RESULTS.md's GPU tables from a `scripts/gpu-bench.sh` output folder, and issue 20's goals
computed from them: python3 scripts/gpu_tables.py OUT_DIR. Missing steps are left out (a run
cut short still gives what it measured)."""
import json
import os
import sys


def load(out, name):
    try:
        with open(os.path.join(out, name + ".json")) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def by_kernel(bench):
    return {(r["kernel"], r.get("shape")): r for r in (bench or {}).get("results", [])}


def kernels(bench, rows_bench, vec4_bench, base, t64_bench, drows8_bench):
    """Decode mat-vecs (GB/s, share of the copy kernel) and prefill batches, per codec and shape."""
    copy = bench["copy_gb_s"]
    pre_rows, vec4, old = by_kernel(rows_bench), by_kernel(vec4_bench), by_kernel(base)
    t64, drows8 = by_kernel(t64_bench), by_kernel(drows8_bench)
    out = [f'Device: `{bench["device"]}`; copy kernel {copy:.0f} GB/s; a submission waited on and '
           f'read back {bench["submit_us"]:.1f} µs; a dispatch inside a submission {bench["dispatch_us"]:.2f} µs.', "",
           "| codec | shape | decode µs | GB/s | of copy | vec4 loads: of copy | 8 rows a workgroup: of copy | "
           "every code equal: of copy | "
           "norm or SiLU fused: µs | "
           "one dispatch per submission (before) | prefill 64 tok/s tiled | GFLOP/s | 64 × 64 tiles tok/s | "
           "mat-vec path tok/s | tiled / mat-vec |",
           "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    here = by_kernel(bench)
    res = bench["results"]
    for r in res:
        if not r["kernel"].startswith("matvec") or r["kernel"].endswith("one code"):
            continue
        codec = r["kernel"].split(" ", 1)[1]
        pre = next((p for p in res if p["kernel"] == "prefill " + codec and p["shape"] == r["shape"]), None)
        alt = pre_rows.get(("prefill " + codec, r["shape"]))
        wide64 = t64.get(("prefill " + codec, r["shape"]))
        before = old.get((r["kernel"], r["shape"]))
        wide = vec4.get((r["kernel"], r["shape"]))
        eight = drows8.get((r["kernel"], r["shape"]))
        fused = here.get(("fused " + r["kernel"], r["shape"]))
        same = here.get((r["kernel"] + " one code", r["shape"]))
        cells = [codec, r["shape"], f'{r["us"]:.1f}', f'{r["gb_s"]:.3g}', f'{100 * r["fraction_of_copy"]:.0f} %',
                 f'{100 * wide["fraction_of_copy"]:.0f} %' if wide else "—",
                 f'{100 * eight["fraction_of_copy"]:.0f} %' if eight else "—",
                 f'{100 * same["fraction_of_copy"]:.0f} %' if same else "—",
                 f'{fused["us"]:.1f}' if fused else "—",
                 f'{before["gb_s"]:.3g} GB/s' if before else "—",
                 f'{pre["tok_s"]:.0f}' if pre else "—", f'{pre["gflop_s"]:.3g}' if pre else "—",
                 f'{wide64["tok_s"]:.0f}' if wide64 else "—",
                 f'{alt["tok_s"]:.0f}' if alt else "—",
                 f'{pre["tok_s"] / alt["tok_s"]:.2f}×' if pre and alt else "—"]
        out.append("| " + " | ".join(cells) + " |")
    return out


def attention(bench):
    """A decoded token's attention at two context lengths, whole-context and split kernels."""
    res = by_kernel(bench)
    shapes = sorted({r["shape"] for r in bench["results"] if r["kernel"].startswith("attention")})
    out = ["| heads, context | whole µs | GB/s | split µs | GB/s | split / whole speed |",
           "|---|---:|---:|---:|---:|---:|"]
    for s in shapes:
        w, p = res.get(("attention whole", s)), res.get(("attention split", s))
        if w and p:
            out.append(f'| {s} | {w["us"]:.1f} | {w["gb_s"]:.3g} | {p["us"]:.1f} | {p["gb_s"]:.3g} | '
                       f'{w["us"] / p["us"]:.2f}× |')
    return out if len(out) > 2 else []


def runs(out_dir):
    """Every end-to-end run, one row each."""
    out = ["| run | prompt tokens | prefill tok/s | TTFT ms | decode tok/s | dispatches / token | GPU MB | load s |",
           "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for f in sorted(os.listdir(out_dir)):
        if not (f.startswith("run-") and f.endswith(".json")):
            continue
        r = load(out_dir, f[:-5])
        if not r:
            continue
        disp = (r.get("engine") or {}).get("dispatches_per_token") or "—"
        gpu = r.get("gpu_bytes")
        out.append(f'| {f[4:-5]} | {r["prompt_tokens"]} | {r["prefill_tok_s"]:.0f} | {r["ttft_ms"]:.0f} | '
                   f'{r["decode_tok_s"]:.1f} | {disp} | {gpu / 1e6:.0f} | {r["load_s"]:.2f} |'
                   if gpu else f'| {f[4:-5]} | {r["prompt_tokens"]} | {r["prefill_tok_s"]:.0f} | '
                   f'{r["ttft_ms"]:.0f} | {r["decode_tok_s"]:.1f} | {disp} | — | {r["load_s"]:.2f} |')
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
        ins = load(out_dir, "inspect-" + name)
        role_bytes = {}
        for t in (ins or {}).get("tensors", []):
            role = t["name"].split(".", 2)[2] if t["name"].startswith("layers.") else t["name"]
            role_bytes["matvec " + role] = role_bytes.get("matvec " + role, 0) + t["bytes"]
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
    return out


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
                f = r["fraction_of_copy"]
                out.append(f'- decode mat-vec {r["kernel"][7:]} {r["shape"]}: {100 * f:.0f} % of copy '
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
        lines += kernels(bench, load(out_dir, "matvec-rows"), load(out_dir, "matvec-vec4"),
                         load(out_dir, "matvec-base"), load(out_dir, "matvec-tiled64"),
                         load(out_dir, "matvec-drows8")) + [""]
        lines += attention(bench) + [""]
    lines += runs(out_dir) + [""] + profiles(out_dir, bench) + goals(out_dir, bench)
    steps = os.path.join(out_dir, "steps.txt")
    if os.path.exists(steps):
        lines += ["", "Steps:", "```", open(steps).read().rstrip(), "```"]
    print("\n".join(lines))


if __name__ == "__main__":
    main()
