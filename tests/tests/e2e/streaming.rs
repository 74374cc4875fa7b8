//! Bodies stream through a guest both ways; the host never holds one whole.

use bytes::Bytes;
use futures::StreamExt;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;

use crate::harness::{Routes, Server};

const SIZE: usize = 50 * 1024 * 1024;
const CHUNK: usize = 256 * 1024;

/// A deterministic, non-repeating-looking byte at `offset`.
fn byte_at(offset: usize) -> u8 {
    (offset.wrapping_mul(2654435761) >> 13) as u8
}

fn chunk(start: usize) -> Bytes {
    (start..(start + CHUNK).min(SIZE)).map(byte_at).collect()
}

#[tokio::test]
async fn a_50_mb_body_is_echoed_byte_for_byte_without_buffering() {
    let routes = Routes::new()
        .with("echo.wasm", "echo_stream")
        .with_bytes("echo.toml", b"max_body = \"64MiB\"\n");
    let server = Server::start(routes.path()).await;
    for client in server.clients() {
        // Warm up, so the baseline includes a guest instance and a connection.
        let small = client.post("/echo", "warm-up").await;
        assert_eq!(small.body().as_ref(), b"warm-up");
        let baseline = server.peak_rss_kib();

        let stream = futures::stream::iter((0..SIZE).step_by(CHUNK))
            .map(|start| Ok::<_, std::io::Error>(Frame::data(chunk(start))));
        let request = client
            .request("POST", "/echo")
            .header("content-type", "application/octet-stream")
            .body(BodyExt::boxed(StreamBody::new(stream)))
            .unwrap();
        let response = client.send_streaming(request).await;
        assert_eq!(response.status(), 200, "{}", client.version);
        let mut body = response.into_body();
        let mut offset = 0;
        while let Some(frame) = body.frame().await {
            let frame = frame.expect("response body frame");
            let Some(data) = frame.data_ref() else {
                continue;
            };
            for (i, &byte) in data.iter().enumerate() {
                assert_eq!(
                    byte,
                    byte_at(offset + i),
                    "{}: byte {}",
                    client.version,
                    offset + i
                );
            }
            offset += data.len();
        }
        assert_eq!(offset, SIZE, "{}: echoed length", client.version);

        // Buffering the body whole would add at least its 50 MiB.
        let growth_mib = server.peak_rss_kib().saturating_sub(baseline) / 1024;
        assert!(
            growth_mib < 20,
            "{}: peak RSS grew by {growth_mib} MiB",
            client.version
        );
    }
}
