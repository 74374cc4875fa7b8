//! The SDK on WASI 0.2 (without feature `wasi-0-3`): the
//! `wasi:http/incoming-handler@0.2` export, tasks and outbound requests on
//! wstd's reactor.

use std::future::Future;

use http_body_util::BodyExt as _;
use wasip2::http::outgoing_handler;
use wasip2::http::types::{
    Fields, IncomingRequest, Method, OutgoingBody, OutgoingRequest, ResponseOutparam, Scheme,
};
use wstd::http::error::Context as _;
use wstd::http::server::Responder;
use wstd::http::{Body, Error};
use wstd::io::AsyncOutputStream;
use wstd::runtime::AsyncPollable;

use crate::{Handler, Response};

/// Runs `future` beside the handler, on wstd's executor (the export's
/// `block_on`), so it may outlive the handler while the response is sent.
pub(crate) fn spawn(future: impl Future<Output = ()> + 'static) {
    wstd::runtime::spawn(future).detach();
}

/// Runs `handler` on one incoming request: the body of the export.
pub fn run(request: IncomingRequest, response_out: ResponseOutparam, handler: impl Handler) {
    let responder = Responder::new(response_out);
    wstd::runtime::block_on(async move {
        let request = match crate::incoming::request(request) {
            Ok(request) => request,
            Err(error) => {
                eprintln!("error: cannot read the incoming request: {error:#}");
                return responder.fail(error);
            }
        };
        let response = handler.call(request).await;
        if let Err(error) = responder.respond(response).await {
            eprintln!("error: sending the response body: {error:#}");
        }
    });
}

/// Sends `request` and waits for the response head; its body is read by
/// [`crate::incoming`]'s reader, which waits off the CPU (wstd's client
/// would read it with wstd's, which spins while the handler waits on
/// something else with response data waiting).
///
/// The request body is sent frame by frame, so an empty one is only
/// finished, without a write: a write to a request body the host has
/// already closed (because it refused the request, or the connection
/// failed) fails with "connection reset", which would hide the real reason.
pub(crate) async fn send(request: http::Request<Body>) -> Result<Response, wstd::http::Error> {
    let (parts, body) = request.into_parts();
    let outgoing = OutgoingRequest::new(fields(&parts.headers)?);
    let method = wasi_method(&parts.method);
    outgoing
        .set_method(&method)
        .map_err(|()| Error::msg(format!("method rejected by wasi:http: {method:?}")))?;
    let scheme = match parts.uri.scheme() {
        Some(scheme) if *scheme == http::uri::Scheme::HTTP => Scheme::Http,
        Some(scheme) if *scheme == http::uri::Scheme::HTTPS => Scheme::Https,
        Some(scheme) => Scheme::Other(scheme.to_string()),
        None => Scheme::Https,
    };
    outgoing
        .set_scheme(Some(&scheme))
        .map_err(|()| Error::msg(format!("scheme rejected by wasi:http: {scheme:?}")))?;
    let authority = parts.uri.authority().map(|authority| authority.as_str());
    outgoing
        .set_authority(authority)
        .map_err(|()| Error::msg(format!("authority rejected by wasi:http: {authority:?}")))?;
    if let Some(path) = parts.uri.path_and_query() {
        outgoing
            .set_path_with_query(Some(path.as_str()))
            .map_err(|()| Error::msg(format!("path rejected by wasi:http: {path}")))?;
    }
    let outgoing_body = outgoing
        .body()
        .map_err(|()| Error::msg("the request's body was already taken"))?;
    let incoming = outgoing_handler::handle(outgoing, None)?;
    let sent = write_body(body, outgoing_body);
    let answered = async {
        AsyncPollable::new(incoming.subscribe()).wait_for().await;
        let response = incoming
            .get()
            .ok_or_else(|| Error::msg("the response was not ready when its pollable was"))?
            .map_err(|()| Error::msg("the response was already taken"))??;
        crate::incoming::response(response)
    };
    let ((), response) = futures_lite::future::try_zip(sent, answered).await?;
    Ok(response)
}

/// Writes `body` to `outgoing` frame by frame, then finishes it with the
/// body's trailers.
async fn write_body(body: Body, outgoing: OutgoingBody) -> Result<(), Error> {
    let stream = AsyncOutputStream::new(
        outgoing
            .write()
            .map_err(|()| Error::msg("the request's body stream was already taken"))?,
    );
    let mut body = body.into_boxed_body();
    let mut trailers = None;
    while let Some(frame) = body.frame().await {
        let frame = frame.context("reading the request body to send")?;
        match frame.into_data() {
            Ok(data) if data.is_empty() => {}
            Ok(data) => stream.write_all(&data).await?,
            Err(frame) => {
                if let Some(map) = frame.trailers_ref() {
                    trailers = Some(fields(map)?);
                }
            }
        }
    }
    drop(stream);
    OutgoingBody::finish(outgoing, trailers).context("finishing the request body")?;
    Ok(())
}

/// `headers` as `wasi:http` fields.
fn fields(headers: &http::HeaderMap) -> Result<Fields, Error> {
    let fields = Fields::new();
    for (name, value) in headers {
        fields
            .append(name.as_str(), value.as_bytes())
            .with_context(|| format!("header {name} rejected by wasi:http"))?;
    }
    Ok(fields)
}

fn wasi_method(method: &http::Method) -> Method {
    match *method {
        http::Method::GET => Method::Get,
        http::Method::HEAD => Method::Head,
        http::Method::POST => Method::Post,
        http::Method::PUT => Method::Put,
        http::Method::DELETE => Method::Delete,
        http::Method::CONNECT => Method::Connect,
        http::Method::OPTIONS => Method::Options,
        http::Method::TRACE => Method::Trace,
        http::Method::PATCH => Method::Patch,
        ref other => Method::Other(other.to_string()),
    }
}
