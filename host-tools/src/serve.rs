//! `qins-serve`: the chat app and the model archives over HTTP, for development and the demo.
//! tower-http's ServeDir does the file serving (MIME types incl. application/wasm, Range
//! requests, conditional GETs); this module only adds the caching policy and ETags.

use std::path::{Path, PathBuf};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::Router;
use tower_http::cors::{Any, CorsLayer};
use tower_http::services::ServeDir;

#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// The built app (Trunk's dist/).
    pub dist: PathBuf,
    /// Archives, mounted at /models/.
    pub models: PathBuf,
    /// Allow any origin (tests whose page is served from another port).
    pub cors: bool,
}

/// The app at /, archives at /models/.
pub fn router(opts: &ServeOptions) -> Router {
    let models = Router::new()
        .fallback_service(ServeDir::new(&opts.models))
        .layer(middleware::from_fn_with_state(
            opts.models.clone(),
            archive_etag,
        ));
    let app = Router::new()
        .nest("/models", models)
        .fallback_service(ServeDir::new(&opts.dist).append_index_html_on_directories(true))
        .layer(middleware::from_fn(cache_policy));
    if opts.cors {
        app.layer(
            CorsLayer::new()
                .allow_origin(Any)
                .allow_methods([Method::GET, Method::HEAD])
                .allow_headers(Any)
                .expose_headers(Any),
        )
    } else {
        app
    }
}

/// Trunk names built assets `name-<16 hex>.ext`: those never change and may be kept forever;
/// everything else (index.html, archives) is revalidated.
fn is_hashed(path: &str) -> bool {
    let stem = path.rsplit('/').next().unwrap_or(path);
    let stem = stem
        .split('.')
        .next()
        .unwrap_or(stem)
        .trim_end_matches("_bg");
    stem.rsplit_once('-')
        .is_some_and(|(_, h)| h.len() == 16 && h.bytes().all(|b| b.is_ascii_hexdigit()))
}

async fn cache_policy(req: Request, next: Next) -> Response {
    let hashed = is_hashed(req.uri().path());
    let mut resp = next.run(req).await;
    if resp.status().is_success() || resp.status() == StatusCode::NOT_MODIFIED {
        let value = if hashed {
            "public, max-age=31536000, immutable"
        } else {
            "no-cache"
        };
        resp.headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static(value));
    }
    resp
}

/// A validator from the file's length and modification time: a re-converted archive gets a new
/// one, so browsers and the app's cache check can tell copies apart.
fn etag_of(path: &Path) -> Option<String> {
    let meta = std::fs::metadata(path).ok()?;
    let modified = meta
        .modified()
        .ok()?
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?;
    Some(format!("\"{:x}-{:x}\"", meta.len(), modified.as_nanos()))
}

async fn archive_etag(State(root): State<PathBuf>, req: Request, next: Next) -> Response {
    let rel = req.uri().path().trim_start_matches('/');
    // ServeDir refuses `..` itself; this only has to avoid reading metadata outside the root.
    let tag = if rel.split('/').any(|c| c == ".." || c.is_empty()) {
        None
    } else {
        etag_of(&root.join(rel))
    };
    let Some(tag) = tag else {
        return next.run(req).await;
    };
    let matches = req
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == tag || t.trim() == "*"));
    if matches {
        let mut resp = Body::empty().into_response();
        *resp.status_mut() = StatusCode::NOT_MODIFIED;
        resp.headers_mut()
            .insert(header::ETAG, HeaderValue::from_str(&tag).expect("ascii"));
        return resp;
    }
    let mut resp = next.run(req).await;
    if let Ok(v) = HeaderValue::from_str(&tag) {
        resp.headers_mut().insert(header::ETAG, v);
    }
    resp
}

