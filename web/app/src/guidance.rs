//! Runtime error kinds (docs/WEB_API.md) turned into what the user can do about them.

pub fn for_kind(kind: &str) -> &'static str {
    match kind {
        "no-webgpu" => {
            "This browser has no WebGPU, and the settings ask for the GPU only. Choose \
             \"GPU, else the CPU\" in the settings to run on the CPU, or use Chrome or Edge \
             113+, Safari 26+ (macOS Tahoe, iOS 26) or Firefox 141+ on Windows. On Linux \
             Chromium, start it with --enable-unsafe-webgpu."
        }
        "no-adapter" => {
            "WebGPU is present but offered no GPU, and the settings ask for the GPU only \
             (\"GPU, else the CPU\" runs on the CPU instead). It may be disabled or \
             blocklisted: check \
             chrome://gpu (or Safari's Feature Flags) and that hardware acceleration is on; \
             Chromium on Linux needs --enable-unsafe-webgpu."
        }
        "adapter-limit" => {
            "This GPU's buffers are too small for this model: its KV cache per layer or one row \
             of a tensor does not fit in one buffer. Pick a smaller model (e.g. SmolLM2-135M) \
             or a shorter context."
        }
        "out-of-memory" => {
            "The GPU ran out of memory. Close other tabs using the GPU, or pick a smaller \
             model or codec."
        }
        "memory-limit" => {
            "This model is too big to run on the CPU in a browser tab (WebAssembly memory \
             holds at most 4 GB). Use a browser with WebGPU, or pick a smaller model or codec."
        }
        "device-lost" => "The GPU device was lost (driver reset or sleep). Load the model again.",
        "http" => "The server did not return the archive. Check the URL.",
        "network" => {
            "The download failed and could not be resumed. Check the connection and retry."
        }
        "checksum" | "truncated-archive" | "corrupt-archive" => {
            "The archive is damaged, so it was not used. Download or convert it again."
        }
        "unsupported-version" => {
            "The archive was written by a newer converter than this page. Update the page or \
             convert the model again."
        }
        "context-full" => "This message alone is longer than the model's context: shorten it.",
        "busy" => "The engine is busy. Stop the current reply first.",
        "not-loaded" => "Load a model first.",
        "aborted" => "Stopped.",
        _ => "Something went wrong; the details are below.",
    }
}
