//! `http-probe URL`: sends `GET URL` through `wasi:http/outgoing-handler` and prints
//! `status <code>` on stdout, or `error <wasi error-code>` on stderr and exits 1.
//! The sandbox tests use it to show that an ordinary job cannot reach the network.

fn main() {
    let Some(url) = std::env::args().nth(1) else {
        eprintln!("usage: http-probe URL");
        std::process::exit(2);
    };
    match get(&url) {
        Ok(status) => println!("status {status}"),
        Err(e) => {
            eprintln!("error {e}");
            std::process::exit(1);
        }
    }
}

#[cfg(target_os = "wasi")]
fn get(url: &str) -> Result<u16, String> {
    use wasip2::http::outgoing_handler;
    use wasip2::http::types::{Fields, Method, OutgoingRequest, Scheme};

    let (scheme, rest) = url.split_once("://").ok_or("the URL has no scheme")?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let request = OutgoingRequest::new(Fields::new());
    let scheme = if scheme == "https" { Scheme::Https } else { Scheme::Http };
    request.set_method(&Method::Get).map_err(|()| "method")?;
    request.set_scheme(Some(&scheme)).map_err(|()| "scheme")?;
    request.set_authority(Some(authority)).map_err(|()| "authority")?;
    request.set_path_with_query(Some(path)).map_err(|()| "path")?;
    let pending = outgoing_handler::handle(request, None).map_err(|e| format!("{e:?}"))?;
    pending.subscribe().block();
    match pending.get() {
        Some(Ok(Ok(response))) => Ok(response.status()),
        Some(Ok(Err(code))) => Err(format!("{code:?}")),
        Some(Err(())) => Err("the response was already taken".into()),
        None => Err("the response is not ready".into()),
    }
}

#[cfg(not(target_os = "wasi"))]
fn get(_url: &str) -> Result<u16, String> {
    Err("only runs on WASI".into())
}
