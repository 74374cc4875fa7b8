//! The native baseline that `cargo xtask bench` measures Wedge against: what
//! hyper serves with no sandbox at all. `GET` answers `hello`; `POST`
//! streams the request body back, as the `echo_stream` guest does.
//!
//! `native-hello [ADDR]` (default `127.0.0.1:0`) prints `listening on
//! http://ADDR`, as `wedge serve` does, on the same multi-thread tokio
//! runtime and hyper-util auto (HTTP/1.1 + h2c) connection builder.

use std::convert::Infallible;
use std::io::Write as _;
use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Method, Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;

type Body = BoxBody<Bytes, hyper::Error>;

async fn answer(request: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    let response = if request.method() == Method::POST {
        Response::new(request.into_body().boxed())
    } else {
        let hello = Full::new(Bytes::from_static(b"hello"));
        Response::new(hello.map_err(|never| match never {}).boxed())
    };
    Ok(response)
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr: SocketAddr = match std::env::args().nth(1) {
        Some(addr) => addr
            .parse()
            .map_err(|e| std::io::Error::other(format!("`{addr}` is not an address: {e}")))?,
        None => SocketAddr::from(([127, 0, 0, 1], 0)),
    };
    let listener = tokio::net::TcpListener::bind(addr).await?;
    writeln!(
        std::io::stdout(),
        "listening on http://{}",
        listener.local_addr()?
    )?;
    let builder = auto::Builder::new(TokioExecutor::new());
    loop {
        let (stream, _) = listener.accept().await?;
        stream.set_nodelay(true)?;
        let connection = builder
            .serve_connection(TokioIo::new(stream), hyper::service::service_fn(answer))
            .into_owned();
        tokio::spawn(async move {
            let _ = connection.await;
        });
    }
}
