//! The page's end of the engine worker's message protocol (docs/WEB_API.md): one module
//! worker, requests numbered, replies handed to a callback. Requests made before the worker
//! reports `started` wait in a queue (messages sent earlier could reach it before it listens).

use std::cell::RefCell;

use serde_json::Value;
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use web_sys::{MessageEvent, Worker, WorkerOptions, WorkerType};

/// One message from the worker, with the id of the request it answers.
#[derive(Debug, Clone)]
pub struct Reply {
    pub id: u64,
    /// progress, ready, token, done, unloaded or error.
    pub kind: String,
    pub data: Value,
    pub error_kind: String,
    pub message: String,
}

struct Link {
    worker: Worker,
    started: bool,
    queue: Vec<JsValue>,
    next_id: u64,
}

thread_local! {
    static LINK: RefCell<Option<Link>> = const { RefCell::new(None) };
}

fn to_value(v: &JsValue) -> Value {
    js_sys::JSON::stringify(v)
        .ok()
        .and_then(|s| s.as_string())
        .and_then(|s| serde_json::from_str(&s).ok())
        .unwrap_or(Value::Null)
}

/// Starts the worker (`worker/qins-worker.js` beside the page); `on_reply` gets every reply.
pub fn start(on_reply: impl Fn(Reply) + 'static) -> Result<(), String> {
    let opts = WorkerOptions::new();
    opts.set_type(WorkerType::Module);
    let worker = Worker::new_with_options("./worker/qins-worker.js", &opts)
        .map_err(|e| format!("cannot start the engine worker: {e:?}"))?;
    let on_message = Closure::<dyn FnMut(MessageEvent)>::new(move |ev: MessageEvent| {
        let msg = to_value(&ev.data());
        let kind = msg["type"].as_str().unwrap_or_default().to_string();
        if kind == "started" {
            LINK.with_borrow_mut(|l| {
                if let Some(l) = l {
                    l.started = true;
                    for m in l.queue.drain(..) {
                        let _ = l.worker.post_message(&m);
                    }
                }
            });
            return;
        }
        on_reply(Reply {
            id: msg["id"].as_u64().unwrap_or(0),
            kind,
            error_kind: msg["kind"].as_str().unwrap_or_default().to_string(),
            message: msg["message"].as_str().unwrap_or_default().to_string(),
            data: msg.get("data").cloned().unwrap_or(Value::Null),
        });
    });
    worker.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
    on_message.forget();
    LINK.with_borrow_mut(|l| {
        *l = Some(Link {
            worker,
            started: false,
            queue: Vec::new(),
            next_id: 1,
        })
    });
    Ok(())
}

/// Sends `{type, id, ...fields}`; returns the id its replies will carry.
pub fn request(kind: &str, mut fields: Value) -> u64 {
    LINK.with_borrow_mut(|l| {
        let Some(l) = l else { return 0 };
        let id = l.next_id;
        l.next_id += 1;
        fields["type"] = kind.into();
        fields["id"] = id.into();
        let msg = js_sys::JSON::parse(&fields.to_string()).unwrap_or(JsValue::NULL);
        if l.started {
            let _ = l.worker.post_message(&msg);
        } else {
            l.queue.push(msg);
        }
        id
    })
}

/// Stops the current load or generation.
pub fn abort() {
    request("abort", serde_json::json!({}));
}
