//! A load's bytes in the browser: from the Cache API when a verified copy is there, else from
//! the network with HTTP Range resume (a copy stored as the bytes stream by), each piece fed
//! to the [`Loader`] as it arrives, with progress events. The primitives are in `source.rs`.

use std::cell::{Cell, RefCell};

use js_sys::{Function, Promise};
use serde::Serialize;
use wasm_bindgen::JsValue;
use wasm_bindgen_futures::{spawn_local, JsFuture};
use web_sys::{AbortController, Cache, Response};
use web_time::Instant;

use super::js::to_js;
use super::source::{self, Body};
use crate::load::{Device, LoadOptions, Loaded, Loader};
use crate::{QinsError, Result};

/// Network failures a load survives by resuming with a Range request.
const MAX_RESUMES: u32 = 8;
/// Progress events are spaced at least this far apart (the last one always comes).
const PROGRESS_EVERY_MS: f64 = 100.0;

/// The abort state of the operation running: a flag, and the fetch to cancel.
#[derive(Default)]
pub struct Abort {
    aborted: Cell<bool>,
    controller: RefCell<Option<AbortController>>,
}

impl Abort {
    /// A new operation starts un-aborted.
    pub fn reset(&self) {
        self.aborted.set(false);
        self.controller.replace(None);
    }

    pub fn abort(&self) {
        self.aborted.set(true);
        if let Some(c) = self.controller.borrow().as_ref() {
            c.abort();
        }
    }

    pub fn is_aborted(&self) -> bool {
        self.aborted.get()
    }

    fn check(&self) -> Result<()> {
        if self.aborted.get() {
            Err(QinsError::Aborted)
        } else {
            Ok(())
        }
    }
}

/// Sent to the progress callback while loading.
#[derive(Debug, Clone, Serialize)]
struct Progress {
    /// "cache" or "network" while bytes stream in (fetch, decompression and upload overlap:
    /// each chunk is verified, decoded and uploaded as soon as it arrives), then "build".
    stage: &'static str,
    bytes_done: u64,
    bytes_total: u64,
    /// Archive bytes per second since this stage began, in MB/s.
    mb_per_s: f64,
    tensors_done: usize,
    tensors_total: usize,
    /// Range requests made after the network dropped.
    resumes: u32,
}

/// Where a load's bytes came from and what it cost.
pub struct Fed {
    pub resumes: u32,
    /// Whether the bytes came from the Cache API.
    pub from_cache: bool,
    /// What happened to the Cache API copy ("stored", "from cache", "not stored: why").
    pub cached: String,
}

/// Loads the archive at `url` with `opts`, from the Cache API when `use_cache` and a copy is
/// there (a damaged copy is dropped and fetched again), else from the network.
pub async fn load(
    abort: &Abort,
    url: &str,
    opts: &LoadOptions,
    use_cache: bool,
    on_progress: &Function,
) -> Result<(Loaded, Fed)> {
    let device = Device::open(opts).await?;
    let cache = if use_cache {
        source::open_cache().await
    } else {
        None
    };
    if let Some(cache) = &cache {
        if let Some(resp) = source::cached(cache, url).await {
            let total = source::total_len(&resp);
            let mut loader = Loader::new(&device, total, opts);
            match feed_cached(abort, &resp, total, &mut loader, on_progress).await {
                Ok(fed) => return finish(loader, fed, on_progress).await,
                Err(e) if is_damage(&e) => {
                    // A partial or corrupt cached copy is never used: drop it, fetch again.
                    tracing::warn!("cached copy of {url} is damaged ({e}): fetching it again");
                    source::forget(cache, url).await;
                }
                Err(e) => return Err(e),
            }
        }
    }
    let mut loader = Loader::new(&device, None, opts);
    let fed = feed_network(abort, url, cache.as_ref(), &mut loader, on_progress).await?;
    finish(loader, fed, on_progress).await
}

fn is_damage(e: &QinsError) -> bool {
    matches!(
        e.kind(),
        "checksum" | "truncated-archive" | "corrupt-archive" | "unsupported-version"
    )
}

struct Reporter<'a> {
    on_progress: &'a Function,
    stage: &'static str,
    total: u64,
    started: Instant,
    last: Option<Instant>,
}

impl<'a> Reporter<'a> {
    fn new(on_progress: &'a Function, stage: &'static str) -> Self {
        Self {
            on_progress,
            stage,
            total: 0,
            started: Instant::now(),
            last: None,
        }
    }

    fn report(&mut self, loader: &Loader, resumes: u32, force: bool) {
        let now = Instant::now();
        if !force
            && self
                .last
                .is_some_and(|t| (now - t).as_secs_f64() * 1e3 < PROGRESS_EVERY_MS)
        {
            return;
        }
        self.last = Some(now);
        let p = loader.progress();
        let secs = (now - self.started).as_secs_f64().max(1e-6);
        let ev = Progress {
            stage: self.stage,
            bytes_done: p.bytes_done,
            bytes_total: self.total.max(p.bytes_done),
            mb_per_s: p.bytes_done as f64 / secs / 1e6,
            tensors_done: p.tensors_done,
            tensors_total: p.tensors_total,
            resumes,
        };
        let _ = self.on_progress.call1(&JsValue::NULL, &to_js(&ev));
    }
}

