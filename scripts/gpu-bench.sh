#!/usr/bin/env bash
# GPU figures from prebuilt release binaries alone (no Rust toolchain needed), on Linux x86_64
# with an NVIDIA (or any Vulkan) GPU. Two parts:
#
#   scripts/gpu-bench.sh pack [BASE_REV]
#     here: strips target/release's qins-convert, qins-run, qins-bench and qins-inspect into
#     dist-gpu/new (xz-compressed: two sets must travel within the device's 64 MiB), and with
#     BASE_REV also builds that commit in a worktree (target/gpu-base) and packs its qins-run
#     and qins-bench into dist-gpu/base, so one device run measures both (A/B). Adds Debian's
#     libvulkan.so.1 for machines without a Vulkan loader.
#
#   scripts/gpu-bench.sh [BIN_DIR] [OUT_DIR]
#     there: the steps below, most wanted first, each writing OUT_DIR/NAME.json (stdout) and
#     NAME.err as soon as it ends, so a run cut short keeps what it measured. Steps that would
#     start after QINS_BENCH_BUDGET_S seconds (default 480) are skipped and listed as such.
#     QINS_BENCH_QUICK=1 runs only small steps (a smoke test on slow devices such as lavapipe).
#     `python3 scripts/gpu_tables.py OUT_DIR` turns the results into RESULTS.md's tables.
#     On the lent machine (whose tool returns at most 8 files), with dist-gpu carried:
#       scripts/gpu-bench.sh dist-gpu /tmp/gbo; tar czf "$OUT/gbo.tgz" -C /tmp gbo
set -uo pipefail
cd "$(dirname "$0")/.."

