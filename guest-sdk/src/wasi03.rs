//! The SDK on WASI 0.3 (feature `wasi-0-3`): the `wasi:http/handler@0.3.0`
//! export, outbound requests through `wasi:http/client@0.3.0`, and tasks
//! on wit-bindgen's executor, which is what runs a WASI 0.3 component
//! (wstd's reactor is WASI 0.2's, and never runs here).
//!
//! The public types stay wstd's: a request body from the host becomes a
//! [`Body`], and a WASI 0.3 [`ErrorCode`](wasip3::http::types::ErrorCode)
//! becomes the WASI 0.2 one [`FetchError::code`](crate::FetchError::code)
//! returns, so a handler reads the same under either feature.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::BodyExt as _;
use wasip3::http::types::{self, ErrorCode};
use wasip3::http_compat::{
    BodyWriter, http_from_wasi_request, http_from_wasi_response, http_into_wasi_request,
};
use wstd::http::Body;
use wstd::http::body::{Frame, HttpBody, SizeHint};

use crate::{Handler, Response};

/// WASI 0.2's error code, as wstd and [`FetchError`](crate::FetchError) name it.
type P2ErrorCode = wasip2::http::types::ErrorCode;

/// Runs `future` beside the handler, on the component's executor. The
/// export's task lasts until it is done, so it may outlive the response.
pub(crate) fn spawn(future: impl Future<Output = ()> + 'static) {
    wasip3::spawn(future);
}

/// Runs `handler` on one incoming request: the body of the export.
pub async fn run(
    request: types::Request,
    handler: impl Handler,
) -> Result<types::Response, ErrorCode> {
    let request = match http_from_wasi_request(request) {
        Ok(request) => request,
        Err(error) => {
            eprintln!("error: cannot read the incoming request: {error}");
            return Err(error);
        }
    };
    let response = handler.call(request.map(into_body)).await;
    into_wasi_response(response)
}

/// Sends `request` through `wasi:http/client` and waits for the response
/// head; the body streams.
pub(crate) async fn send(request: http::Request<Body>) -> Result<Response, wstd::http::Error> {
    let request = http_into_wasi_request(request.map(Body::into_boxed_body)).map_err(into_p2)?;
    let response = wasip3::http::client::send(request).await.map_err(into_p2)?;
    let response = http_from_wasi_response(response).map_err(into_p2)?;
    Ok(response.map(into_body))
}

/// A body from the host as a [`Body`], its length (if the headers gave one)
/// known up front, as wstd knows it for a WASI 0.2 body.
fn into_body<B>(body: B) -> Body
where
    B: HttpBody<Data = Bytes, Error = ErrorCode> + Send + Unpin + 'static,
{
    Body::from_http_body(ExactLength(body.map_err(into_p2)))
}

/// A body whose `Content-Length` is its exact size, not only a bound.
struct ExactLength<B>(B);

impl<B: HttpBody + Unpin> HttpBody for ExactLength<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.0).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.0.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        let hint = self.0.size_hint();
        match hint.upper() {
            Some(length) => SizeHint::with_exact(length),
            None => hint,
        }
    }
}

/// `response` as the export returns it; its body is sent by a task, which
/// logs a failure (the client went away, or a [`stream`](crate::body::stream)
/// writer failed) as the WASI 0.2 export does.
fn into_wasi_response(response: Response) -> Result<types::Response, ErrorCode> {
    let (parts, body) = response.into_parts();
    let headers = types::Fields::try_from(parts.headers)
        .map_err(|error| ErrorCode::InternalError(Some(format!("response headers: {error}"))))?;
    let (writer, contents, trailers) = BodyWriter::new();
    let (response, _transmitted) = types::Response::new(headers, Some(contents), trailers);
    response
        .set_status_code(parts.status.as_u16())
        .map_err(|()| ErrorCode::InternalError(Some(format!("status {}", parts.status))))?;
    spawn(async move {
        let mut body = body.into_boxed_body();
        if let Err(error) = writer.send_http_body(&mut body).await {
            eprintln!("error: sending the response body: {error}");
        }
    });
    Ok(response)
}

