#!/usr/bin/env python3
"""llama.cpp's own formats scored exactly as qins-eval scores ours: perplexity, mean KL divergence
from the F32 weights and top-1 agreement, on the same windows of the same tokens.

  python3 scripts/llamacpp_quality.py GGUF TEXT [--ctx 512] [--max-chunks N] [--types Q8_0,Q4_K_M]

The GGUF (SmolLM2's Q4_1) is requantized by llama.cpp to F32 (the reference, matching qins' f32
archive) and from that F32 to each type; prints one JSON object per type (needs llama-cpp-python).
"""
import argparse
import json
import os
import tempfile

import gguf
import llama_cpp
import numpy as np

FTYPES = {"F32": llama_cpp.LLAMA_FTYPE_ALL_F32, "Q8_0": llama_cpp.LLAMA_FTYPE_MOSTLY_Q8_0,
          "Q4_K_M": llama_cpp.LLAMA_FTYPE_MOSTLY_Q4_K_M, "Q4_0": llama_cpp.LLAMA_FTYPE_MOSTLY_Q4_0,
          "Q4_1": llama_cpp.LLAMA_FTYPE_MOSTLY_Q4_1, "Q6_K": llama_cpp.LLAMA_FTYPE_MOSTLY_Q6_K,
          "IQ4_NL": llama_cpp.LLAMA_FTYPE_MOSTLY_IQ4_NL}


def quantize(src, dst, ftype):
    p = llama_cpp.llama_model_quantize_default_params()
    p.ftype = FTYPES[ftype]
    p.allow_requantize = True
    assert llama_cpp.llama_model_quantize(src.encode(), dst.encode(), p) == 0, ftype


def window_logprobs(llm, window):
    llm.reset()
    llm.eval(window)
    logits = np.array(llm.scores[: len(window)], dtype=np.float64)
    logits -= logits.max(axis=1, keepdims=True)
    return logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("gguf")
    ap.add_argument("text")
    ap.add_argument("--ctx", type=int, default=512)
    ap.add_argument("--max-chunks", type=int, default=None)
    ap.add_argument("--types", default="Q8_0,Q4_K_M")
    a = ap.parse_args()
    tmp = tempfile.mkdtemp()
    f32 = os.path.join(tmp, "F32.gguf")
    quantize(a.gguf, f32, "F32")
    kw = dict(n_ctx=a.ctx, n_batch=a.ctx, logits_all=True, verbose=False)
    ref = llama_cpp.Llama(model_path=f32, **kw)
    tokens = ref.tokenize(open(a.text, encoding="utf-8").read().encode(), add_bos=False, special=True)
    chunks = len(tokens) // a.ctx
    if a.max_chunks:
        chunks = min(chunks, a.max_chunks)
    windows = [tokens[c * a.ctx:(c + 1) * a.ctx] for c in range(chunks)]
    first = a.ctx // 2
    ref_lp = [window_logprobs(ref, w)[first:a.ctx - 1] for w in windows]
    del ref
    for ty in ["F32"] + a.types.split(","):
        path = f32 if ty == "F32" else os.path.join(tmp, f"{ty}.gguf")
        if ty != "F32":
            quantize(f32, path, ty)
        llm = llama_cpp.Llama(model_path=path, **kw)
        nll = kl = agree = count = 0.0
        for w, rlp in zip(windows, ref_lp):
            lp = window_logprobs(llm, w)[first:a.ctx - 1]
            targets = np.array(w[first + 1:a.ctx])
            nll -= lp[np.arange(len(targets)), targets].sum()
            kl += (np.exp(rlp) * (rlp - lp)).sum()
            agree += (rlp.argmax(axis=1) == lp.argmax(axis=1)).sum()
            count += len(targets)
        size = os.path.getsize(path)
        # Bits/weight counted as for qins archives: stored tensor bytes (no tokenizer metadata)
        # over every parameter.
        tensors = gguf.GGUFReader(path).tensors
        tensor_bytes = sum(int(t.n_bytes) for t in tensors)
        all_params = sum(int(t.n_elements) for t in tensors)
        print(json.dumps({"name": f"llama.cpp {ty}", "ppl": float(np.exp(nll / count)), "kld_mean": float(kl / count),
                          "top1_agree": float(agree / count), "tokens": int(count), "file_bytes": size,
                          "tensor_bytes": tensor_bytes, "bpw": tensor_bytes * 8 / all_params}), flush=True)
        del llm


if __name__ == "__main__":
    main()
