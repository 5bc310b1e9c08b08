//! `qins-serve`: the chat app and the model archives over HTTP, for development and the demo.
//! tower-http's ServeDir does the file serving (MIME types incl. application/wasm, Range
//! requests, conditional GETs); this module adds the caching policy, ETags and the security
//! headers (a Content-Security-Policy that allows what the page needs and nothing else, and
//! `X-Content-Type-Options: nosniff`).

use std::path::{Path, PathBuf};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::Router;
use tower_http::cors::{Any, CorsLayer};
use tower_http::services::ServeDir;

#[derive(Clone)]
pub struct ServeOptions {
    /// The built app (Trunk's dist/).
    pub dist: PathBuf,
    /// Archives, mounted at /models/.
    pub models: PathBuf,
    /// Allow any origin (tests whose page is served from another port).
    pub cors: bool,
    /// The OpenAI-compatible API (`--model`), if any.
    pub api: Option<std::sync::Arc<crate::api::ApiState>>,
}

/// The app at /, archives at /models/, their catalog at /models/catalog.json.
pub fn router(opts: &ServeOptions) -> Router {
    let catalog_state = (
        opts.models.clone(),
        std::sync::Arc::new(crate::catalog::CatalogCache::default()),
    );
    let models = Router::new()
        .route(
            "/catalog.json",
            axum::routing::get(catalog).with_state(catalog_state),
        )
        .fallback_service(ServeDir::new(&opts.models))
        .layer(middleware::from_fn_with_state(
            opts.models.clone(),
            archive_etag,
        ));
    let mut app = Router::new().nest("/models", models);
    if let Some(api) = &opts.api {
        app = app.merge(crate::api::router(api.clone()));
    }
    let app = app
        .fallback_service(ServeDir::new(&opts.dist).append_index_html_on_directories(true))
        .layer(middleware::from_fn(cache_policy))
        .layer(middleware::from_fn(security_headers));
    if opts.cors {
        app.layer(
            CorsLayer::new()
                .allow_origin(Any)
                .allow_methods([Method::GET, Method::HEAD, Method::POST])
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

/// What the page and its engine worker need, and nothing else: scripts and WebAssembly from
/// this origin (compiled without `eval`: 'wasm-unsafe-eval'), the HTML's own inline scripts by
/// hash (Trunk's and build-app's bootstrap), styles and the worker from this origin, archives
/// from this origin, any http(s) origin (a `?model=` link elsewhere, if it allows CORS: the
/// page asks first) or a local file (blob:), images only from here or data: (model output
/// never loads an image).
fn content_security_policy(inline_script_hashes: &[String]) -> String {
    let mut script = String::from("'self' 'wasm-unsafe-eval'");
    for h in inline_script_hashes {
        script += &format!(" 'sha256-{h}'");
    }
    format!(
        "default-src 'none'; script-src {script}; style-src 'self'; img-src 'self' data:; \
         connect-src 'self' https: http: blob:; worker-src 'self'; manifest-src 'self'; \
         base-uri 'none'; form-action 'none'; frame-ancestors 'none'; object-src 'none'"
    )
}

/// The base64 SHA-256 of each inline `<script>` (one without `src`) in `html`, as CSP wants
/// them. A small scan rather than an HTML parser: the pages are ours, and a script this misses
/// is blocked, not allowed.
fn inline_script_hashes(html: &str) -> Vec<String> {
    use base64::Engine as _;
    use sha2::Digest as _;
    let mut out = Vec::new();
    let mut rest = html;
    while let Some(start) = rest.find("<script") {
        let after = &rest[start..];
        let Some(open_end) = after.find('>') else {
            break;
        };
        let tag = &after[..open_end];
        let body = &after[open_end + 1..];
        let Some(close) = body.find("</script>") else {
            break;
        };
        if !tag.contains(" src=") {
            let digest = sha2::Sha256::digest(&body.as_bytes()[..close]);
            out.push(base64::engine::general_purpose::STANDARD.encode(digest));
        }
        rest = &body[close..];
    }
    out
}

/// Largest HTML page whose inline scripts are hashed (ours are a few KB).
const MAX_HTML: usize = 1 << 20;

async fn security_headers(req: Request, next: Next) -> Response {
    let resp = next.run(req).await;
    let is_html = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/html"));
    let (mut parts, body) = resp.into_parts();
    let (body, hashes) = if is_html {
        match axum::body::to_bytes(body, MAX_HTML).await {
            Ok(bytes) => {
                let hashes = inline_script_hashes(&String::from_utf8_lossy(&bytes));
                (Body::from(bytes), hashes)
            }
            Err(e) => {
                tracing::warn!("page too large to hash its scripts: {e}");
                (Body::empty(), Vec::new())
            }
        }
    } else {
        (body, Vec::new())
    };
    let h = &mut parts.headers;
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    // A 304 has no body to hash (and may not even say it is a page): it carries no policy,
    // so the browser keeps the one stored with the page (a 304's headers replace the stored
    // ones).
    if parts.status != StatusCode::NOT_MODIFIED {
        if let Ok(v) = HeaderValue::from_str(&content_security_policy(&hashes)) {
            h.insert(header::CONTENT_SECURITY_POLICY, v);
        }
    }
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    Response::from_parts(parts, body)
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

/// The folder's own catalog.json when it has one (a hand-written catalog wins), else one made
/// from the archives' manifests.
async fn catalog(
    State((dir, cache)): State<(PathBuf, std::sync::Arc<crate::catalog::CatalogCache>)>,
) -> Response {
    let made = tokio::task::spawn_blocking(move || -> anyhow::Result<Vec<u8>> {
        let own = dir.join("catalog.json");
        if own.is_file() {
            return Ok(std::fs::read(own)?);
        }
        Ok(serde_json::to_vec(&crate::catalog::catalog(&dir, &cache)?)?)
    })
    .await;
    match made {
        Ok(Ok(body)) => (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            body,
        )
            .into_response(),
        Ok(Err(e)) => {
            tracing::warn!("catalog: {e:#}");
            (StatusCode::NOT_FOUND, "no catalog").into_response()
        }
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
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
            api: None,
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
    async fn every_response_has_the_security_headers_and_inline_scripts_are_allowed_by_hash() {
        let (_dir, opts) = site();
        let script = "import init from \"./qins-web.js\"; init();";
        std::fs::write(
            opts.dist.join("index.html"),
            format!("<!doctype html><script type=\"module\">{script}</script><script type=\"module\" src=\"x.js\"></script>"),
        )
        .unwrap();
        let index = get(&opts, "/", &[]).await;
        let csp = index.headers()[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .unwrap()
            .to_string();
        // echo -n "$script" | openssl dgst -sha256 -binary | base64
        use base64::Engine as _;
        use sha2::Digest as _;
        let want = base64::engine::general_purpose::STANDARD
            .encode(sha2::Sha256::digest(script.as_bytes()));
        assert!(csp.contains(&format!("'sha256-{want}'")), "{csp}");
        assert_eq!(
            csp.matches("'sha256-").count(),
            1,
            "only the inline one: {csp}"
        );
        for needed in [
            "default-src 'none'",
            "'wasm-unsafe-eval'",
            "connect-src 'self' https: http: blob:",
            "img-src 'self' data:",
        ] {
            assert!(csp.contains(needed), "{needed} in {csp}");
        }
        assert!(
            !csp.contains("'unsafe-eval'") && !csp.contains("'unsafe-inline'"),
            "{csp}"
        );
        let modified = index.headers()[header::LAST_MODIFIED]
            .to_str()
            .unwrap()
            .to_string();
        let body = axum::body::to_bytes(index.into_body(), 4096).await.unwrap();
        assert!(
            body.starts_with(b"<!doctype html>"),
            "the page itself is intact"
        );
        // A revalidated page keeps the stored policy: its 304 must not replace it with one
        // that lacks the hashes (a reload would then block the bootstrap script).
        let again = get(&opts, "/", &[(header::IF_MODIFIED_SINCE, &modified)]).await;
        assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
        assert!(!again
            .headers()
            .contains_key(header::CONTENT_SECURITY_POLICY));
        for uri in [
            "/",
            "/qins-web-0123456789abcdef_bg.wasm",
            "/models/m.qins",
            "/missing.js",
        ] {
            let resp = get(&opts, uri, &[]).await;
            assert_eq!(
                resp.headers()[header::X_CONTENT_TYPE_OPTIONS],
                "nosniff",
                "{uri}"
            );
            assert!(
                resp.headers().contains_key(header::CONTENT_SECURITY_POLICY),
                "{uri}"
            );
        }
    }

    #[tokio::test]
    async fn the_catalog_describes_each_readable_archive_and_a_written_one_wins() {
        let (_dir, opts) = site();
        let tiny =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/tiny-llama");
        let archive = opts.models.join("tiny.qins");
        let codec = qins_runtime::codec::Codec::from_name("lut8g", 32).unwrap();
        crate::convert::convert(
            crate::import::open(&tiny).unwrap(),
            &crate::convert::ConvertOptions::new(codec),
            &archive,
        )
        .unwrap();
        let resp = get(&opts, "/models/catalog.json", &[]).await;
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(resp.headers()[header::CONTENT_TYPE], "application/json");
        let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap();
        let catalog: serde_json::Value = serde_json::from_slice(&body).unwrap();
        let models = catalog["models"].as_array().unwrap();
        // m.qins is not an archive: left out.
        assert_eq!(models.len(), 1, "{catalog}");
        let m = &models[0];
        assert_eq!(m["id"], "tiny");
        assert_eq!(m["name"], "tiny-llama");
        assert_eq!(m["url"], "tiny.qins");
        assert_eq!(m["architecture"], "llama");
        assert_eq!(m["codec"], "lut8g-g32");
        assert_eq!(
            m["archive_bytes"],
            std::fs::metadata(&archive).unwrap().len()
        );
        let bits = m["bits_per_weight"].as_f64().unwrap();
        assert!((8.0..10.0).contains(&bits), "{bits}");
        assert!(m["parameters"].as_u64().unwrap() > 0);
        assert!(m["context"].as_u64().unwrap() > 0);

        std::fs::write(opts.models.join("catalog.json"), r#"{"models": []}"#).unwrap();
        let written = get(&opts, "/models/catalog.json", &[]).await;
        let body = axum::body::to_bytes(written.into_body(), 1024)
            .await
            .unwrap();
        assert_eq!(&body[..], br#"{"models": []}"#);
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
