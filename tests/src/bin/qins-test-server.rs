//! qins-serve's router plus what the browser tests need to observe and break: `/stats` counts
//! requests per archive path (a cached load must make none), and `/flaky/FILE` serves FILE
//! but cuts every non-Range response off halfway (the runtime must resume with Range).
//!
//! `qins-test-server DIR` serves DIR at /models/ with CORS and prints its URL.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use axum::body::{Body, Bytes};
use axum::extract::{Path, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use qins_host::serve::{router, ServeOptions};
use tower::ServiceExt;
use tower_http::cors::{Any, CorsLayer};
use tower_http::services::ServeFile;

type Counts = Arc<Mutex<BTreeMap<String, u64>>>;

async fn count(State(counts): State<Counts>, req: Request, next: Next) -> Response {
    let path = req.uri().path().to_string();
    if path.starts_with("/models/") || path.starts_with("/flaky/") {
        *counts.lock().unwrap().entry(path).or_default() += 1;
    }
    next.run(req).await
}

async fn flaky(State(dir): State<PathBuf>, Path(file): Path<String>, req: Request) -> Response {
    if file.contains("..") {
        return StatusCode::BAD_REQUEST.into_response();
    }
    let path = dir.join(&file);
    if req.headers().contains_key(header::RANGE) {
        return ServeFile::new(path).oneshot(req).await.into_response();
    }
    let Ok(bytes) = tokio::fs::read(&path).await else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let len = bytes.len();
    let half = Bytes::from(bytes).slice(..len / 2);
    // The cut comes a moment after the first half, so that headers and data reach the client
    // first (hyper drops unflushed output when the body fails at once).
    let parts = futures_util::stream::unfold(0, move |step| {
        let half = half.clone();
        async move {
            match step {
                0 => Some((Ok(half), 1)),
                1 => {
                    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
                    Some((
                        Err(std::io::Error::other("connection cut by the test server")),
                        2,
                    ))
                }
                _ => None,
            }
        }
    });
    Response::builder()
        .header(header::CONTENT_LENGTH, len)
        .header(header::ACCEPT_RANGES, "bytes")
        .body(Body::from_stream(parts))
        .unwrap()
}

#[tokio::main]
async fn main() {
    let dir = PathBuf::from(
        std::env::args()
            .nth(1)
            .expect("usage: qins-test-server DIR [ADDR]"),
    );
    let addr = std::env::args().nth(2).unwrap_or("127.0.0.1:0".into());
    let counts: Counts = Arc::default();
    let stats = {
        let counts = counts.clone();
        move || async move { Json(counts.lock().unwrap().clone()) }
    };
    let app = Router::new()
        .route("/flaky/{*file}", get(flaky).with_state(dir.clone()))
        .route("/stats", get(stats))
        .merge(router(&ServeOptions {
            dist: dir.clone(),
            models: dir,
            cors: false,
            api: None,
        }))
        .layer(middleware::from_fn_with_state(counts, count))
        .layer(
            CorsLayer::new()
                .allow_origin(Any)
                .allow_headers(Any)
                .expose_headers(Any),
        );
    let listener = tokio::net::TcpListener::bind(&addr).await.expect("bind");
    println!("http://{}", listener.local_addr().unwrap());
    axum::serve(listener, app).await.expect("serve");
}
