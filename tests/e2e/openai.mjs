// OpenAI's chat API in the page (qins-client.js, web/examples/openai-chat.*) in headless
// Chromium: streamed chunks and the whole reply, their shapes, stop strings, text completions,
// interruptGenerate and refused fields.
// Usage: node tests/e2e/openai.mjs BASE_URL   (scripts/dev.sh e2e sets it up)
import assert from "node:assert/strict";
import { launch } from "./chromium.mjs";

const [base] = process.argv.slice(2);
const browser = await launch();
let failed = false;
try {
  const page = await browser.newPage();
  page.on("console", (m) => console.error(`[page] ${m.text()}`));
  page.on("pageerror", (e) => { failed = true; console.error(`page error: ${e.message}`); });
  await page.goto(`${base}/examples/openai-chat.html?model=/models/tiny.qins&max_tokens=12&prompt=Hello`);
  await page.waitForFunction(() => window.qinsExample, null, { timeout: 180_000 });
  const { chunks, whole } = await page.evaluate(() => window.qinsExample);

  // The whole reply's shape.
  assert.equal(whole.object, "chat.completion");
  assert.equal(whole.model, "tiny");
  const choice = whole.choices[0];
  assert.equal(choice.message.role, "assistant");
  assert.ok(["stop", "length"].includes(choice.finish_reason), choice.finish_reason);
  assert.equal(whole.usage.total_tokens, whole.usage.prompt_tokens + whole.usage.completion_tokens);
  assert.ok(whole.usage.completion_tokens <= 12);

  // The stream's: role first, content deltas, one finish reason, then the usage chunk.
  assert.deepEqual(chunks[0].choices[0].delta, { role: "assistant", content: "" });
  assert.ok(chunks.every((c) => c.object === "chat.completion.chunk" && c.id === chunks[0].id));
  const text = chunks.map((c) => c.choices[0]?.delta?.content ?? "").join("");
  assert.equal(text, choice.message.content, "same seed, same reply, streamed or not");
  const finishes = chunks.filter((c) => c.choices[0]?.finish_reason).map((c) => c.choices[0].finish_reason);
  assert.deepEqual(finishes, [choice.finish_reason]);
  const last = chunks.at(-1);
  assert.deepEqual(last.choices, []);
  assert.deepEqual(last.usage, whole.usage);

  // Stop strings end the reply before them, never sent; text completions; refusals; interrupt.
  const more = await page.evaluate(async () => {
    const engine = window.qinsEngine;
    const ask = { messages: [{ role: "user", content: "Tell me more." }], max_tokens: 40, temperature: 1.0, seed: 3 };
    const full = (await engine.chat.completions.create(ask)).choices[0].message.content;
    const stop = full.slice(3, 6);
    const stopped = await engine.chat.completions.create({ ...ask, stop: [stop] });
    let streamedStop = "";
    for await (const c of await engine.chat.completions.create({ ...ask, stop, stream: true })) {
      streamedStop += c.choices[0]?.delta?.content ?? "";
    }
    const text = await engine.completions.create({ prompt: "Once upon a time", max_tokens: 5, seed: 2 });
    let refused = null;
    try { await engine.chat.completions.create({ ...ask, n: 2 }); } catch (e) { refused = e.kind; }
    const long = await engine.chat.completions.create({ ...ask, max_tokens: 400, stream: true });
    let n = 0, interrupted = null;
    for await (const c of long) {
      if (++n === 3) engine.interruptGenerate();
      if (c.choices[0]?.finish_reason) interrupted = c.choices[0].finish_reason;
    }
    const after = await engine.chat.completions.create({ ...ask, max_tokens: 2 });
    return { full, stop, stopped: stopped.choices[0], streamedStop, text, refused, interrupted, after: after.choices[0].finish_reason };
  });
  assert.ok(more.full.length >= 6, JSON.stringify(more.full));
  const cut = more.full.indexOf(more.stop);
  assert.equal(more.stopped.message.content, more.full.slice(0, cut));
  assert.equal(more.stopped.finish_reason, "stop");
  assert.equal(more.streamedStop, more.full.slice(0, cut));
  assert.equal(more.text.object, "text_completion");
  assert.ok(typeof more.text.choices[0].text === "string" && more.text.usage.completion_tokens <= 5);
  assert.equal(more.refused, "bad-request");
  assert.ok(["abort", "stop"].includes(more.interrupted), more.interrupted);
  assert.ok(["stop", "length"].includes(more.after), "the engine is usable after an interrupt");
} catch (e) {
  failed = true;
  console.error(e.stack || String(e));
} finally {
  await browser.close();
}
if (failed) process.exit(1);
console.log("openai in the page: ok");