/// Serves until Ctrl-C, printing the URL.
pub async fn serve(opts: ServeOptions, addr: std::net::SocketAddr) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e}"))?;
    let local = listener.local_addr()?;
    tracing::info!(dist = %opts.dist.display(), models = %opts.models.display(), "serving");
    println!("http://{local}");
    axum::serve(listener, router(&opts))
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::is_hashed;

    #[test]
    fn trunk_hashed_names_are_recognised() {
        assert!(is_hashed("/qins-web-1a2b3c4d5e6f7a8b_bg.wasm"));
        assert!(is_hashed("/qins-web-1a2b3c4d5e6f7a8b.js"));
        assert!(is_hashed("/style-0123456789abcdef.css"));
        assert!(!is_hashed("/index.html"));
        assert!(!is_hashed("/models/smollm2.lut8.qins"));
    }
}

#[cfg(test)]
mod http_tests {
    use super::{router, ServeOptions};
    use axum::body::Body;
    use axum::http::{header, Request, StatusCode};
    use tower::ServiceExt;

    fn site() -> (tempfile::TempDir, ServeOptions) {
        let dir = tempfile::tempdir().unwrap();
        let dist = dir.path().join("dist");
        let models = dir.path().join("models");
        std::fs::create_dir_all(&dist).unwrap();
        std::fs::create_dir_all(&models).unwrap();
        std::fs::write(dist.join("index.html"), "<!doctype html>").unwrap();
        std::fs::write(dist.join("qins-web-0123456789abcdef_bg.wasm"), b"\0asm").unwrap();
        std::fs::write(models.join("m.qins"), (0..=255u8).collect::<Vec<_>>()).unwrap();
        let opts = ServeOptions {
            dist,
            models,
            cors: false,
        };
        (dir, opts)
    }

    async fn get(
        opts: &ServeOptions,
        uri: &str,
        headers: &[(header::HeaderName, &str)],
    ) -> axum::response::Response {
        let mut req = Request::get(uri);
        for (k, v) in headers {
            req = req.header(k, *v);
        }
        router(opts)
            .oneshot(req.body(Body::empty()).unwrap())
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn serves_the_app_with_mime_types_and_caching_policy() {
        let (_dir, opts) = site();
        let index = get(&opts, "/", &[]).await;
        assert_eq!(index.status(), StatusCode::OK);
        assert_eq!(index.headers()[header::CACHE_CONTROL], "no-cache");
        let wasm = get(&opts, "/qins-web-0123456789abcdef_bg.wasm", &[]).await;
        assert_eq!(wasm.headers()[header::CONTENT_TYPE], "application/wasm");
        assert!(wasm.headers()[header::CACHE_CONTROL]
            .to_str()
            .unwrap()
            .contains("immutable"));
        assert_eq!(
            get(&opts, "/missing.js", &[]).await.status(),
            StatusCode::NOT_FOUND
        );
    }

    #[tokio::test]
    async fn archives_have_ranges_and_etags() {
        let (_dir, opts) = site();
        let full = get(&opts, "/models/m.qins", &[]).await;
        assert_eq!(full.status(), StatusCode::OK);
        let etag = full.headers()[header::ETAG].to_str().unwrap().to_string();
        assert_eq!(full.headers()[header::CACHE_CONTROL], "no-cache");

        let part = get(&opts, "/models/m.qins", &[(header::RANGE, "bytes=250-")]).await;
        assert_eq!(part.status(), StatusCode::PARTIAL_CONTENT);
        assert_eq!(part.headers()[header::CONTENT_RANGE], "bytes 250-255/256");
        let body = axum::body::to_bytes(part.into_body(), 1024).await.unwrap();
        assert_eq!(&body[..], &[250, 251, 252, 253, 254, 255]);

        let same = get(&opts, "/models/m.qins", &[(header::IF_NONE_MATCH, &etag)]).await;
        assert_eq!(same.status(), StatusCode::NOT_MODIFIED);
        let escape = get(&opts, "/models/../dist/index.html", &[]).await;
        assert_ne!(escape.status(), StatusCode::OK);
    }
}
