//! The archive store in the browser: the Origin Private File System through `opfs.js` (why
//! not the Cache API is said there). Rust sees a folder, readers of complete copies and writers
//! that count only once committed.

use js_sys::{Promise, Uint8Array};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;

use super::source::js_message;
use crate::{QinsError, Result};

#[wasm_bindgen(module = "/src/web/opfs.js")]
extern "C" {
    #[wasm_bindgen(js_name = storeOpen)]
    fn store_open() -> Promise;
    #[wasm_bindgen(js_name = openStored)]
    fn open_stored(dir: &JsValue, url: &str) -> Promise;
    #[wasm_bindgen(js_name = beginStore)]
    fn begin_store(dir: &JsValue, url: &str, bytes: f64) -> Promise;
    #[wasm_bindgen(js_name = listStored)]
    fn list_stored(dir: &JsValue) -> Promise;
    #[wasm_bindgen(js_name = deleteStored)]
    fn delete_stored(dir: &JsValue, url: &str) -> Promise;
    #[wasm_bindgen(js_name = damageStoredForTest)]
    fn damage_stored_for_test(dir: &JsValue, url: &str) -> Promise;

    pub type StoredReader;
    #[wasm_bindgen(method, getter)]
    fn size(this: &StoredReader) -> f64;
    #[wasm_bindgen(method)]
    fn read(this: &StoredReader, at: f64, len: f64) -> Promise;
    #[wasm_bindgen(method, js_name = readInto)]
    fn read_into(this: &StoredReader, view: &Uint8Array, at: f64) -> f64;
    #[wasm_bindgen(method)]
    fn close(this: &StoredReader);

    pub type StoreWriter;
    #[wasm_bindgen(method)]
    fn write(this: &StoreWriter, bytes: &[u8]) -> Promise;
    #[wasm_bindgen(method)]
    fn commit(this: &StoreWriter) -> Promise;
    #[wasm_bindgen(method)]
    fn abort(this: &StoreWriter) -> Promise;
}

/// A store failure is only ever a reason not to store: it never fails a load.
fn store_err(e: JsValue) -> QinsError {
    QinsError::Network(js_message(&e))
}

/// A store promise settled, its failure as the browser words it (a reason not to store).
async fn settled(p: Promise) -> std::result::Result<JsValue, String> {
    JsFuture::from(p).await.map_err(|e| js_message(&e))
}

/// The store's folder.
#[derive(Clone)]
pub struct Store(JsValue);

impl Store {
    /// None where the browser has no Origin Private File System (an insecure context, an old
    /// browser, storage disabled): loads then simply go to the network.
    pub async fn open() -> Option<Self> {
        let dir = JsFuture::from(store_open()).await.ok()?;
        (!dir.is_null() && !dir.is_undefined()).then_some(Self(dir))
    }

    /// A complete copy of `url`, if one is stored.
    pub async fn reader(&self, url: &str) -> Option<Reader> {
        match JsFuture::from(open_stored(&self.0, url)).await {
            Ok(r) if !r.is_null() && !r.is_undefined() => Some(Reader(r.unchecked_into())),
            Ok(_) => None,
            Err(e) => {
                tracing::warn!("stored copy of {url} unreadable: {}", js_message(&e));
                None
            }
        }
    }

    /// Starts a copy of `url` (`bytes` long when known); the reason when it cannot be stored
    /// (no room in the quota, storage refused).
    pub async fn writer(
        &self,
        url: &str,
        bytes: Option<u64>,
    ) -> std::result::Result<Writer, String> {
        let bytes = bytes.map_or(0.0, |b| b as f64);
        settled(begin_store(&self.0, url, bytes))
            .await
            .map(|w| Writer(w.unchecked_into()))
    }

    pub async fn list(&self) -> Result<Vec<(String, Option<u64>)>> {
        let list = JsFuture::from(list_stored(&self.0))
            .await
            .map_err(store_err)?;
        let get = |o: &JsValue, k: &str| js_sys::Reflect::get(o, &k.into()).ok();
        Ok(js_sys::Array::from(&list)
            .iter()
            .filter_map(|e| {
                let url = get(&e, "url")?.as_string()?;
                Some((
                    url,
                    get(&e, "bytes").and_then(|b| b.as_f64()).map(|b| b as u64),
                ))
            })
            .collect())
    }

    pub async fn delete(&self, url: &str) -> Result<bool> {
        let had = JsFuture::from(delete_stored(&self.0, url))
            .await
            .map_err(store_err)?;
        Ok(had.as_bool().unwrap_or(false))
    }

    /// Test hook: damages the stored copy of `url` in place.
    pub async fn damage_for_test(&self, url: &str) -> Result<()> {
        JsFuture::from(damage_stored_for_test(&self.0, url))
            .await
            .map_err(store_err)?;
        Ok(())
    }
}

/// A stored copy being read.
pub struct Reader(StoredReader);

impl Reader {
    pub fn size(&self) -> u64 {
        self.0.size() as u64
    }

    /// Up to `len` bytes from `at` into `buf` (fewer only at the end); its allocation is
    /// reused from piece to piece.
    pub async fn read(&self, at: u64, len: usize, buf: &mut Vec<u8>) -> Result<()> {
        buf.resize(len, 0);
        // SAFETY: the view is handed to a synchronous call at once; nothing allocates in wasm
        // memory (which could move or grow it) between making the view and that call ending.
        let view = unsafe { Uint8Array::view_mut_raw(buf.as_mut_ptr(), len) };
        let n = self.0.read_into(&view, at as f64);
        if n >= 0.0 {
            // Straight from the file into wasm memory: no copy between.
            buf.truncate(n as usize);
            return Ok(());
        }
        let bytes: Uint8Array = JsFuture::from(self.0.read(at as f64, len as f64))
            .await
            .map_err(store_err)?
            .unchecked_into();
        buf.truncate(bytes.length() as usize);
        bytes.copy_to(buf);
        Ok(())
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        // Releases the file's lock so the copy can be replaced or deleted.
        self.0.close();
    }
}

/// A copy being stored: it counts only after [`Writer::commit`]; dropped otherwise.
pub struct Writer(StoreWriter);

impl Writer {
    pub async fn write(&self, bytes: &[u8]) -> std::result::Result<(), String> {
        settled(self.0.write(bytes)).await.map(drop)
    }

    pub async fn commit(self) -> std::result::Result<(), String> {
        settled(self.0.commit()).await.map(drop)
    }

    /// Drops what was written.
    pub async fn abort(self) {
        let _ = JsFuture::from(self.0.abort()).await;
    }
}
