#!/usr/bin/env python3
"""Load benchmark of the OpenAI-compatible HTTP API: qins-serve next to llama-cpp-python's
OpenAI server (`llama_cpp.server`) on the same model, in the same run, with the same threads.

  python3 scripts/api_bench.py --qins models/smollm2.lut8g.qins \
      --gguf models/SmolLM2-135M-Instruct.Q4_1.gguf [--concurrency 1,4,16] [--max-tokens 32]

For each server and concurrency level it sends streamed chat completions from that many
clients at once (greedy, the same prompts) and prints requests/s, p50 / p99 time to first
token and total latency, and generated tokens/s, one JSON object per row, then a Markdown
table for docs/RESULTS.md. Needs `pip install 'llama-cpp-python[server]'`; on the 2-core EPYC
build machine llama-cpp-python 0.3.36 built with its default -march=native segfaults on any
prompt of more than one token, so it is built there with
CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON"."""
import argparse
import concurrent.futures
import json
import os
import socket
import statistics
import subprocess
import sys
import time
import urllib.request

PROMPTS = [
    "Write a short story about a robot who learns to paint.",
    "Explain why the sky is blue in two sentences.",
    "List three uses of a paperclip.",
    "What is the capital of France, and why is it famous?",
]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_up(base, proc, seconds=300):
    t = time.time()
    while time.time() - t < seconds:
        if proc.poll() is not None:
            sys.exit(f"server exited: {proc.args}")
        try:
            with urllib.request.urlopen(f"{base}/v1/models", timeout=2) as r:
                return json.loads(r.read())["data"][0]["id"]
        except Exception:  # noqa: BLE001 - not up yet
            time.sleep(0.5)
    sys.exit(f"server did not come up: {proc.args}")


def one_request(base, model, prompt, max_tokens):
    body = json.dumps({"model": model, "messages": [{"role": "user", "content": prompt}],
                       "max_tokens": max_tokens, "temperature": 0, "stream": True}).encode()
    req = urllib.request.Request(f"{base}/v1/chat/completions", data=body,
                                 headers={"Content-Type": "application/json"})
    t0 = time.perf_counter()
    ttft, pieces = None, 0
    with urllib.request.urlopen(req, timeout=600) as r:
        for line in r:
            line = line.strip()
            if not line.startswith(b"data:") or line == b"data: [DONE]":
                continue
            chunk = json.loads(line[5:])
            if chunk.get("choices") and chunk["choices"][0].get("delta", {}).get("content"):
                pieces += 1
                if ttft is None:
                    ttft = time.perf_counter() - t0
    return ttft if ttft is not None else time.perf_counter() - t0, time.perf_counter() - t0, pieces


def percentile(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def measure(name, base, model, concurrency, requests, max_tokens):
    one_request(base, model, PROMPTS[0], 4)  # warm up
    t0 = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
        futures = [pool.submit(one_request, base, model, PROMPTS[i % len(PROMPTS)], max_tokens)
                   for i in range(requests)]
        results = [f.result() for f in futures]
    wall = time.perf_counter() - t0
    ttfts = [r[0] * 1e3 for r in results]
    totals = [r[1] * 1e3 for r in results]
    return {"server": name, "concurrency": concurrency, "requests": requests,
            "req_s": requests / wall, "ttft_p50_ms": statistics.median(ttfts),
            "ttft_p99_ms": percentile(ttfts, 99), "total_p50_ms": statistics.median(totals),
            "total_p99_ms": percentile(totals, 99), "pieces_s": sum(r[2] for r in results) / wall}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--qins", required=True)
    ap.add_argument("--gguf", required=True)
    ap.add_argument("--concurrency", default="1,4,16")
    ap.add_argument("--max-tokens", type=int, default=32)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--qins-serve", default="./target/release/qins-serve")
    args = ap.parse_args()
    levels = [int(c) for c in args.concurrency.split(",")]
    servers = []
    qport, lport = free_port(), free_port()
    env = {**os.environ, "RAYON_NUM_THREADS": str(args.threads), "XDG_RUNTIME_DIR": os.environ.get("XDG_RUNTIME_DIR", "/tmp")}
    servers.append(("qins-serve", f"http://127.0.0.1:{qport}", subprocess.Popen(
        [args.qins_serve, "--model", args.qins, "--addr", f"127.0.0.1:{qport}", "--queue", "64",
         "--dist", "/nonexistent", "--models", "/nonexistent"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)))
    servers.append(("llama_cpp.server", f"http://127.0.0.1:{lport}", subprocess.Popen(
        [sys.executable, "-m", "llama_cpp.server", "--model", args.gguf, "--port", str(lport),
         "--n_threads", str(args.threads), "--n_ctx", "2048",
         # By default a new request interrupts the running one: every reply would be cut.
         "--interrupt_requests", "False"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)))
    rows = []
    try:
        models = [wait_up(base, proc) for _, base, proc in servers]
        for level in levels:
            for (name, base, _), model in zip(servers, models):
                row = measure(name, base, model, level, max(2 * level, 8), args.max_tokens)
                print(json.dumps(row), flush=True)
                rows.append(row)
    finally:
        for _, _, proc in servers:
            proc.terminate()
    print("\n| server | clients | requests | req/s | TTFT p50 / p99 (ms) | total p50 / p99 (ms) | text chunks/s |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['server']} | {r['concurrency']} | {r['requests']} | {r['req_s']:.2f} | "
              f"{r['ttft_p50_ms']:.0f} / {r['ttft_p99_ms']:.0f} | {r['total_p50_ms']:.0f} / {r['total_p99_ms']:.0f} | "
              f"{r['pieces_s']:.1f} |")


if __name__ == "__main__":
    main()
