#!/usr/bin/env bash
# The packed CPU engine's aarch64 (NEON) kernels, tested on an x86_64 machine: cross-compiled
# and run under qemu-user against the portable kernels and the decoded reference
# (runtime-wasm/src/cpu/packed/tests.rs). On an aarch64 machine plain `cargo test` runs them.
# Installs what is missing (Debian: qemu-user, the aarch64 cross compilers; the Rust target).
#   ./scripts/neon-test.sh [TEST_FILTER]   (default: packed)
set -euo pipefail
cd "$(dirname "$0")/.."

sudo=""
[ "$(id -u)" -ne 0 ] && sudo="sudo"
if ! command -v qemu-aarch64 >/dev/null || ! command -v aarch64-linux-gnu-g++ >/dev/null; then
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq qemu-user gcc-aarch64-linux-gnu \
    g++-aarch64-linux-gnu libc6-dev-arm64-cross
fi
rustup target list --installed | grep -q '^aarch64-unknown-linux-gnu$' ||
  rustup target add aarch64-unknown-linux-gnu

export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER="qemu-aarch64 -L /usr/aarch64-linux-gnu"
export CC_aarch64_unknown_linux_gnu=aarch64-linux-gnu-gcc
export CXX_aarch64_unknown_linux_gnu=aarch64-linux-gnu-g++
# Its own build folder: the host's stays untouched.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target/aarch64-cross}"
cargo test --release -p qins-runtime --target aarch64-unknown-linux-gnu --lib "${1:-packed}"
