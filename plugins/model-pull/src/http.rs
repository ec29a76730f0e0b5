//! A small blocking HTTP/1 client over `wasi:http/outgoing-handler`.
//!
//! Redirects are followed here, in the guest, one hop at a time, so the host checks
//! every hop against the job's allowlist. The first hop's headers are kept: the hub
//! puts file metadata (`X-Repo-Commit`, `X-Linked-Etag`, `X-Linked-Size`) on the
//! redirect to its file hosts.

use wasip2::http::outgoing_handler;
use wasip2::http::types::{ErrorCode, Fields, IncomingBody, IncomingResponse, Method, OutgoingRequest, Scheme};
use wasip2::io::streams::{InputStream, StreamError};

/// Most redirects followed for one request.
const MAX_REDIRECTS: usize = 10;

/// An absolute `http`/`https` URL, split as `wasi:http` wants it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    pub https: bool,
    /// `host[:port]`.
    pub authority: String,
    /// Path and query, starting with `/`.
    pub path: String,
}

impl Url {
    /// Parses `http://host[:port]/path?query`.
    pub fn parse(text: &str) -> Result<Url, String> {
        let (scheme, rest) = text.split_once("://").ok_or_else(|| format!("{text:?} is not an absolute URL"))?;
        let https = match scheme.to_ascii_lowercase().as_str() {
            "https" => true,
            "http" => false,
            other => return Err(format!("{text:?}: unsupported scheme {other:?}")),
        };
        let (authority, path) = match rest.find(['/', '?']) {
            Some(i) if rest[i..].starts_with('/') => (&rest[..i], rest[i..].to_owned()),
            Some(i) => (&rest[..i], format!("/{}", &rest[i..])),
            None => (rest, "/".to_owned()),
        };
        if authority.is_empty() || authority.contains('@') {
            return Err(format!("{text:?} has no usable host"));
        }
        Ok(Url { https, authority: authority.to_owned(), path })
    }

    /// The target of a `Location` header seen on a response to `self`.
    pub fn join(&self, location: &str) -> Result<Url, String> {
        if location.contains("://") {
            return Url::parse(location);
        }
        if let Some(rest) = location.strip_prefix("//") {
            return Url::parse(&format!("{}://{rest}", if self.https { "https" } else { "http" }));
        }
        let path = if location.starts_with('/') {
            location.to_owned()
        } else {
            let base = self.path.split('?').next().unwrap_or("/");
            let dir = &base[..base.rfind('/').map_or(0, |i| i + 1)];
            format!("{dir}{location}")
        };
        Ok(Url { https: self.https, authority: self.authority.clone(), path })
    }

    /// The host without the port.
    pub fn host(&self) -> &str {
        if self.authority.starts_with('[') {
            return self.authority.split(']').next().map_or(self.authority.as_str(), |h| h.trim_start_matches('['));
        }
        self.authority.rsplit_once(':').map_or(self.authority.as_str(), |(h, _)| h)
    }
}

impl std::fmt::Display for Url {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}://{}{}", if self.https { "https" } else { "http" }, self.authority, self.path)
    }
}

/// Why a request got no response.
#[derive(Debug)]
pub enum Failure {
    /// The host refused the request: the target is not on the job's allowlist.
    Denied(Url),
    /// The server could not be reached (refused, not found, timed out).
    Unreachable(Url, String),
    /// Anything else (a protocol error, too many redirects, a bad `Location`).
    Other(String),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Denied(url) => write!(
                f,
                "the request to {url} was denied: {} is not on this job's allowlist of hosts \
                 (the hub and its file hosts; extend it with JOBHOST_HUB_FILE_HOSTS)",
                url.host()
            ),
            Failure::Unreachable(url, why) => write!(f, "{} is unreachable: {why}", url.authority),
            Failure::Other(msg) => f.write_str(msg),
        }
    }
}

/// A response whose body has not been read yet. Field order is drop order: the
/// stream goes before the body, the body before the response it came from.
pub struct Response {
    stream: Option<InputStream>,
    _body: Option<IncomingBody>,
    _response: IncomingResponse,
    pub status: u16,
    headers: Vec<(String, Vec<u8>)>,
    /// Headers of the first hop when a redirect was followed.
    first_headers: Vec<(String, Vec<u8>)>,
    /// Where the response came from (the last hop).
    pub url: Url,
}

impl Response {
    /// A header of the final response, as text.
    pub fn header(&self, name: &str) -> Option<String> {
        find(&self.headers, name)
    }

    /// A header of the first hop (the hub's own answer), falling back to the final one.
    pub fn hub_header(&self, name: &str) -> Option<String> {
        find(&self.first_headers, name).or_else(|| self.header(name))
    }

