//! Streaming bodies: write a response as it is produced, read a request as
//! it arrives.
//!
//! A body that is never held whole: [`stream`] answers with chunks written
//! by an async function, and [`chunks`] reads an incoming body chunk by
//! chunk. For a body made from a `Stream`, wstd has
//! [`Body::from_stream`]; returning `Response::new(request.into_body())`
//! echoes a request without buffering it.

use std::future::Future;
use std::io;

use bytes::Bytes;
use futures_channel::mpsc;
use futures_lite::future::poll_fn;
pub use futures_lite::{Stream, StreamExt};
use http_body_util::BodyExt as _;
use wstd::http::Body;

use crate::error::Error;

/// Chunks are handed over one at a time: a writer waits while the host
/// sends the previous chunk, so a slow client slows the writer instead of
/// filling the guest's memory.
const CHUNKS_IN_FLIGHT: usize = 1;

/// A body whose chunks `write` produces as it runs.
///
/// `write` is spawned on the component's executor and runs while the
/// response is sent; each [`BodyWriter::write`] waits until the host has
/// taken the previous chunk. If `write` returns an error, it is logged and
/// the response is cut (no clean end), so the client can tell it is
/// incomplete. If the client goes away, `write` gets an error from its next
/// [`BodyWriter::write`] and should return.
///
/// With the `wasi-0-3` feature, wstd's timers do not run: sleep with
/// `wasip3::clocks::monotonic_clock::wait_for(100_000_000).await` instead
/// of the `wstd::task::sleep` below (see [WASI 0.3](crate#wasi-03)).
///
/// ```
/// use wedge_sdk::wstd::time::Duration;
/// use wedge_sdk::{Request, Response, body};
///
/// async fn countdown(_request: Request) -> Response {
///     Response::new(body::stream(async |mut writer| {
///         for n in (1..=3).rev() {
///             writer.write(format!("{n}...\n")).await?;
///             wedge_sdk::wstd::task::sleep(Duration::from_millis(100)).await;
///         }
///         writer.write("liftoff\n").await
///     }))
/// }
/// ```
pub fn stream<F, Fut>(write: F) -> Body
where
    F: FnOnce(BodyWriter) -> Fut,
    Fut: Future<Output = Result<(), Error>> + 'static,
{
    let (sender, receiver) = mpsc::channel(CHUNKS_IN_FLIGHT);
    let mut on_error = sender.clone();
    let writing = write(BodyWriter { sender });
    crate::wasi::spawn(async move {
        if let Err(error) = writing.await {
            eprintln!("error: writing the response body: {error}");
            // An error item fails the body's stream, which cuts the response.
            let failed = io::Error::other("the body's writer failed");
            let _ = send(&mut on_error, Err(failed)).await;
        }
    });
    Body::from_try_stream(receiver)
}

/// Writes the chunks of a [`stream`]ed body.
pub struct BodyWriter {
    sender: mpsc::Sender<Result<Bytes, io::Error>>,
}

impl BodyWriter {
    /// Sends `chunk`, waiting while the previous one is still on its way.
    /// Fails once the response is gone (the client disconnected, or the
    /// host cut it): stop writing then.
    ///
    /// ```
    /// use wedge_sdk::body::BodyWriter;
    ///
    /// async fn greet(mut writer: BodyWriter) -> Result<(), wedge_sdk::Error> {
    ///     writer.write("hello, ").await?;
    ///     writer.write(String::from("world\n")).await
    /// }
    /// ```
    pub async fn write(&mut self, chunk: impl Into<Bytes>) -> Result<(), Error> {
        send(&mut self.sender, Ok(chunk.into()))
            .await
            .map_err(|_| Error::internal("the response body was closed: the client went away"))
    }
}

async fn send(
    sender: &mut mpsc::Sender<Result<Bytes, io::Error>>,
    chunk: Result<Bytes, io::Error>,
) -> Result<(), mpsc::SendError> {
    poll_fn(|cx| sender.poll_ready(cx)).await?;
    sender.start_send(chunk)
}

/// `body`'s data as a stream of chunks, in the sizes they arrive.
///
/// Between chunks the handler may wait on anything else (a write to its
/// response, a fetch, a timer): it waits off the CPU however long that
/// takes, even with more of the body already arrived.
///
/// ```
/// use wedge_sdk::body::{self, StreamExt as _};
/// use wedge_sdk::{Error, Request};
///
/// /// Counts the bytes of an upload of any size in constant memory.
/// async fn count(request: Request) -> Result<String, Error> {
///     let mut chunks = body::chunks(request.into_body());
///     let mut total = 0;
///     while let Some(chunk) = chunks.next().await {
///         total += chunk?.len();
///     }
///     Ok(format!("{total} bytes\n"))
/// }
/// ```
pub fn chunks(body: Body) -> impl Stream<Item = Result<Bytes, wstd::http::Error>> + Unpin {
    body.into_boxed_body().into_data_stream()
}
