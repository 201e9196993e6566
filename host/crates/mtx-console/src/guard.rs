//! The checks every console request passes before a handler runs.
//!
//! - Token: when the console has one, every request must carry it
//!   (`Authorization: Bearer <token>` or `?token=<token>`), else 401.
//! - Host: without a token the console is loopback-only, and a request whose `Host` is not
//!   a loopback name is refused (403): this stops a page on another site from reaching the
//!   console through DNS rebinding.
//! - Cross-site: a request that changes state (any method but GET/HEAD) must be JSON and
//!   same-origin: `Origin` equal to `http://<Host>`, or no `Origin` and the header
//!   `X-Mtx-Console: 1` that the console's own page sends; else 403. A form post or a
//!   request from another origin therefore never records a decision.
//!
//! Responses also forbid framing and referrers (the token may sit in the page's URL).
//! This module decides only; it never reads the state directory.

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// The header the console's page sends with every request.
pub const CONSOLE_HEADER: &str = "x-mtx-console";

/// What the guard needs to know.
#[derive(Debug, Clone)]
pub struct GuardConfig {
    pub token: Option<String>,
}

fn refuse(status: StatusCode, message: &str) -> Response {
    (status, axum::Json(json!({ "error": message }))).into_response()
}

/// Equal strings, compared without an early exit so timing does not reveal a prefix.
fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn query_token(query: Option<&str>) -> Option<String> {
    query?.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k == "token").then(|| percent_decode(v))
    })
}

/// Minimal `application/x-www-form-urlencoded` value decoding, enough for a token.
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) => {
                        out.push(b);
                        i += 3;
                        continue;
                    }
                    None => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn has_token(headers: &HeaderMap, query: Option<&str>, token: &str) -> bool {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|t| same_secret(t.trim(), token));
    bearer || query_token(query).is_some_and(|t| same_secret(&t, token))
}

/// Whether a `Host` header names this machine's loopback interface.
pub fn is_loopback_host(host: &str) -> bool {
    let name = if let Some(rest) = host.strip_prefix('[') {
        match rest.split_once(']') {
            Some((inner, _)) => inner,
            None => return false,
        }
    } else {
        host.rsplit_once(':').map_or(host, |(name, _port)| name)
    };
    name.eq_ignore_ascii_case("localhost")
        || name.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

fn same_origin(headers: &HeaderMap) -> bool {
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    match headers.get(header::ORIGIN).map(|v| v.to_str()) {
        Some(Ok(origin)) => host.is_some_and(|h| origin == format!("http://{h}")),
        Some(Err(_)) => false,
        None => headers.get(CONSOLE_HEADER).and_then(|v| v.to_str().ok()) == Some("1"),
    }
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"))
}

/// The decision for one request: `None` lets it through.
pub fn check(
    config: &GuardConfig,
    method: &Method,
    headers: &HeaderMap,
    query: Option<&str>,
) -> Option<Response> {
    match &config.token {
        Some(token) => {
            if !has_token(headers, query, token) {
                return Some(refuse(StatusCode::UNAUTHORIZED, "this console needs its token"));
            }
        }
        None => {
            let host = headers.get(header::HOST).and_then(|v| v.to_str().ok()).unwrap_or("");
            if !is_loopback_host(host) {
                return Some(refuse(StatusCode::FORBIDDEN, "host is not a loopback name"));
            }
        }
    }
    if method != Method::GET && method != Method::HEAD {
        if !is_json(headers) {
            return Some(refuse(StatusCode::FORBIDDEN, "actions must be sent as application/json"));
        }
        if !same_origin(headers) {
            return Some(refuse(StatusCode::FORBIDDEN, "cross-site request refused"));
        }
    }
    None
}

/// The middleware form of [`check`], adding the response headers every page gets.
pub async fn guard(State(config): State<GuardConfig>, request: Request, next: Next) -> Response {
    let refused = check(&config, request.method(), request.headers(), request.uri().query());
    let mut response = match refused {
        Some(r) => r,
        None => next.run(request).await,
    };
    let h = response.headers_mut();
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; \
             img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; form-action 'none'; base-uri 'none'",
        ),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn loopback_hosts_are_recognised() {
        for ok in ["127.0.0.1:7878", "localhost:1", "LOCALHOST", "[::1]:7878", "127.0.0.2"] {
            assert!(is_loopback_host(ok), "{ok}");
        }
        for bad in ["evil.example:7878", "10.0.0.1:7878", "", "[::1", "localhost.evil.example"] {
            assert!(!is_loopback_host(bad), "{bad}");
        }
    }

    #[test]
    fn tokens_come_from_the_header_or_the_query() {
        let config = GuardConfig { token: Some("s3cr3t+x".into()) };
        let get = Method::GET;
        let h = headers(&[("host", "example:1")]);
        assert!(check(&config, &get, &h, None).is_some());
        assert!(check(&config, &get, &h, Some("token=wrong")).is_some());
        assert!(check(&config, &get, &h, Some("a=1&token=s3cr3t%2Bx")).is_none());
        let bearer = headers(&[("host", "example:1"), ("authorization", "Bearer s3cr3t+x")]);
        assert!(check(&config, &get, &bearer, None).is_none());
    }

    #[test]
    fn posts_need_json_and_the_same_origin() {
        let config = GuardConfig { token: None };
        let post = Method::POST;
        let ok = headers(&[
            ("host", "127.0.0.1:7878"),
            ("origin", "http://127.0.0.1:7878"),
            ("content-type", "application/json"),
        ]);
        assert!(check(&config, &post, &ok, None).is_none());
        let foreign = headers(&[
            ("host", "127.0.0.1:7878"),
            ("origin", "http://evil.example"),
            ("content-type", "application/json"),
        ]);
        assert_eq!(check(&config, &post, &foreign, None).unwrap().status(), StatusCode::FORBIDDEN);
        let form = headers(&[
            ("host", "127.0.0.1:7878"),
            ("origin", "http://127.0.0.1:7878"),
            ("content-type", "application/x-www-form-urlencoded"),
        ]);
        assert_eq!(check(&config, &post, &form, None).unwrap().status(), StatusCode::FORBIDDEN);
        let no_origin = headers(&[("host", "127.0.0.1:7878"), ("content-type", "application/json")]);
        assert!(check(&config, &post, &no_origin, None).is_some());
        let marked = headers(&[
            ("host", "127.0.0.1:7878"),
            ("content-type", "application/json; charset=utf-8"),
            ("x-mtx-console", "1"),
        ]);
        assert!(check(&config, &post, &marked, None).is_none());
    }
}
