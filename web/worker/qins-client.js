// Page-side wrapper around the engine worker: promises and callbacks instead of messages.
// Usage:
//   const qins = new QinsClient();
//   const info = await qins.load(url, { cache: true }, (p) => ...);
//   const stats = await qins.generate([{ role: "user", content: "Hi" }], { temperature: 0.7 }, (t) => ...);
// Failures reject with an Error whose `kind` is one of the kinds in docs/WEB_API.md.
//
// OpenAI's chat API, as WebLLM offers it (a page written for WebLLM changes its import and
// engine creation only):
//   const engine = await CreateQinsEngine("/models/smollm2.lut8g.qins", { initProgressCallback });
//   const reply = await engine.chat.completions.create({ messages, max_tokens: 128 });
//   for await (const chunk of await engine.chat.completions.create({ messages, stream: true })) …
//   engine.interruptGenerate();
// Types: qins-client.d.ts.

export class QinsClient {
  constructor(workerUrl = new URL("./qins-worker.js", import.meta.url)) {
    /** OpenAI's `chat.completions.create` and `completions.create`, on this engine. */
    this.chat = { completions: { create: (request) => this.createCompletion(request, "chat") } };
    this.completions = { create: (request) => this.createCompletion(request, "text") };
    this.info = null;
    this.modelId = null;
    this.worker = new Worker(workerUrl, { type: "module" });
    this.pending = new Map();
    this.nextId = 1;
    this.started = new Promise((resolve, reject) => {
      this.worker.addEventListener("error", (e) => reject(new Error(e.message || "worker failed")));
      this.worker.addEventListener("message", (e) => {
        const m = e.data;
        if (m.type === "started") return resolve();
        if (m.type === "error" && m.id === null) return reject(withKind(m));
        this.dispatch(m);
      });
    });
  }

  dispatch(m) {
    const p = this.pending.get(m.id);
    if (!p) return;
    if (m.type === "progress" || m.type === "token") return p.onEvent && p.onEvent(m.data);
    this.pending.delete(m.id);
    if (m.type === "error") p.reject(withKind(m));
    else p.resolve(m.data);
  }

