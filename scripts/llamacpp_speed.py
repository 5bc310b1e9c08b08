#!/usr/bin/env python3
"""llama.cpp's CPU speed on the same model, prompt and token counts as `qins-run --bench`
(the peer figure for docs/RESULTS.md):  python3 scripts/llamacpp_speed.py GGUF [TYPE ...]
Prints one JSON object per type (default F32 Q8_0): prefill and decode tokens/s, TTFT.
PROMPT_TOKENS=N repeats the prompt's tokens to N, as `qins-run --bench --bench-prompt N` does."""
import json
import os
import sys
import tempfile
import time

import llama_cpp

from llamacpp_quality import quantize

PROMPT = ("<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
          "<|im_start|>user\nWrite a short story about a robot who learns to paint.<|im_end|>\n<|im_start|>assistant\n")


def main():
    src = sys.argv[1]
    types = sys.argv[2:] or ["F32", "Q8_0"]
    tmp = tempfile.mkdtemp()
    f32 = os.path.join(tmp, "F32.gguf")
    quantize(src, f32, "F32")
    for ty in types:
        path = f32 if ty == "F32" else os.path.join(tmp, f"{ty}.gguf")
        if ty != "F32":
            quantize(f32, path, ty)
        n = int(os.environ.get("PROMPT_TOKENS", 0))
        ctx = max(512, n + 128)  # the scores array has n_batch rows
        llm = llama_cpp.Llama(model_path=path, n_ctx=ctx, n_batch=ctx, verbose=False, n_threads=int(os.environ.get("THREADS", os.cpu_count())))
        toks = llm.tokenize(PROMPT.encode(), add_bos=False, special=True)
        if n:
            toks = [toks[i % len(toks)] for i in range(n)]
        t0 = time.perf_counter()
        llm.eval(toks)
        t1 = time.perf_counter()
        for _ in range(64):
            logits = llm.scores[llm.n_tokens - 1]
            llm.eval([int(logits.argmax())])
        t2 = time.perf_counter()
        print(json.dumps({"name": f"llama.cpp {ty}", "prompt_tokens": len(toks), "prefill_tok_s": len(toks) / (t1 - t0),
                          "ttft_ms": (t1 - t0) * 1e3, "decode_tok_s": 64 / (t2 - t1)}), flush=True)


if __name__ == "__main__":
    main()
