//! The WASI HTTP transport: sends one [`HttpCall`] with `wasi:http/outgoing-handler` and
//! reads the whole response, with connect / first-byte / between-bytes timeouts from the
//! request's `timeout-ms`.
//!
//! The host decides which hosts are reachable (`net.http:<host>[:<port>]` grants); a refusal
//! comes back as `HttpRequestDenied` and is reported as `denied`, never retried here.

use wasip2::http::outgoing_handler;
use wasip2::http::types::{ErrorCode, Fields, Method, OutgoingBody, OutgoingRequest, RequestOptions, Scheme};
use wasip2::io::streams::StreamError;

use crate::bindings::mtx::plugin::types::ModelError;
use crate::request::{self, HttpCall};

/// A response body larger than this is refused rather than held in the guest's memory.
const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;
/// `blocking-write-and-flush` accepts at most 4096 bytes per call.
const WRITE_CHUNK: usize = 4096;
const READ_CHUNK: u64 = 64 * 1024;

/// The response status and body.
pub fn send(call: &HttpCall) -> Result<(u16, Vec<u8>), ModelError> {
    let fatal = |what: &str| ModelError::Fatal(format!("building the HTTP request failed: {what}"));
    let headers = Fields::from_list(&call.headers).map_err(|e| fatal(&format!("headers: {e:?}")))?;
    let req = OutgoingRequest::new(headers);
    req.set_method(&Method::Post).map_err(|()| fatal("method"))?;
    let scheme = match call.scheme {
        request::Scheme::Http => Scheme::Http,
        request::Scheme::Https => Scheme::Https,
    };
    req.set_scheme(Some(&scheme)).map_err(|()| fatal("scheme"))?;
    req.set_authority(Some(&call.authority)).map_err(|()| fatal("authority"))?;
    req.set_path_with_query(Some(&call.path)).map_err(|()| fatal("path"))?;

    let options = RequestOptions::new();
    let timeout_ns = u64::from(call.timeout_ms.max(1)) * 1_000_000;
    // A non-streaming completion sends its first byte only when generation is done, so the
    // first-byte timeout carries the whole request budget. A host that does not support an
    // option refuses it; the call then runs with the host's defaults.
    let _ = options.set_connect_timeout(Some(timeout_ns));
    let _ = options.set_first_byte_timeout(Some(timeout_ns));
    let _ = options.set_between_bytes_timeout(Some(timeout_ns));

    let body = req.body().map_err(|()| fatal("body"))?;
    // Hand the request to the host before writing the body, so a body larger than the
    // host's pipe buffer cannot block on a reader that does not exist yet.
    let future = outgoing_handler::handle(req, Some(options)).map_err(|e| map_error_code(&e))?;
    // When the host refuses the request (no `net.http` grant for the host), it closes the
    // body stream and reports the refusal through the response; that refusal, not the
    // broken body write, is the error to report.
    let refused = |write_error: ModelError| {
        future.subscribe().block();
        match future.get() {
            Some(Ok(Err(code))) => map_error_code(&code),
            _ => write_error,
        }
    };
    {
        let stream = body.write().map_err(|()| fatal("body stream"))?;
        for chunk in call.body.chunks(WRITE_CHUNK) {
            if let Err(e) = stream.blocking_write_and_flush(chunk) {
                return Err(refused(stream_error(e, "writing the request body")));
            }
        }
    }
    if let Err(e) = OutgoingBody::finish(body, None) {
        return Err(refused(map_error_code(&e)));
    }

    future.subscribe().block();
    let response = match future.get() {
        Some(Ok(Ok(r))) => r,
        Some(Ok(Err(code))) => return Err(map_error_code(&code)),
        Some(Err(())) | None => return Err(ModelError::Fatal("the HTTP response was not available".into())),
    };
    let status = response.status();
    let incoming =
        response.consume().map_err(|()| ModelError::Fatal("response body already taken".into()))?;
    let mut bytes = Vec::new();
    {
        let stream =
            incoming.stream().map_err(|()| ModelError::Fatal("response body stream unavailable".into()))?;
        loop {
            match stream.blocking_read(READ_CHUNK) {
                Ok(chunk) => {
                    bytes.extend_from_slice(&chunk);
                    if bytes.len() > MAX_BODY_BYTES {
                        return Err(ModelError::Fatal(format!(
                            "response body exceeds {MAX_BODY_BYTES} bytes"
                        )));
                    }
                }
                Err(StreamError::Closed) => break,
                Err(e) => return Err(stream_error(e, "reading the response body")),
            }
        }
    }
    Ok((status, bytes))
}

fn stream_error(e: StreamError, doing: &str) -> ModelError {
    match e {
        StreamError::Closed => ModelError::Transient(format!("{doing}: the connection closed")),
        StreamError::LastOperationFailed(err) => match wasip2::http::types::http_error_code(&err) {
            Some(code) => map_error_code(&code),
            None => ModelError::Transient(format!("{doing}: {}", err.to_debug_string())),
        },
    }
}

/// WASI HTTP error codes -> model error kinds.
pub fn map_error_code(code: &ErrorCode) -> ModelError {
    let what = format!("{code:?}");
    match code {
        ErrorCode::HttpRequestDenied => ModelError::Denied(format!(
            "the host refused the request ({what}); grant net.http for the server"
        )),
        ErrorCode::DnsTimeout
        | ErrorCode::ConnectionTimeout
        | ErrorCode::ConnectionReadTimeout
        | ErrorCode::ConnectionWriteTimeout
        | ErrorCode::HttpResponseTimeout => ModelError::Timeout(what),
        ErrorCode::ConnectionRefused
        | ErrorCode::ConnectionTerminated
        | ErrorCode::ConnectionLimitReached
        | ErrorCode::DestinationUnavailable
        | ErrorCode::HttpResponseIncomplete => ModelError::Transient(what),
        _ => ModelError::Fatal(what),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_codes_map_to_kinds() {
        assert!(matches!(map_error_code(&ErrorCode::HttpRequestDenied), ModelError::Denied(_)));
        assert!(matches!(map_error_code(&ErrorCode::HttpResponseTimeout), ModelError::Timeout(_)));
        assert!(matches!(map_error_code(&ErrorCode::ConnectionReadTimeout), ModelError::Timeout(_)));
        assert!(matches!(map_error_code(&ErrorCode::ConnectionTerminated), ModelError::Transient(_)));
        assert!(matches!(map_error_code(&ErrorCode::ConnectionRefused), ModelError::Transient(_)));
        assert!(matches!(map_error_code(&ErrorCode::TlsCertificateError), ModelError::Fatal(_)));
        assert!(
            matches!(map_error_code(&ErrorCode::InternalError(Some("x".into()))), ModelError::Fatal(m) if m.contains("x"))
        );
    }
}
