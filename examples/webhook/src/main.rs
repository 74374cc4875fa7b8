//! `POST /api/webhook` (route `api/webhook`): a webhook receiver, as a
//! Next.js route handler that reads `await request.text()` to check a
//! GitHub-style signature.
//!
//! The sender signs the raw body with HMAC-SHA256 under a shared secret
//! and sends `X-Hub-Signature-256: sha256=<hex>`. The handler computes the
//! same over the bytes it received and compares in constant time
//! (`Mac::verify_slice`): a match answers `200` `{"ok":true,…}`, a missing,
//! malformed or wrong signature `401`. The secret is `WEBHOOK_SECRET` from
//! the route's `[env]`, copied from the host's environment when the route
//! loads (`WEBHOOK_SECRET=… cargo xtask serve`); it never leaves the guest.
//!
//! ```sh
//! body='{"action":"opened"}'
//! sig=$(printf %s "$body" | openssl dgst -sha256 -hmac "$WEBHOOK_SECRET" | cut -d' ' -f2)
//! curl -i -H "X-Hub-Signature-256: sha256=$sig" -d "$body" localhost:3000/api/webhook
//! curl -i -H "X-Hub-Signature-256: sha256=00" -d "$body" localhost:3000/api/webhook  # 401
//! ```

use hmac::{Hmac, Mac};
use sha2::Sha256;
use wedge_sdk::serde_json::{Value, json};
use wedge_sdk::{Error, Json, Request, Router, StatusCode};

/// The header the signature comes in, as GitHub names it.
const SIGNATURE: &str = "x-hub-signature-256";

fn unauthorized(why: &str) -> Error {
    Error::new(StatusCode::UNAUTHORIZED, why)
}

async fn receive(mut request: Request) -> Result<Json<Value>, Error> {
    let secret = std::env::var("WEBHOOK_SECRET")
        .map_err(|_| Error::internal("WEBHOOK_SECRET is not in the route's [env]"))?;
    let signature = request
        .headers()
        .get(SIGNATURE)
        .ok_or_else(|| unauthorized("missing X-Hub-Signature-256"))?
        .to_str()
        .ok()
        .and_then(|value| value.strip_prefix("sha256="))
        .and_then(|hex| hex::decode(hex).ok())
        .ok_or_else(|| unauthorized("X-Hub-Signature-256 is not sha256=<hex>"))?;
    // The signature covers the exact bytes sent: check them before parsing.
    let body = request.body_mut().contents().await?;
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes())?;
    mac.update(body);
    mac.verify_slice(&signature).map_err(|_| unauthorized("the signature does not match"))?;
    Ok(Json(json!({ "ok": true, "bytes": body.len() })))
}

#[wedge_sdk::handler]
fn routes() -> Router {
    Router::new().post(receive)
}
