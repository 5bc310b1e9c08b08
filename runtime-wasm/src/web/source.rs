//! Where archive bytes come from in the browser: the Cache API, or the network with HTTP Range
//! resume. Bindings to fetch and caches go through the global object so the same code runs in
//! a page (Window) and in a Web Worker (WorkerGlobalScope).

use js_sys::{Promise, Reflect, Uint8Array};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;
use web_sys::{
    AbortSignal, Cache, Headers, ReadableStreamDefaultReader, Request, RequestInit, Response,
};

use crate::{QinsError, Result};

/// Bumped when cached archives must not be reused by a newer build.
pub const CACHE_NAME: &str = "qins-archives-v1";

#[wasm_bindgen]
extern "C" {
    /// The page's Window or the worker's WorkerGlobalScope: both have fetch() and caches.
    type Global;
    #[wasm_bindgen(method, js_name = fetch)]
    fn fetch_request(this: &Global, req: &Request) -> Promise;
    #[wasm_bindgen(method, getter, catch)]
    fn caches(this: &Global) -> std::result::Result<JsValue, JsValue>;
}

fn global() -> Global {
    js_sys::global().unchecked_into()
}

/// A JS exception's message, for errors that carry no better kind.
pub fn js_message(e: &JsValue) -> String {
    e.dyn_ref::<js_sys::Error>()
        .map(|e| String::from(e.message()))
        .or_else(|| e.as_string())
        .unwrap_or_else(|| format!("{e:?}"))
}

fn is_abort(e: &JsValue) -> bool {
    Reflect::get(e, &"name".into())
        .ok()
        .and_then(|n| n.as_string())
        .is_some_and(|n| n == "AbortError")
}

/// A failed fetch or read: an abort, or a network failure (which a Range request may resume).
pub fn net_err(e: JsValue) -> QinsError {
    if is_abort(&e) {
        QinsError::Aborted
    } else {
        QinsError::Network(js_message(&e))
    }
}

/// The archive cache, or None where the Cache API is unavailable (insecure context, disabled
/// storage): loading then simply goes to the network.
pub async fn open_cache() -> Option<Cache> {
    let caches = global().caches().ok()?;
    if caches.is_undefined() || caches.is_null() {
        return None;
    }
    let caches: web_sys::CacheStorage = caches.unchecked_into();
    match JsFuture::from(caches.open(CACHE_NAME)).await {
        Ok(c) => Some(c.unchecked_into()),
        Err(e) => {
            tracing::warn!("Cache API unavailable: {}", js_message(&e));
            None
        }
    }
}

pub async fn cached(cache: &Cache, url: &str) -> Option<Response> {
    let v = JsFuture::from(cache.match_with_str(url)).await.ok()?;
    (!v.is_undefined() && !v.is_null()).then(|| v.unchecked_into())
}

pub async fn forget(cache: &Cache, url: &str) {
    if let Err(e) = JsFuture::from(cache.delete_with_str(url)).await {
        tracing::warn!("could not drop {url} from the cache: {}", js_message(&e));
    }
}

/// A stored archive: its URL and size (the stored response's length; None if it gave none).
#[derive(serde::Serialize)]
pub struct StoredArchive {
    pub url: String,
    pub bytes: Option<u64>,
}

/// Every archive the cache holds, in the order it stored them.
pub async fn stored_archives() -> Result<Vec<StoredArchive>> {
    let Some(cache) = open_cache().await else {
        return Ok(Vec::new());
    };
    let keys = JsFuture::from(cache.keys())
        .await
        .map_err(|e| QinsError::Network(js_message(&e)))?;
    let mut out = Vec::new();
    for key in js_sys::Array::from(&keys).iter() {
        let url = key.unchecked_into::<Request>().url();
        let bytes = cached(&cache, &url).await.and_then(|r| total_len(&r));
        out.push(StoredArchive { url, bytes });
    }
    Ok(out)
}

/// Drops `url` from the cache; false when it was not there.
pub async fn delete_stored(url: &str) -> Result<bool> {
    let Some(cache) = open_cache().await else {
        return Ok(false);
    };
    let done = JsFuture::from(cache.delete_with_str(url))
        .await
        .map_err(|e| QinsError::Network(js_message(&e)))?;
    Ok(done.as_bool().unwrap_or(false))
}

/// GET `url`, from byte `from` onwards when resuming. Returns the response and how many
/// leading body bytes to skip (a server that ignores Range answers 200 with the whole file).
pub async fn fetch(url: &str, from: u64, signal: &AbortSignal) -> Result<(Response, u64)> {
    let init = RequestInit::new();
    init.set_signal(Some(signal));
    if from > 0 {
        let headers = Headers::new().map_err(net_err)?;
        headers
            .set("Range", &format!("bytes={from}-"))
            .map_err(net_err)?;
        init.set_headers(&headers);
    }
    let req = Request::new_with_str_and_init(url, &init).map_err(net_err)?;
    let resp: Response = JsFuture::from(global().fetch_request(&req))
        .await
        .map_err(net_err)?
        .unchecked_into();
    match resp.status() {
        200 => Ok((resp, from)),
        206 if from > 0 => Ok((resp, 0)),
        status => Err(QinsError::Http {
            status,
            url: url.to_string(),
        }),
    }
}

/// The whole archive's length from Content-Length (200) or Content-Range (206).
pub fn total_len(resp: &Response) -> Option<u64> {
    let h = resp.headers();
    if let Ok(Some(range)) = h.get("content-range") {
        return range.rsplit('/').next()?.trim().parse().ok();
    }
    h.get("content-length").ok()??.trim().parse().ok()
}

/// A response body read piece by piece.
pub struct Body {
    reader: ReadableStreamDefaultReader,
}

impl Body {
    pub fn of(resp: &Response) -> Result<Self> {
        let stream = resp
            .body()
            .ok_or_else(|| QinsError::Network("the response has no body".into()))?;
        Ok(Self {
            reader: stream.get_reader().unchecked_into(),
        })
    }

    /// The next piece, None at the end. Pieces are copied into wasm memory one at a time.
    pub async fn next(&self) -> Result<Option<Vec<u8>>> {
        let r = JsFuture::from(self.reader.read()).await.map_err(net_err)?;
        let done = Reflect::get(&r, &"done".into())
            .ok()
            .and_then(|d| d.as_bool())
            .unwrap_or(true);
        if done {
            return Ok(None);
        }
        let value = Reflect::get(&r, &"value".into()).map_err(net_err)?;
        Ok(Some(value.unchecked_into::<Uint8Array>().to_vec()))
    }

    pub fn cancel(&self) {
        let _ = self.reader.cancel();
    }
}
