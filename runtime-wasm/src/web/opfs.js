// The browser's archive store (runtime-wasm/src/web/store.rs binds it): each archive is one
// file in the Origin Private File System, beside a small JSON file with its URL and length that
// is written last, so an archive without it is incomplete and never read. The Cache API held
// archives before; Chromium's Cache.put fails ("Unexpected internal error") above a few hundred
// MB, which a 2.4 GB Phi-3.5 archive is far beyond. In a worker, reads and writes use a sync
// access handle (straight, no stream); in a page, File reads and a writable stream.
const DIR = "qins-archives-v1";

async function keyOf(url) {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(url));
  return Array.from(new Uint8Array(digest).slice(0, 16), (b) => b.toString(16).padStart(2, "0")).join("");
}

async function fileOrNull(dir, name) {
  try {
    return await dir.getFileHandle(name);
  } catch {
    return null;
  }
}

async function readMeta(dir, key) {
  const h = await fileOrNull(dir, key + ".json");
  if (!h) return null;
  try {
    const meta = JSON.parse(await (await h.getFile()).text());
    return typeof meta.url === "string" && Number.isSafeInteger(meta.bytes) ? meta : null;
  } catch {
    return null;
  }
}

async function forget(dir, key) {
  // The JSON first: a half-removed entry is then incomplete, never read.
  for (const ext of [".json", ".qins"]) {
    try {
      await dir.removeEntry(key + ext);
    } catch {
      // Not there, or open elsewhere (another tab reading it): nothing more to do.
    }
  }
}

async function syncHandle(fh) {
  if (!fh.createSyncAccessHandle) return null;
  try {
    return await fh.createSyncAccessHandle();
  } catch {
    return null; // open in another tab: fall back to the asynchronous calls
  }
}

async function writeWhole(dir, name, bytes) {
  const fh = await dir.getFileHandle(name, { create: true });
  const sync = await syncHandle(fh);
  if (sync) {
    try {
      sync.truncate(0);
      sync.write(bytes, { at: 0 });
      sync.flush();
    } finally {
      sync.close();
    }
    return;
  }
  const w = await fh.createWritable();
  await w.write(bytes);
  await w.close();
}

/** The store's folder, or null where the browser has no OPFS (or refuses it). */
export async function storeOpen() {
  if (!globalThis.navigator?.storage?.getDirectory || !globalThis.crypto?.subtle) return null;
  try {
    const root = await navigator.storage.getDirectory();
    // Archives the Cache API held before this store existed: their space is freed.
    globalThis.caches?.delete(DIR).catch(() => {});
    return await root.getDirectoryHandle(DIR, { create: true });
  } catch {
    return null;
  }
}

/** A complete stored copy of `url` to read, or null. */
export async function openStored(dir, url) {
  const key = await keyOf(url);
  const meta = await readMeta(dir, key);
  if (!meta || meta.url !== url) return null;
  const fh = await fileOrNull(dir, key + ".qins");
  if (!fh) return null;
  const file = await fh.getFile();
  if (file.size !== meta.bytes) {
    await forget(dir, key);
    return null;
  }
  let sync = await syncHandle(fh);
  return {
    size: file.size,
    /**
     * Reads into `view` (a view of wasm memory, used at once) from `at`: the bytes read, or -1
     * where only the asynchronous read() is available (a page, or the file open elsewhere).
     */
    readInto(view, at) {
      return sync ? sync.read(view, { at }) : -1;
    },
    /** Up to `len` bytes from `at`, as a new Uint8Array (shorter only at the end). */
    async read(at, len) {
      if (sync) {
        const buf = new Uint8Array(len);
        const n = sync.read(buf, { at });
        return n === len ? buf : buf.subarray(0, n);
      }
      return new Uint8Array(await file.slice(at, at + len).arrayBuffer());
    },
    close() {
      if (sync) sync.close();
      sync = null;
    },
  };
}

const mb = (n) => `${(n / 1e6).toFixed(0)} MB`;

/**
 * Starts storing `url` (`bytes` long when known): refused with a QuotaExceededError up front
 * when the origin's quota has no room for it. The copy counts only after commit().
 */
export async function beginStore(dir, url, bytes) {
  if (bytes > 0 && navigator.storage.estimate) {
    const { usage = 0, quota = Infinity } = await navigator.storage.estimate();
    if (quota - usage < bytes) {
      throw new DOMException(
        `the browser lets this site store ${mb(Math.max(0, quota - usage))} more; the archive needs ${mb(bytes)}`,
        "QuotaExceededError",
      );
    }
  }
  const key = await keyOf(url);
  await forget(dir, key);
  const fh = await dir.getFileHandle(key + ".qins", { create: true });
  const sync = await syncHandle(fh);
  const writable = sync ? null : await fh.createWritable();
  let at = 0;
  return {
    /** Stores `view` (it may be a view of wasm memory: it is copied or written at once). */
    async write(view) {
      if (sync) {
        const n = sync.write(view, { at });
        // A private window keeps its storage in memory, and a disk can fill meanwhile: the
        // write stops short although estimate() allowed the whole archive. (Chromium then
        // returns an error code as a huge count, 2^32 - 8, rather than throwing.)
        if (n !== view.length) {
          throw new DOMException(
            `the browser's storage ran out after ${mb(at)} (a private window holds less than it reports)`,
            "QuotaExceededError",
          );
        }
        at += n;
        return;
      }
      const copy = view.slice();
      at += copy.length;
      await writable.write(copy);
    },
    async commit() {
      if (sync) {
        sync.flush();
        sync.close();
      } else {
        await writable.close();
      }
      await writeWhole(dir, key + ".json", new TextEncoder().encode(JSON.stringify({ url, bytes: at })));
    },
    async abort() {
      try {
        if (sync) sync.close();
        else await writable.abort();
      } catch {
        // already closed
      }
      await forget(dir, key);
    },
  };
}

/** Every complete stored archive: [{url, bytes}]. */
export async function listStored(dir) {
  const out = [];
  for await (const name of dir.keys()) {
    if (!name.endsWith(".json")) continue;
    const meta = await readMeta(dir, name.slice(0, -5));
    if (meta) out.push({ url: meta.url, bytes: meta.bytes });
  }
  return out;
}

/** Removes the stored copy of `url`; whether there was one. */
export async function deleteStored(dir, url) {
  const key = await keyOf(url);
  const had = (await readMeta(dir, key)) !== null;
  await forget(dir, key);
  return had;
}

/** Test hook: overwrites 16 bytes in the middle of the stored copy of `url`. */
export async function damageStoredForTest(dir, url) {
  const fh = await dir.getFileHandle((await keyOf(url)) + ".qins");
  const size = (await fh.getFile()).size;
  const w = await fh.createWritable({ keepExistingData: true });
  await w.write({ type: "write", position: Math.floor(size / 2), data: new Uint8Array(16).fill(0xa5) });
  await w.close();
}
