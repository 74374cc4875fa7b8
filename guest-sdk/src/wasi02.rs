//! The SDK on WASI 0.2 (without feature `wasi-0-3`): the
//! `wasi:http/incoming-handler@0.2` export, tasks and outbound requests on
//! wstd's reactor.

use std::future::Future;

use bytes::Bytes;
use http_body_util::Empty;
use wasip2::http::types::{IncomingRequest, ResponseOutparam};
use wstd::http::server::Responder;
use wstd::http::{Body, Client};

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

/// Sends `request` with wstd's client and waits for the response head.
///
/// An empty body is sent without a single write. wstd sends `Body::empty()`
/// as a zero-length write, and a write to a request body the host has
/// already closed (because it refused the request, or the connection
/// failed) fails with "connection reset", which wstd's client then reports
/// instead of the real reason.
pub(crate) async fn send(request: http::Request<Body>) -> Result<Response, wstd::http::Error> {
    Client::new().send(request.map(unwritten_if_empty)).await
}

/// `body`, or for an empty one a body wstd sends without any write: it
/// writes an in-memory body (`Body::empty()` included) with `write_all`,
/// which makes a zero-length write; a boxed body with no frames is only
/// finished.
fn unwritten_if_empty(body: Body) -> Body {
    if body.content_length() == Some(0) {
        Body::from_http_body(Empty::<Bytes>::new())
    } else {
        body
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_body_is_sent_from_a_frameless_body() {
        // wstd's `Body` tells its in-memory variant (sent with a write) from
        // a boxed one (sent frame by frame) only in its Debug output.
        for empty in [Body::empty(), Body::from(""), Body::from(Vec::new())] {
            let sent = format!("{:?}", unwritten_if_empty(empty));
            assert!(sent.starts_with("Body(Boxed("), "{sent}");
        }
        let full = format!("{:?}", unwritten_if_empty(Body::from("data")));
        assert!(full.starts_with("Body(Complete"), "{full}");
    }
}
