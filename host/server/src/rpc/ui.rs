//! The dashboard: plain HTML, CSS and JavaScript modules under `host/server/ui/`,
//! compiled into the binary and served at `/ui/` on the API's own port. No front-end
//! build step, nothing fetched from elsewhere: the page works without internet.
//!
//! The files need no token: they hold nothing of anyone's. Everything the page shows
//! it asks the API for, with the token the user signed in with (kept in the
//! browser's session storage, sent as the bearer header), so it sees exactly what
//! that token may see. Its WebSocket opens with a one-time ticket from
//! `tokens.ticket`, since a browser cannot set a header on a WebSocket.
//!
//! Every answer carries a Content-Security-Policy that allows only this origin's
//! scripts, styles and connections, and no framing.

use ::http::{HeaderValue, StatusCode, header};
use jsonrpsee::server::{HttpBody, HttpResponse};

/// The files, by name under `/ui/`, with their media types.
const FILES: &[(&str, &str, &[u8])] = &[
    ("index.html", "text/html; charset=utf-8", include_bytes!("../../ui/index.html")),
    ("style.css", "text/css; charset=utf-8", include_bytes!("../../ui/style.css")),
    ("api.js", "text/javascript; charset=utf-8", include_bytes!("../../ui/api.js")),
    ("app.js", "text/javascript; charset=utf-8", include_bytes!("../../ui/app.js")),
    ("views.js", "text/javascript; charset=utf-8", include_bytes!("../../ui/views.js")),
    ("charts.js", "text/javascript; charset=utf-8", include_bytes!("../../ui/charts.js")),
];

/// What the page may load and reach: this origin only.
const POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; \
    connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

/// The answer to `GET path` for a path under `/ui`, `None` when `path` is not one.
pub fn answer(path: &str) -> Option<HttpResponse> {
    let rest = path.strip_prefix("/ui")?;
    if rest.is_empty() {
        let mut response = HttpResponse::new(HttpBody::empty());
        *response.status_mut() = StatusCode::PERMANENT_REDIRECT;
        response.headers_mut().insert(header::LOCATION, HeaderValue::from_static("/ui/"));
        return Some(response);
    }
    let name = rest.strip_prefix('/')?;
    let name = if name.is_empty() { "index.html" } else { name };
    let mut response = match FILES.iter().find(|(n, ..)| *n == name) {
        Some((_, media_type, body)) => {
            let mut response = HttpResponse::new(HttpBody::from(body.to_vec()));
            response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(media_type));
            response
        }
        None => {
            let mut response = HttpResponse::new(HttpBody::from(format!("no file {name:?} in the dashboard\n")));
            *response.status_mut() = StatusCode::NOT_FOUND;
            response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
            response
        }
    };
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(POLICY));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    // Always asked again: a new binary serves new files at the same names.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    Some(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_and_its_files_are_served_with_the_policy() {
        let page = answer("/ui/").unwrap();
        assert_eq!(page.status(), StatusCode::OK);
        assert_eq!(page.headers()[header::CONTENT_TYPE], "text/html; charset=utf-8");
        assert!(page.headers()[header::CONTENT_SECURITY_POLICY].to_str().unwrap().contains("script-src 'self'"));
        assert_eq!(answer("/ui/app.js").unwrap().headers()[header::CONTENT_TYPE], "text/javascript; charset=utf-8");
        let moved = answer("/ui").unwrap();
        assert_eq!(
            (moved.status(), &moved.headers()[header::LOCATION]),
            (StatusCode::PERMANENT_REDIRECT, &"/ui/".parse::<HeaderValue>().unwrap())
        );
        assert_eq!(answer("/ui/../secret").unwrap().status(), StatusCode::NOT_FOUND);
        assert!(answer("/uix").is_none() && answer("/").is_none());
    }
}
