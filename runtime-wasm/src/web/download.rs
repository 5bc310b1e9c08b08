//! A load's bytes in the browser: from the archive store (the Origin Private File System,
//! store.rs) when a complete copy is there, else from the network with HTTP Range resume (each
//! piece stored as it streams by), each piece fed to the [`Loader`] as it arrives, with
//! progress events. The network primitives are in `source.rs`.

use std::cell::{Cell, RefCell};

use js_sys::Function;
use serde::Serialize;
use wasm_bindgen::JsValue;
use web_sys::AbortController;
use web_time::Instant;

use super::js::to_js;
use super::source::{self, Body};
use super::store::{Reader, Store, Writer};
use crate::load::{Device, LoadOptions, Loaded, Loader};
use crate::{QinsError, Result};

/// Network failures a load survives by resuming with a Range request.
const MAX_RESUMES: u32 = 8;
/// Progress events are spaced at least this far apart (the last one always comes).
const PROGRESS_EVERY_MS: f64 = 100.0;
/// A stored copy is read in pieces of this size (the loader's chunks are at most 16 MiB).
const STORED_PIECE: usize = 16 << 20;

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
    /// Whether the bytes came from the browser's archive store.
    pub from_cache: bool,
    /// What happened to the stored copy ("stored", "from cache", "not stored: why").
    pub cached: String,
}

/// Loads the archive at `url` with `opts`, from the archive store when `use_cache` and a
/// complete copy is there (a damaged copy is dropped and fetched again), else from the network.
pub async fn load(
    abort: &Abort,
    url: &str,
    opts: &LoadOptions,
    use_cache: bool,
    on_progress: &Function,
) -> Result<(Loaded, Fed)> {
    let device = Device::open(opts).await?;
    let store = if use_cache { Store::open().await } else { None };
    if let Some(store) = &store {
        if let Some(reader) = store.reader(url).await {
            let mut loader = Loader::new(&device, Some(reader.size()), opts);
            let fed = feed_stored(abort, &reader, &mut loader, on_progress).await;
            drop(reader);
            match fed {
                Ok(fed) => return finish(loader, fed, on_progress).await,
                Err(e) if is_damage(&e) => {
                    // A damaged stored copy is never used: drop it, fetch again.
                    tracing::warn!("stored copy of {url} is damaged ({e}): fetching it again");
                    let _ = store.delete(url).await;
                }
                Err(e) => return Err(e),
            }
        }
    }
    let mut loader = Loader::new(&device, None, opts);
    let fed = feed_network(abort, url, store.as_ref(), &mut loader, on_progress).await?;
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

/// The copy being stored while a download streams by, or what the ready info says of it when
/// there is none ("cache off or unavailable", "not stored: WHY").
struct Storing {
    writer: Option<Writer>,
    why_not: Option<String>,
}

impl Storing {
    /// Stops storing (what was written is dropped) for `why`.
    async fn give_up(&mut self, why: String) {
        if let Some(w) = self.writer.take() {
            w.abort().await;
        }
        self.why_not.get_or_insert(format!("not stored: {why}"));
    }

    async fn write(&mut self, piece: &[u8]) {
        if let Some(w) = &self.writer {
            if let Err(why) = w.write(piece).await {
                tracing::warn!("not storing the archive: {why}");
                self.give_up(why).await;
            }
        }
    }
}

/// Reads a body into the loader (and the store) from byte `skip` on; stops at its end.
async fn pump(
    abort: &Abort,
    body: &Body,
    mut skip: u64,
    loader: &mut Loader,
    storing: &mut Storing,
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
        storing.write(piece).await;
        rep.report(loader, resumes, false);
    }
}

async fn feed_stored(
    abort: &Abort,
    reader: &Reader,
    loader: &mut Loader,
    on_progress: &Function,
) -> Result<Fed> {
    let mut rep = Reporter::new(on_progress, "cache");
    rep.total = reader.size();
    let mut at = 0;
    let mut piece = Vec::new();
    while at < rep.total {
        abort.check()?;
        reader.read(at, STORED_PIECE, &mut piece).await?;
        if piece.is_empty() {
            return Err(QinsError::Truncated {
                what: "stored copy".into(),
                need: rep.total,
                have: at,
            });
        }
        at += piece.len() as u64;
        loader.feed(&piece)?;
        rep.report(loader, 0, false);
    }
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
    store: Option<&Store>,
    loader: &mut Loader,
    on_progress: &Function,
) -> Result<Fed> {
    let mut rep = Reporter::new(on_progress, "network");
    let mut resumes = 0;
    let mut storing = Storing {
        writer: None,
        why_not: store
            .is_none()
            .then(|| "cache off or unavailable".to_string()),
    };
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
                if let Some(store) = store {
                    match store
                        .writer(url, (rep.total > 0).then_some(rep.total))
                        .await
                    {
                        Ok(w) => storing.writer = Some(w),
                        Err(why) => {
                            tracing::warn!("not storing {url}: {why}");
                            storing.why_not = Some(format!("not stored: {why}"));
                        }
                    }
                }
            }
            let body = Body::of(&resp)?;
            match pump(abort, &body, skip, loader, &mut storing, &mut rep, resumes).await {
                Ok(()) => return Ok(()),
                Err(QinsError::Network(msg)) if resumes < MAX_RESUMES && !abort.is_aborted() => {
                    resumes += 1;
                    tracing::warn!(
                        "download of {url} broke ({msg}): resuming at byte {}",
                        loader.progress().bytes_done
                    );
                    // Only an uninterrupted download is stored.
                    storing.give_up("the download was resumed".into()).await;
                }
                Err(e) => return Err(e),
            }
        }
    }
    .await;
    rep.report(loader, resumes, true);
    let cached = match (&result, storing.writer.take()) {
        (Ok(()), Some(w)) => match w.commit().await {
            Ok(()) => "stored".to_string(),
            Err(why) => {
                tracing::warn!("not stored ({why}): later loads fetch {url} again");
                format!("not stored: {why}")
            }
        },
        (Err(_), Some(w)) => {
            // A copy that was not fully verified must not stay.
            w.abort().await;
            String::new()
        }
        (_, None) => storing.why_not.unwrap_or_else(|| "not stored".into()),
    };
    result.map(|()| Fed {
        resumes,
        from_cache: false,
        cached,
    })
}

async fn finish(loader: Loader, fed: Fed, on_progress: &Function) -> Result<(Loaded, Fed)> {
    let mut rep = Reporter::new(on_progress, "build");
    rep.total = loader.progress().bytes_done;
    rep.report(&loader, fed.resumes, true);
    Ok((loader.finish().await?, fed))
}