if [ "${1:-}" = pack ]; then
  set -e
  rm -rf dist-gpu && mkdir -p dist-gpu/new
  for b in qins-convert qins-run qins-bench qins-inspect; do
    strip -o "dist-gpu/new/$b" "target/release/$b"
  done
  git describe --always --dirty --abbrev=12 > dist-gpu/new/REV
  if [ -n "${2:-}" ]; then
    base=target/gpu-base
    [ -d "$base" ] || git worktree add --detach "$base" "$2"
    git -C "$base" checkout -q --detach "$2"
    (cd "$base" && cargo build --release -p qins-host --bin qins-run --bin qins-bench)
    mkdir -p dist-gpu/base
    for b in qins-run qins-bench; do strip -o "dist-gpu/base/$b" "$base/target/release/$b"; done
    git -C "$base" describe --always --abbrev=12 > dist-gpu/base/REV
  fi
  xz -T0 -6 dist-gpu/*/qins-*
  lib=$(ldconfig -p | awk '/libvulkan.so.1 / && !f {print $NF; f = 1}')
  [ -n "$lib" ] && cp -L "$lib" dist-gpu/libvulkan.so.1
  du -ah dist-gpu
  exit 0
fi

BIN=$(cd "${1:-dist-gpu}" && pwd)
OUT=${2:-gpu-bench-out}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
WORK=${WORK:-$(mktemp -d)}
BUDGET=${QINS_BENCH_BUDGET_S:-480}
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp}"
[ -f "$BIN/libvulkan.so.1" ] && export LD_LIBRARY_PATH="$BIN${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"

# The binaries, unpacked into WORK/new and WORK/base (xz, or Python's lzma where xz is missing).
for set in new base; do
  [ -d "$BIN/$set" ] || continue
  mkdir -p "$WORK/$set"
  for f in "$BIN/$set"/*; do
    name=$(basename "$f" .xz)
    if [ "$f" = "$BIN/$set/$name" ]; then
      cp "$f" "$WORK/$set/$name"
    elif command -v xz >/dev/null; then
      xz -dc "$f" > "$WORK/$set/$name"
    else
      python3 -c 'import lzma, sys; sys.stdout.buffer.write(lzma.open(sys.argv[1]).read())' "$f" > "$WORK/$set/$name"
    fi
    chmod +x "$WORK/$set/$name"
  done
done
NEW=$WORK/new BASE=$WORK/base

# Headless containers: NVIDIA's stock manifest names libGLX_nvidia, which needs an X server
# ("Could not get vkCreateInstance"); the same driver's libEGL_nvidia works without one.
if ldconfig -p | grep -q 'libEGL_nvidia.so.0 '; then
  printf '{"file_format_version":"1.0.0","ICD":{"library_path":"libEGL_nvidia.so.0","api_version":"1.3.0"}}\n' > "$WORK/nvidia_icd.json"
  export VK_ICD_FILENAMES="$WORK/nvidia_icd.json" VK_DRIVER_FILES="$WORK/nvidia_icd.json"
fi
{
  date -u; uname -a; nvidia-smi -L 2>&1
  ls /usr/share/vulkan/icd.d /etc/vulkan/icd.d 2>&1; echo "VK_ICD_FILENAMES=${VK_ICD_FILENAMES:-}"
  for set in new base; do [ -f "$BIN/$set/REV" ] && echo "$set: $(cat "$BIN/$set/REV")"; done
} > "$OUT/system.txt"

step() {  # step NAME COMMAND...: stdout to OUT/NAME.json, stderr to OUT/NAME.err, timed
  local name=$1; shift
  if [ "$SECONDS" -ge "$BUDGET" ]; then
    echo "$name: skipped at $SECONDS s (budget $BUDGET s)" | tee -a "$OUT/steps.txt"
    return
  fi
  if [ ! -x "$1" ]; then
    echo "$name: skipped ($1 not packed)" | tee -a "$OUT/steps.txt"
    return
  fi
  local t0=$SECONDS
  "$@" > "$OUT/$name.json" 2> "$OUT/$name.err"
  echo "$name: exit $? in $((SECONDS - t0)) s" | tee -a "$OUT/steps.txt"
}

# convert NAME ARGS...: a synthetic archive at WORK/NAME.qins and its tensor list.
convert() {
  local name=$1; shift
  step "convert-$name" "$NEW/qins-convert" "$@" -o "$WORK/$name.qins" --json
  step "inspect-$name" "$NEW/qins-inspect" "$WORK/$name.qins" --json
}

if [ "${QINS_BENCH_QUICK:-0}" = 1 ]; then
  q=(--small --iters 2 --reps 2 --json)
  # The main step times the from-memory rows once; the others skip them (minutes on lavapipe).
  qc=("${q[@]}" --no-cold)
  step matvec "$NEW/qins-bench" "${q[@]}" --batch 16 --codecs lut8g,lut4a
  step matvec-base "$BASE/qins-bench" "${q[@]}" --batch 16 --codecs lut8g,lut4a
  step matvec-prows8 "$NEW/qins-bench" "${qc[@]}" --no-probes --batch 16 --codecs lut8g,lut4a --prefill-rows 8
  step matvec-tiled "$NEW/qins-bench" "${qc[@]}" --no-probes --batch 16 --codecs lut8g --prefill tiled
  step matvec-tiled64 "$NEW/qins-bench" "${qc[@]}" --no-probes --batch 16 --codecs lut8g --prefill tiled64
  step matvec-vec4 "$NEW/qins-bench" "${qc[@]}" --no-probes --batch 0 --codecs lut8g,lut4a --decode-loads vec4
  step matvec-u32 "$NEW/qins-bench" "${qc[@]}" --no-probes --batch 0 --codecs lut8g,lut4a --decode-loads u32
  step matvec-drows4 "$NEW/qins-bench" "${qc[@]}" --no-probes --batch 0 --codecs lut8g,lut4a --decode-rows 4
  step matvec-threads256 "$NEW/qins-bench" "${qc[@]}" --no-probes --batch 0 --codecs lut8g,lut4a --decode-threads 256
  step matvec-threads64 "$NEW/qins-bench" "${qc[@]}" --no-probes --batch 0 --codecs lut8g,lut4a --decode-threads 64
  convert smollm2-lut8g --synthetic smollm2-135m --synthetic-layers 2 --codec lut8g
  run=("$WORK/smollm2-lut8g.qins" --backend gpu --bench --max-tokens 4 --ctx 256)
  step run-smollm2-lut8g "$NEW/qins-run" "${run[@]}"
  step run-smollm2-lut8g-nospec "$NEW/qins-run" "${run[@]}" --no-speculation
  step run-smollm2-lut8g-p96 "$NEW/qins-run" "${run[@]}" --bench-prompt 96
  step run-smollm2-lut8g-p96-tiled "$NEW/qins-run" "${run[@]}" --bench-prompt 96 --prefill tiled
  step run-smollm2-lut8g-p96-prows8 "$NEW/qins-run" "${run[@]}" --bench-prompt 96 --prefill-rows 8
  step run-smollm2-lut8g-base "$BASE/qins-run" "${run[@]}"
  step run-smollm2-lut8g-vec4 "$NEW/qins-run" "${run[@]}" --decode-loads vec4
  step run-smollm2-lut8g-split "$NEW/qins-run" "${run[@]}" --decode-attention split
  step run-smollm2-lut8g-profile "$NEW/qins-run" "${run[@]}" --profile
  step run-smollm2-lut8g-p96-profile "$NEW/qins-run" "${run[@]}" --bench-prompt 96 --profile
  exit 0
fi

# The archives: synthetic weights in the models' exact shapes, each matrix's first 256 rows
# fitted and repeated down it (`--repeat-rows`: the stored sizes and layout of a full
# conversion, which took 3 minutes a codec for Phi-3.5 here and crowded out the lut4a runs).
# Made in the background (on 3/4 of the cores, leaving the kernel steps' host side its own)
# while the GPU runs the other steps; each model's runs wait for its archive.
for m in "smollm2-lut8g smollm2-135m lut8g" "phi35-lut8g phi-3.5-mini lut8g" "phi35-lut4a phi-3.5-mini lut4a"; do
  set -- $m
  RAYON_NUM_THREADS=$(( $(nproc) * 3 / 4 + 1 )) convert "$1" --synthetic "$2" --codec "$3" --repeat-rows 256
  touch "$WORK/$1.made"
done &
made() { until [ -e "$WORK/$1.made" ]; do sleep 1; done; }

# Options that make the base binary run this one's defaults where its own differ (none when
# they are the same), e.g. QINS_BASE_OPTS="--decode-rows 8 --prefill rows" for 96e043c.
read -ra same <<< "${QINS_BASE_OPTS:-}"

# Kernels: decode mat-vecs against the copy kernel, the fixed costs of a token, 64-token
# prefill batches; the defaults (8 decode rows, threads by the tensor's rows, x as vectors, the
# mat-vec prefill path of 4 rows), then each open alternative, and the base binary with the
# same options. The tiled prefill kernels run again, this binary's against the base's (session
# 36 took their workgroup-memory stores' bank conflicts out). Alternatives that lost on the
# H200 twice or more (16-byte code loads for 4-bit codes and words for 8-bit ones, split
# attention below 256 positions, unfused inputs) stay flags but no longer run here:
# docs/RESULTS.md has them.
k=(--iters 50 --reps 10 --codecs lut8g,lut4a --json)
step matvec "$NEW/qins-bench" "${k[@]}" --batch 64
step matvec-base "$BASE/qins-bench" "${k[@]}" --batch 64 "${same[@]}"
step matvec-tiled "$NEW/qins-bench" "${k[@]}" --batch 64 --no-probes --no-cold --prefill tiled
step matvec-tiled-base "$BASE/qins-bench" "${k[@]}" --batch 64 --no-probes --no-cold --prefill tiled
step matvec-tiled64 "$NEW/qins-bench" "${k[@]}" --batch 64 --no-probes --no-cold --prefill tiled64
step matvec-prows8 "$NEW/qins-bench" "${k[@]}" --batch 64 --no-probes --no-cold --prefill-rows 8
step matvec-threads64 "$NEW/qins-bench" "${k[@]}" --batch 0 --no-probes --decode-threads 64
step matvec-threads256 "$NEW/qins-bench" "${k[@]}" --batch 0 --no-probes --decode-threads 256
# The small model end to end: decode, its GPU time per kernel, a 512-token prompt, the base
# binary with the same options (and its time per kernel), a long context.
made smollm2-lut8g
run=("$WORK/smollm2-lut8g.qins" --backend gpu --bench --ctx 4096)
step run-smollm2-lut8g "$NEW/qins-run" "${run[@]}" --max-tokens 64
# Without the next step queued before the read-back (session 39's A/B), greedy and drawn
# (top-k 40: the GPU draws too, the host's draw confirms it).
step run-smollm2-lut8g-nospec "$NEW/qins-run" "${run[@]}" --max-tokens 64 --no-speculation
topk=(--temperature 0.7 --top-k 40 --top-p 0.95 --seed 1)
step run-smollm2-lut8g-topk "$NEW/qins-run" "${run[@]}" --max-tokens 64 "${topk[@]}"
step run-smollm2-lut8g-topk-nospec "$NEW/qins-run" "${run[@]}" --max-tokens 64 "${topk[@]}" --no-speculation
step run-smollm2-lut8g-profile "$NEW/qins-run" "${run[@]}" --max-tokens 64 --profile
step run-smollm2-lut8g-p512 "$NEW/qins-run" "${run[@]}" --max-tokens 8 --bench-prompt 512
step run-smollm2-lut8g-base "$BASE/qins-run" "${run[@]}" --max-tokens 64 "${same[@]}"
step run-smollm2-lut8g-base-profile "$BASE/qins-run" "${run[@]}" --max-tokens 64 --profile "${same[@]}"
step run-smollm2-lut8g-p3000 "$NEW/qins-run" "${run[@]}" --max-tokens 64 --bench-prompt 3000
# Phi-3.5-mini's shapes: decode (and per kernel), a 512-token prompt on the mat-vec path and
# tiled (and per kernel), in the default 64-token batches and in 512 (a whole prompt a batch: 8 times the
# workgroups a tiled dispatch has), each against the base binary; the base's decode, the other
# decode variants, WebGPU's default binding limit.
for codec in lut8g lut4a; do
  made "phi35-$codec"
  run=("$WORK/phi35-$codec.qins" --backend gpu --bench --ctx 1024)
  p512=("${run[@]}" --max-tokens 8 --bench-prompt 512)
  step "run-phi35-$codec" "$NEW/qins-run" "${run[@]}" --max-tokens 64
  step "run-phi35-$codec-nospec" "$NEW/qins-run" "${run[@]}" --max-tokens 64 --no-speculation
  step "run-phi35-$codec-profile" "$NEW/qins-run" "${run[@]}" --max-tokens 16 --profile
  step "run-phi35-$codec-p512" "$NEW/qins-run" "${p512[@]}"
  # Where the prompt's time goes, per kernel (binaries from session 38 on), on both paths.
  step "run-phi35-$codec-p512-profile" "$NEW/qins-run" "${p512[@]}" --profile
  step "run-phi35-$codec-p512-tiled-profile" "$NEW/qins-run" "${p512[@]}" --prefill tiled --profile
  step "run-phi35-$codec-p512-base" "$BASE/qins-run" "${p512[@]}" "${same[@]}"
  step "run-phi35-$codec-p512-tiled" "$NEW/qins-run" "${p512[@]}" --prefill tiled
  step "run-phi35-$codec-p512-tiled-base" "$BASE/qins-run" "${p512[@]}" --prefill tiled
  step "run-phi35-$codec-p512-batch512" "$NEW/qins-run" "${p512[@]}" --prefill-batch 512
  step "run-phi35-$codec-p512-batch512-base" "$BASE/qins-run" "${p512[@]}" --prefill-batch 512 "${same[@]}"
  step "run-phi35-$codec-p512-tiled-batch512" "$NEW/qins-run" "${p512[@]}" --prefill tiled --prefill-batch 512
  step "run-phi35-$codec-p512-tiled-batch512-base" "$BASE/qins-run" "${p512[@]}" --prefill tiled --prefill-batch 512
  step "run-phi35-$codec-p512-tiled64-batch512" "$NEW/qins-run" "${p512[@]}" --prefill tiled64 --prefill-batch 512
  step "run-phi35-$codec-p512-prows8-batch512" "$NEW/qins-run" "${p512[@]}" --prefill-rows 8 --prefill-batch 512
  step "run-phi35-$codec-base" "$BASE/qins-run" "${run[@]}" --max-tokens 64 "${same[@]}"
  step "run-phi35-$codec-base-profile" "$BASE/qins-run" "${run[@]}" --max-tokens 16 --profile "${same[@]}"
  step "run-phi35-$codec-binding128mib" "$NEW/qins-run" "${run[@]}" --max-tokens 64 --max-binding 134217728
  step "run-phi35-$codec-threads64" "$NEW/qins-run" "${run[@]}" --max-tokens 64 --decode-threads 64
  step "run-phi35-$codec-threads256" "$NEW/qins-run" "${run[@]}" --max-tokens 64 --decode-threads 256
  rm -f "$WORK/phi35-$codec.qins"
done
step matvec-other-codecs "$NEW/qins-bench" --iters 50 --reps 10 --batch 64 --codecs lut8,qins8,f16 --json
echo "done at $SECONDS s" | tee -a "$OUT/steps.txt"
