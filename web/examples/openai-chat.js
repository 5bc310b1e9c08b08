// A WebLLM page moved to QINS: only the import and the engine creation differ.
//   WebLLM: import { CreateMLCEngine } from "@mlc-ai/web-llm";
//           const engine = await CreateMLCEngine("SmolLM2-135M-Instruct-q0f16-MLC", { initProgressCallback });
import { CreateQinsEngine } from "../worker/qins-client.js";

const params = new URLSearchParams(location.search);
const status = document.getElementById("status");
const out = document.getElementById("out");
const initProgressCallback = (p) => {
  status.textContent = `${p.stage}: ${(p.bytes_done / 1e6).toFixed(1)} of ${(p.bytes_total / 1e6).toFixed(1)} MB`;
};
const engine = await CreateQinsEngine(params.get("model") ?? "/models/smollm2.lut8g.qins", { initProgressCallback });
status.textContent = "Loaded.";

// From here on, the code is the same as against WebLLM.
const request = {
  messages: [
    { role: "system", content: "You are a helpful assistant." },
    { role: "user", content: params.get("prompt") ?? "Write a haiku about the sea." },
  ],
  max_tokens: Number(params.get("max_tokens") ?? 64),
  temperature: 0.7,
  seed: 1,
};
const chunks = [];
for await (const chunk of await engine.chat.completions.create({
  ...request, stream: true, stream_options: { include_usage: true },
})) {
  chunks.push(chunk);
  out.textContent += chunk.choices[0]?.delta?.content ?? "";
  if (chunk.usage) status.textContent = `${chunk.usage.completion_tokens} tokens`;
}
const whole = await engine.chat.completions.create(request);

// For the end-to-end test (tests/e2e/openai.mjs).
window.qinsEngine = engine;
window.qinsExample = { request, chunks, whole };