/// The WASI 0.2 code for a WASI 0.3 one: the two enums have the same cases.
fn into_p2(code: ErrorCode) -> P2ErrorCode {
    use wasip2::http::types as p2;
    match code {
        ErrorCode::DnsTimeout => P2ErrorCode::DnsTimeout,
        ErrorCode::DnsError(types::DnsErrorPayload { rcode, info_code }) => {
            P2ErrorCode::DnsError(p2::DnsErrorPayload { rcode, info_code })
        }
        ErrorCode::DestinationNotFound => P2ErrorCode::DestinationNotFound,
        ErrorCode::DestinationUnavailable => P2ErrorCode::DestinationUnavailable,
        ErrorCode::DestinationIpProhibited => P2ErrorCode::DestinationIpProhibited,
        ErrorCode::DestinationIpUnroutable => P2ErrorCode::DestinationIpUnroutable,
        ErrorCode::ConnectionRefused => P2ErrorCode::ConnectionRefused,
        ErrorCode::ConnectionTerminated => P2ErrorCode::ConnectionTerminated,
        ErrorCode::ConnectionTimeout => P2ErrorCode::ConnectionTimeout,
        ErrorCode::ConnectionReadTimeout => P2ErrorCode::ConnectionReadTimeout,
        ErrorCode::ConnectionWriteTimeout => P2ErrorCode::ConnectionWriteTimeout,
        ErrorCode::ConnectionLimitReached => P2ErrorCode::ConnectionLimitReached,
        ErrorCode::TlsProtocolError => P2ErrorCode::TlsProtocolError,
        ErrorCode::TlsCertificateError => P2ErrorCode::TlsCertificateError,
        ErrorCode::TlsAlertReceived(types::TlsAlertReceivedPayload {
            alert_id,
            alert_message,
        }) => P2ErrorCode::TlsAlertReceived(p2::TlsAlertReceivedPayload {
            alert_id,
            alert_message,
        }),
        ErrorCode::HttpRequestDenied => P2ErrorCode::HttpRequestDenied,
        ErrorCode::HttpRequestLengthRequired => P2ErrorCode::HttpRequestLengthRequired,
        ErrorCode::HttpRequestBodySize(size) => P2ErrorCode::HttpRequestBodySize(size),
        ErrorCode::HttpRequestMethodInvalid => P2ErrorCode::HttpRequestMethodInvalid,
        ErrorCode::HttpRequestUriInvalid => P2ErrorCode::HttpRequestUriInvalid,
        ErrorCode::HttpRequestUriTooLong => P2ErrorCode::HttpRequestUriTooLong,
        ErrorCode::HttpRequestHeaderSectionSize(size) => {
            P2ErrorCode::HttpRequestHeaderSectionSize(size)
        }
        ErrorCode::HttpRequestHeaderSize(field) => {
            P2ErrorCode::HttpRequestHeaderSize(field.map(field_size))
        }
        ErrorCode::HttpRequestTrailerSectionSize(size) => {
            P2ErrorCode::HttpRequestTrailerSectionSize(size)
        }
        ErrorCode::HttpRequestTrailerSize(field) => {
            P2ErrorCode::HttpRequestTrailerSize(field_size(field))
        }
        ErrorCode::HttpResponseIncomplete => P2ErrorCode::HttpResponseIncomplete,
        ErrorCode::HttpResponseHeaderSectionSize(size) => {
            P2ErrorCode::HttpResponseHeaderSectionSize(size)
        }
        ErrorCode::HttpResponseHeaderSize(field) => {
            P2ErrorCode::HttpResponseHeaderSize(field_size(field))
        }
        ErrorCode::HttpResponseBodySize(size) => P2ErrorCode::HttpResponseBodySize(size),
        ErrorCode::HttpResponseTrailerSectionSize(size) => {
            P2ErrorCode::HttpResponseTrailerSectionSize(size)
        }
        ErrorCode::HttpResponseTrailerSize(field) => {
            P2ErrorCode::HttpResponseTrailerSize(field_size(field))
        }
        ErrorCode::HttpResponseTransferCoding(coding) => {
            P2ErrorCode::HttpResponseTransferCoding(coding)
        }
        ErrorCode::HttpResponseContentCoding(coding) => {
            P2ErrorCode::HttpResponseContentCoding(coding)
        }
        ErrorCode::HttpResponseTimeout => P2ErrorCode::HttpResponseTimeout,
        ErrorCode::HttpUpgradeFailed => P2ErrorCode::HttpUpgradeFailed,
        ErrorCode::HttpProtocolError => P2ErrorCode::HttpProtocolError,
        ErrorCode::LoopDetected => P2ErrorCode::LoopDetected,
        ErrorCode::ConfigurationError => P2ErrorCode::ConfigurationError,
        ErrorCode::InternalError(message) => P2ErrorCode::InternalError(message),
    }
}

fn field_size(
    types::FieldSizePayload {
        field_name,
        field_size,
    }: types::FieldSizePayload,
) -> wasip2::http::types::FieldSizePayload {
    wasip2::http::types::FieldSizePayload {
        field_name,
        field_size,
    }
}
