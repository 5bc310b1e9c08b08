//! Archive bytes from the network, with HTTP Range resume. Bindings to fetch go through the
//! global object so the same code runs in a page (Window) and in a Web Worker
//! (WorkerGlobalScope).

use js_sys::{Promise, Reflect, Uint8Array};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;
use web_sys::{AbortSignal, Headers, ReadableStreamDefaultReader, Request, RequestInit, Response};

use crate::{QinsError, Result};

#[wasm_bindgen]
extern "C" {
    /// The page's Window or the worker's WorkerGlobalScope: both have fetch().
    type Global;
    #[wasm_bindgen(method, js_name = fetch)]
    fn fetch_request(this: &Global, req: &Request) -> Promise;
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
