#!/usr/bin/env bash
# GPU figures from prebuilt release binaries alone (no Rust toolchain needed), on Linux x86_64
# with an NVIDIA (or any Vulkan) GPU:
#   scripts/gpu-bench.sh [BIN_DIR] [OUT_DIR]
# BIN_DIR holds qins-convert, qins-run, qins-bench and optionally libvulkan.so.1 (Debian's
# libvulkan1, for machines without a Vulkan loader); `scripts/gpu-bench.sh pack` fills
# dist-gpu/ with them from target/release. Results land in OUT_DIR as JSON files, each written
# as soon as its step ends, so a run cut short keeps what it measured.
# QINS_BENCH_QUICK=1 runs only the small steps (a smoke test on slow devices such as lavapipe).
set -uo pipefail
cd "$(dirname "$0")/.."

if [ "${1:-}" = pack ]; then
  mkdir -p dist-gpu
  for b in qins-convert qins-run qins-bench; do strip -o "dist-gpu/$b" "target/release/$b"; done
  lib=$(ldconfig -p | awk '/libvulkan.so.1 /{print $NF; exit}')
  [ -n "$lib" ] && cp -L "$lib" dist-gpu/libvulkan.so.1
  ls -la dist-gpu
  exit 0
fi

BIN=$(cd "${1:-dist-gpu}" && pwd)
OUT=${2:-gpu-bench-out}
mkdir -p "$OUT"
WORK=${WORK:-$(mktemp -d)}
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp}"
[ -f "$BIN/libvulkan.so.1" ] && export LD_LIBRARY_PATH="$BIN${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"

# Headless containers: NVIDIA's stock manifest names libGLX_nvidia, which needs an X server
# ("Could not get vkCreateInstance"); the same driver's libEGL_nvidia works without one.
if ldconfig -p | grep -q 'libEGL_nvidia.so.0 '; then
  printf '{"file_format_version":"1.0.0","ICD":{"library_path":"libEGL_nvidia.so.0","api_version":"1.3.0"}}\n' > "$WORK/nvidia_icd.json"
  export VK_ICD_FILENAMES="$WORK/nvidia_icd.json" VK_DRIVER_FILES="$WORK/nvidia_icd.json"
fi
{
  date -u; uname -a; nvidia-smi -L 2>&1
  ls /usr/share/vulkan/icd.d /etc/vulkan/icd.d 2>&1; echo "VK_ICD_FILENAMES=${VK_ICD_FILENAMES:-}"
} > "$OUT/system.txt"

step() {  # step NAME COMMAND...: stdout to OUT/NAME.json, stderr to OUT/NAME.err, timed
  local name=$1; shift
  local t0=$SECONDS
  "$@" > "$OUT/$name.json" 2> "$OUT/$name.err"
  echo "$name: exit $? in $((SECONDS - t0)) s" | tee -a "$OUT/steps.txt"
}

if [ "${QINS_BENCH_QUICK:-0}" = 1 ]; then
  step matvec "$BIN/qins-bench" --small --iters 3 --codecs lut8 --json
  step convert-smollm2-lut8g "$BIN/qins-convert" --synthetic smollm2-135m --synthetic-layers 2 --codec lut8g -o "$WORK/s.qins" --json
  step run-smollm2-lut8g "$BIN/qins-run" "$WORK/s.qins" --backend gpu --bench --max-tokens 4 --ctx 256
  step run-smollm2-lut8g-split "$BIN/qins-run" "$WORK/s.qins" --backend gpu --bench --max-tokens 4 --ctx 256 --max-binding 4194304
  exit 0
fi

# Most wanted first: a lent machine's time may run out part-way.
step matvec "$BIN/qins-bench" --iters 100 --json
step matvec-no-subgroups "$BIN/qins-bench" --iters 100 --json --codecs lut8g,lut4a --no-subgroups
step matvec-f16-compute "$BIN/qins-bench" --iters 100 --json --codecs lut8g,lut4a --compute f16
for codec in lut8g lut4a lut8; do
  step "convert-smollm2-$codec" "$BIN/qins-convert" --synthetic smollm2-135m --codec "$codec" -o "$WORK/smollm2.qins" --json
  step "run-smollm2-$codec" "$BIN/qins-run" "$WORK/smollm2.qins" --backend gpu --bench --max-tokens 64 --ctx 1024
done
for codec in lut8g lut4a lut8; do
  step "convert-phi35-$codec" "$BIN/qins-convert" --synthetic phi-3.5-mini --codec "$codec" -o "$WORK/phi35.qins" --json
  step "run-phi35-$codec" "$BIN/qins-run" "$WORK/phi35.qins" --backend gpu --bench --max-tokens 64 --ctx 1024
  if [ "$codec" = lut8g ]; then
    # The KV cache at full context: f16 (default) vs f32, memory and speed.
    for kv in f16 f32; do
      step "run-phi35-$codec-ctx4096-kv$kv" "$BIN/qins-run" "$WORK/phi35.qins" --backend gpu --bench --max-tokens 64 --ctx 4096 --kv-cache "$kv"
    done
    # WebGPU's default 128 MiB binding limit: every big tensor split by rows.
    step "run-phi35-$codec-binding128mib" "$BIN/qins-run" "$WORK/phi35.qins" --backend gpu --bench --max-tokens 64 --ctx 1024 --max-binding 134217728
    # A/B of the kernel variants: workgroup-memory reductions (the browser's path) and f16 products.
    step "run-phi35-$codec-no-subgroups" "$BIN/qins-run" "$WORK/phi35.qins" --backend gpu --bench --max-tokens 64 --ctx 1024 --no-subgroups
    step "run-phi35-$codec-compute-f16" "$BIN/qins-run" "$WORK/phi35.qins" --backend gpu --bench --max-tokens 64 --ctx 1024 --compute f16
  fi
  rm -f "$WORK/phi35.qins"
done
