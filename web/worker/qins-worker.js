// Module worker entry: instantiating the wasm runs its start function, which installs the
// message handler and posts {type: "started"}. Protocol: docs/WEB_API.md.
import init from "./qins_worker.js";

init().catch((e) => {
  self.postMessage({ type: "error", id: null, kind: "startup", message: String(e) });
});
