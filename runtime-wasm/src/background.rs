//! Load work started early and collected at the end (pipelines, the tokenizer), so it overlaps
//! the stream of tensor bytes: natively on a thread of its own; in the browser's worker, which
//! has no threads here, at once (WebGPU then compiles pipelines in its own process anyway).

#[cfg(not(target_arch = "wasm32"))]
use crate::QinsError;
use crate::Result;

pub enum Background<T> {
    #[cfg(not(target_arch = "wasm32"))]
    Thread(std::thread::JoinHandle<Result<T>>),
    Ready(Result<T>),
}

#[cfg(not(target_arch = "wasm32"))]
impl<T: Send + 'static> Background<T> {
    pub fn start(what: &str, work: impl FnOnce() -> Result<T> + Send + 'static) -> Self {
        match std::thread::Builder::new()
            .name(format!("qins-{what}"))
            .spawn(work)
        {
            Ok(t) => Self::Thread(t),
            Err(e) => Self::Ready(Err(QinsError::Gpu(format!("no thread for {what}: {e}")))),
        }
    }

    pub fn finish(self) -> Result<T> {
        match self {
            Self::Thread(t) => t
                .join()
                .unwrap_or_else(|_| Err(QinsError::Gpu("a load thread panicked".into()))),
            Self::Ready(r) => r,
        }
    }
}

#[cfg(target_arch = "wasm32")]
impl<T> Background<T> {
    pub fn start(_what: &str, work: impl FnOnce() -> Result<T>) -> Self {
        Self::Ready(work())
    }

    pub fn finish(self) -> Result<T> {
        let Self::Ready(r) = self;
        r
    }
}