  async request(type, fields, onEvent) {
    await this.started;
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject, onEvent });
      this.worker.postMessage({ type, id, ...fields });
    });
  }

  async load(url, options = {}, onProgress) {
    // Relative to the page, not to the worker's script.
    const absolute = new URL(url, globalThis.location?.href).href;
    this.info = await this.request("load", { url: absolute, options }, onProgress);
    this.modelId = absolute.split("/").pop().replace(/\.qins$/, "");
    return this.info;
  }
  /** WebLLM's name for load. */
  reload(url, options = {}) {
    return this.load(url, options, options.initProgressCallback);
  }
  /** WebLLM's name for abort: a streamed reply then ends with finish_reason "abort". */
  interruptGenerate() {
    this.abort();
  }

  /**
   * OpenAI's request → the engine's generate options; what would change the output and is not
   * supported is refused with kind "bad-request", as the HTTP API does.
   */
  generateOptions(req) {
    const refuse = (what) => {
      throw withKind({ kind: "bad-request", message: `${what} is not supported by this engine` });
    };
    if (req.n != null && req.n !== 1) refuse("n other than 1");
    if (req.frequency_penalty) refuse("frequency_penalty (use repetition_penalty)");
    if (req.presence_penalty) refuse("presence_penalty (use repetition_penalty)");
    if (req.logprobs) refuse("logprobs");
    if (req.tools?.length) refuse("tools");
    if (req.response_format && req.response_format.type !== "text") refuse("a response_format other than text");
    const g = this.info?.generation ?? {};
    const stop = req.stop == null ? [] : Array.isArray(req.stop) ? req.stop : [req.stop];
    return {
      temperature: req.temperature ?? g.temperature ?? 1.0,
      top_p: req.top_p ?? g.top_p ?? 1.0,
      top_k: req.top_k ?? g.top_k ?? 40,
      min_p: req.min_p ?? 0,
      repetition_penalty: req.repetition_penalty ?? g.repetition_penalty ?? 1.0,
      seed: req.seed ?? Math.floor(Math.random() * 2 ** 32),
      // Unset: until the end of the turn or of the context.
      max_tokens: req.max_completion_tokens ?? req.max_tokens ?? (req.prompt != null ? 16 : this.info?.context ?? 4096),
      stop,
    };
  }

  async createCompletion(req, kind) {
    if (!this.info) throw withKind({ kind: "not-loaded", message: "no model is loaded" });
    const options = this.generateOptions(req);
    const start = (onToken) => {
      if (kind === "chat") {
        if (!req.messages?.length) throw withKind({ kind: "bad-request", message: "messages must be a non-empty list" });
        const messages = req.messages.map((m) => ({
          role: m.role === "developer" ? "system" : m.role,
          content: typeof m.content === "string" ? m.content
            : (m.content ?? []).map((p) => (p.type === "text" ? p.text : refusePart())).join(""),
        }));
        return this.generate(messages, options, onToken);
      }
      if (typeof req.prompt !== "string") throw withKind({ kind: "bad-request", message: "prompt must be a string" });
      return this.request("complete_text", { text: req.prompt, options }, onToken);
    };
    const base = {
      id: `${kind === "chat" ? "chatcmpl" : "cmpl"}-${Date.now().toString(36)}${(this.nextId).toString(36)}`,
      object: kind === "chat" ? "chat.completion" : "text_completion",
      created: Math.floor(Date.now() / 1000),
      model: this.modelId,
    };
    if (!req.stream) {
      let text = "";
      const stats = await start((t) => { text += t.text ?? ""; });
      const choice = kind === "chat"
        ? { index: 0, message: { role: "assistant", content: text }, logprobs: null, finish_reason: finishReason(stats) }
        : { index: 0, text, logprobs: null, finish_reason: finishReason(stats) };
      return { ...base, choices: [choice], usage: usage(stats) };
    }
    // Streamed: token events queue up; the async iterator hands them out as chunks.
    const queue = [];
    let wake = null, settled = false, stats = null, error = null;
    const notify = () => { if (wake) { wake(); wake = null; } };
    start((t) => { queue.push(t); notify(); }).then(
      (s) => { stats = s; settled = true; notify(); },
      (e) => { error = e; settled = true; notify(); },
    );
    const client = this;
    const object = kind === "chat" ? "chat.completion.chunk" : "text_completion";
    const chunk = (text, finish, first = false) => ({
      ...base, object,
      choices: [kind === "chat"
        ? { index: 0, delta: { ...(first ? { role: "assistant" } : {}), ...(text != null ? { content: text } : {}) }, logprobs: null, finish_reason: finish }
        : { index: 0, text: text ?? "", logprobs: null, finish_reason: finish }],
    });
    return (async function* () {
      try {
        if (kind === "chat") yield chunk("", null, true);
        for (;;) {
          if (queue.length) {
            const t = queue.shift();
            if (t.text) yield chunk(t.text, null);
            continue;
          }
          if (settled) break;
          await new Promise((r) => { wake = r; });
        }
        if (error) throw error;
        yield chunk(null, finishReason(stats));
        if (req.stream_options?.include_usage) yield { ...base, object, choices: [], usage: usage(stats) };
      } finally {
        // The consumer stopped reading (break, return): stop generating.
        if (!settled) client.abort();
      }
    })();
  }
  generate(messages, options = {}, onToken) {
    return this.request("generate", { messages, options }, onToken);
  }
  complete(ids, options = {}, onToken) {
    return this.request("complete", { ids, options }, onToken);
  }
  /** The archives kept in this browser's cache: `[{url, bytes}]` (works during a load). */
  cachedArchives() {
    return this.request("cache_list", {});
  }
  /** WebLLM's `hasModelInCache`: whether the archive at `url` is in this browser's cache. */
  async hasModelInCache(url) {
    const absolute = new URL(url, globalThis.location?.href).href;
    return (await this.cachedArchives()).some((a) => a.url === absolute);
  }
  /** Removes the archive at `url` from this browser's cache; resolves to whether it was there. */
  deleteCachedArchive(url) {
    return this.request("cache_delete", { url: new URL(url, globalThis.location?.href).href });
  }
  unload() {
    return this.request("unload", {});
  }
  abort() {
    this.worker.postMessage({ type: "abort", id: 0 });
  }
  terminate() {
    this.worker.terminate();
  }
}

/** The engine's stop_reason as OpenAI's finish_reason. */
function finishReason(stats) {
  return { eos: "stop", stop: "stop", max_tokens: "length", length: "length", aborted: "abort" }[stats.stop_reason] ?? "stop";
}

function usage(stats) {
  return {
    prompt_tokens: stats.prompt_tokens,
    completion_tokens: stats.generated_tokens,
    total_tokens: stats.prompt_tokens + stats.generated_tokens,
  };
}

function refusePart() {
  throw withKind({ kind: "bad-request", message: "only text content parts are supported" });
}

/**
 * WebLLM's `CreateMLCEngine`, for archives: a client with the model at `url` loaded.
 * `options` are load options (docs/WEB_API.md) plus `initProgressCallback(progress)`.
 */
export async function CreateQinsEngine(url, options = {}) {
  const { initProgressCallback, workerUrl, ...load } = options;
  const client = workerUrl ? new QinsClient(workerUrl) : new QinsClient();
  await client.load(url, load, initProgressCallback);
  return client;
}

function withKind(m) {
  const e = new Error(m.message || m.kind);
  e.kind = m.kind;
  return e;
}
