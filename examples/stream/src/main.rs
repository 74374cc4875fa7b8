//! `GET /api/stream`: a response written while it is produced, one line
//! every 100 ms, as Next.js streams a `ReadableStream` from an async
//! iterator. `curl -N localhost:3000/api/stream` shows the lines arrive.

use wedge_sdk::http::header::CONTENT_TYPE;
use wedge_sdk::wstd::{task::sleep, time::Duration};
use wedge_sdk::{Error, Request, Response, Router, body, http};

async fn lines(_request: Request) -> Result<Response, Error> {
    let body = body::stream(async |mut writer| {
        for n in 1..=5 {
            writer.write(format!("line {n}\n")).await?;
            sleep(Duration::from_millis(100)).await;
        }
        Ok(())
    });
    Ok(http::Response::builder().header(CONTENT_TYPE, "text/plain; charset=utf-8").body(body)?)
}

#[wedge_sdk::handler]
fn routes() -> Router {
    Router::new().get(lines)
}