    /// The next piece of the body, up to `max` bytes; `None` at its end.
    pub fn read(&mut self, max: u64) -> Result<Option<Vec<u8>>, String> {
        let Some(stream) = &self.stream else { return Ok(None) };
        match stream.blocking_read(max) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(StreamError::Closed) => {
                self.stream = None;
                Ok(None)
            }
            Err(StreamError::LastOperationFailed(e)) => {
                Err(format!("reading the response from {}: {}", self.url.authority, e.to_debug_string()))
            }
        }
    }

    /// The body stream, for [`crate::transfer::copy`]; `None` once it has ended.
    pub fn body_stream(&self) -> Option<&InputStream> {
        self.stream.as_ref()
    }

    /// The whole body (for API answers, which are small).
    pub fn text(&mut self, limit: usize) -> Result<String, String> {
        let mut all = Vec::new();
        while let Some(piece) = self.read(1 << 16)? {
            all.extend_from_slice(&piece);
            if all.len() > limit {
                return Err(format!("the answer from {} is larger than {limit} bytes", self.url));
            }
        }
        String::from_utf8(all).map_err(|_| format!("the answer from {} is not UTF-8", self.url))
    }
}

fn find(headers: &[(String, Vec<u8>)], name: &str) -> Option<String> {
    headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| String::from_utf8_lossy(v).into_owned())
}

/// `GET url` with `headers`, following redirects.
pub fn get(url: &Url, headers: &[(&str, String)]) -> Result<Response, Failure> {
    let mut url = url.clone();
    let mut first_headers = None;
    for _ in 0..=MAX_REDIRECTS {
        let response = send(&url, headers)?;
        let is_redirect = matches!(response.status, 301 | 302 | 303 | 307 | 308);
        let location = response.header("location");
        match (is_redirect, location) {
            (true, Some(location)) => {
                let next = url.join(&location).map_err(Failure::Other)?;
                if first_headers.is_none() {
                    first_headers = Some(response.headers.clone());
                }
                url = next;
            }
            _ => {
                let mut response = response;
                response.first_headers = first_headers.unwrap_or_default();
                return Ok(response);
            }
        }
    }
    Err(Failure::Other(format!("more than {MAX_REDIRECTS} redirects, the last to {url}")))
}

fn send(url: &Url, headers: &[(&str, String)]) -> Result<Response, Failure> {
    let other = |what: &str| Failure::Other(format!("building the request to {url}: invalid {what}"));
    let fields = Fields::new();
    for (name, value) in headers {
        fields.append(name, value.as_bytes()).map_err(|_| other(name))?;
    }
    let request = OutgoingRequest::new(fields);
    request.set_method(&Method::Get).map_err(|()| other("method"))?;
    request.set_scheme(Some(if url.https { &Scheme::Https } else { &Scheme::Http })).map_err(|()| other("scheme"))?;
    request.set_authority(Some(&url.authority)).map_err(|()| other("host"))?;
    request.set_path_with_query(Some(&url.path)).map_err(|()| other("path"))?;
    let pending = outgoing_handler::handle(request, None).map_err(|code| failure(url, code))?;
    pending.subscribe().block();
    let response = match pending.get() {
        Some(Ok(Ok(response))) => response,
        Some(Ok(Err(code))) => return Err(failure(url, code)),
        Some(Err(())) | None => return Err(Failure::Other(format!("no response from {url}"))),
    };
    let status = response.status();
    let headers = response.headers().entries();
    let body = response.consume().map_err(|()| Failure::Other(format!("the body of {url} was taken")))?;
    let stream = body.stream().map_err(|()| Failure::Other(format!("the body of {url} was taken")))?;
    Ok(Response {
        stream: Some(stream),
        _body: Some(body),
        _response: response,
        status,
        headers,
        first_headers: Vec::new(),
        url: url.clone(),
    })
}

fn failure(url: &Url, code: ErrorCode) -> Failure {
    match code {
        ErrorCode::HttpRequestDenied => Failure::Denied(url.clone()),
        ErrorCode::DnsTimeout
        | ErrorCode::DnsError(_)
        | ErrorCode::DestinationNotFound
        | ErrorCode::DestinationUnavailable
        | ErrorCode::DestinationIpUnroutable
        | ErrorCode::ConnectionRefused
        | ErrorCode::ConnectionTimeout => Failure::Unreachable(url.clone(), format!("{code:?}")),
        other => Failure::Other(format!("the request to {url} failed: {other:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_and_join() -> Result<(), String> {
        let u = Url::parse("http://127.0.0.1:8080/a/b?x=1")?;
        assert_eq!(
            (u.https, u.authority.as_str(), u.path.as_str(), u.host()),
            (false, "127.0.0.1:8080", "/a/b?x=1", "127.0.0.1")
        );
        assert_eq!(Url::parse("https://huggingface.co")?.path, "/");
        assert_eq!(u.join("/c")?.to_string(), "http://127.0.0.1:8080/c");
        assert_eq!(u.join("c")?.to_string(), "http://127.0.0.1:8080/a/c");
        assert_eq!(u.join("https://cdn.example/x")?.to_string(), "https://cdn.example/x");
        assert_eq!(u.join("//127.0.0.2:9/y")?.to_string(), "http://127.0.0.2:9/y");
        Ok(())
    }
}
