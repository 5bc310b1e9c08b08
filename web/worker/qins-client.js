// Page-side wrapper around the engine worker: promises and callbacks instead of messages.
// Usage:
//   const qins = new QinsClient();
//   const info = await qins.load(url, { cache: true }, (p) => ...);
//   const stats = await qins.generate([{ role: "user", content: "Hi" }], { temperature: 0.7 }, (t) => ...);
// Failures reject with an Error whose `kind` is one of the kinds in docs/WEB_API.md.

export class QinsClient {
  constructor(workerUrl = new URL("./qins-worker.js", import.meta.url)) {
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

  load(url, options = {}, onProgress) {
    // Relative to the page, not to the worker's script.
    const absolute = new URL(url, globalThis.location?.href).href;
    return this.request("load", { url: absolute, options }, onProgress);
  }
  generate(messages, options = {}, onToken) {
    return this.request("generate", { messages, options }, onToken);
  }
  complete(ids, options = {}, onToken) {
    return this.request("complete", { ids, options }, onToken);
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

function withKind(m) {
  const e = new Error(m.message || m.kind);
  e.kind = m.kind;
  return e;
}