/// Reads a body into the loader from byte `skip` on; stops at its end.
async fn pump(
    abort: &Abort,
    body: &Body,
    mut skip: u64,
    loader: &mut Loader,
    rep: &mut Reporter<'_>,
    resumes: u32,
) -> Result<()> {
    loop {
        if let Err(e) = abort.check() {
            body.cancel();
            return Err(e);
        }
        let Some(piece) = body.next().await? else {
            return Ok(());
        };
        let mut piece = piece.as_slice();
        if skip > 0 {
            let s = skip.min(piece.len() as u64) as usize;
            piece = &piece[s..];
            skip -= s as u64;
        }
        if let Err(e) = loader.feed(piece) {
            body.cancel();
            return Err(e);
        }
        rep.report(loader, resumes, false);
    }
}

async fn feed_cached(
    abort: &Abort,
    resp: &Response,
    total: Option<u64>,
    loader: &mut Loader,
    on_progress: &Function,
) -> Result<Fed> {
    let mut rep = Reporter::new(on_progress, "cache");
    rep.total = total.unwrap_or(0);
    let body = Body::of(resp)?;
    pump(abort, &body, 0, loader, &mut rep, 0).await?;
    rep.report(loader, 0, true);
    Ok(Fed {
        resumes: 0,
        from_cache: true,
        cached: "from cache".into(),
    })
}

async fn feed_network(
    abort: &Abort,
    url: &str,
    cache: Option<&Cache>,
    loader: &mut Loader,
    on_progress: &Function,
) -> Result<Fed> {
    let mut rep = Reporter::new(on_progress, "network");
    let mut resumes = 0;
    // Only an uninterrupted response is cached whole: a resumed download is not stored.
    let mut storing: Option<Promise> = None;
    let result = async {
        loop {
            let from = loader.progress().bytes_done;
            let controller = AbortController::new().map_err(source::net_err)?;
            let signal = controller.signal();
            abort.controller.replace(Some(controller));
            abort.check()?;
            let (resp, skip) = source::fetch(url, from, &signal).await?;
            if let Some(total) = source::total_len(&resp) {
                rep.total = total;
            }
            if from == 0 {
                if let Some(cache) = cache {
                    storing = store(cache, url, &resp);
                }
            }
            let body = Body::of(&resp)?;
            match pump(abort, &body, skip, loader, &mut rep, resumes).await {
                Ok(()) => return Ok(()),
                Err(QinsError::Network(msg)) if resumes < MAX_RESUMES && !abort.is_aborted() => {
                    resumes += 1;
                    tracing::warn!(
                        "download of {url} broke ({msg}): resuming at byte {}",
                        loader.progress().bytes_done
                    );
                }
                Err(e) => return Err(e),
            }
        }
    }
    .await;
    rep.report(loader, resumes, true);
    let mut cached = if cache.is_none() {
        "cache off or unavailable".to_string()
    } else {
        "not stored: the download was resumed".to_string()
    };
    if let (Some(cache), Some(put)) = (cache, storing) {
        if result.is_ok() && resumes == 0 {
            // The copy was fed by the same bytes just verified: it settles as the body ends.
            // QuotaExceededError and friends only cost the cache.
            cached = match JsFuture::from(put).await {
                Ok(_) => "stored".into(),
                Err(e) => {
                    let msg = source::js_message(&e);
                    tracing::warn!("not cached ({msg}): later loads fetch {url} again");
                    format!("not stored: {msg}")
                }
            };
        } else {
            // A copy that was not fully verified must not stay cached.
            let (cache, url) = (cache.clone(), url.to_string());
            spawn_local(async move {
                let _ = JsFuture::from(put).await;
                source::forget(&cache, &url).await;
            });
        }
    }
    result.map(|()| Fed {
        resumes,
        from_cache: false,
        cached,
    })
}

/// Starts storing a copy of the response (the browser tees the body, outside wasm memory).
/// QuotaExceeded and friends surface when the returned promise settles and only cost the cache.
fn store(cache: &Cache, url: &str, resp: &Response) -> Option<Promise> {
    match resp.clone() {
        Ok(copy) => Some(cache.put_with_str(url, &copy)),
        Err(e) => {
            tracing::warn!(
                "cannot copy the response for the cache: {}",
                source::js_message(&e)
            );
            None
        }
    }
}

async fn finish(loader: Loader, fed: Fed, on_progress: &Function) -> Result<(Loaded, Fed)> {
    let mut rep = Reporter::new(on_progress, "build");
    rep.total = loader.progress().bytes_done;
    rep.report(&loader, fed.resumes, true);
    Ok((loader.finish().await?, fed))
}
