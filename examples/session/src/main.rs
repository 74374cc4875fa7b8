//! `/api/session` (route `api/session`): sign in and out with a session
//! cookie, as a Next.js route handler with `cookies().set(…)`.
//!
//! - `POST` with a form `user=ada` signs in: it sets the cookie `session`
//!   (`HttpOnly`, so page scripts cannot read it; `SameSite=Lax`, so other
//!   sites' forms do not send it; 8 hours) and answers `{"user":"ada"}`.
//! - `GET` says who you are from the cookie: `{"user":"ada"}`, or `401`.
//! - `DELETE` signs out: it deletes the cookie and answers `204`.
//!
//! The cookie holds the user name in plain text, which a client can forge:
//! enough to show cookies, not to authenticate anyone. A real app keeps a
//! random session id in a key-value store, or signs the value with HMAC
//! (see examples/webhook), and adds `Secure` when served over HTTPS.
//!
//! ```sh
//! curl -i -c jar -d user=ada localhost:3000/api/session
//! curl -b jar localhost:3000/api/session              # {"user":"ada"}
//! curl -i -b jar -c jar -X DELETE localhost:3000/api/session
//! curl -i -b jar localhost:3000/api/session           # 401 not signed in
//! ```

use serde::{Deserialize, Serialize};
use wedge_sdk::cookie::time::Duration;
use wedge_sdk::{
    CacheControl, Cookie, Error, IntoResponse, Json, Request, RequestExt as _, Router, SameSite,
    SetCookies, StatusCode,
};

/// The session cookie's name.
const SESSION: &str = "session";

#[derive(Deserialize)]
struct SignIn {
    user: String,
}

#[derive(Serialize)]
struct Session {
    user: String,
}

/// `POST`: checks the name (it becomes the cookie's value, so letters and
/// digits only) and sets the cookie.
async fn sign_in(mut request: Request) -> Result<impl IntoResponse, Error> {
    let SignIn { user } = request.form().await?;
    if user.is_empty() || user.len() > 32 || !user.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(Error::bad_request("`user` must be 1-32 letters or digits"));
    }
    let cookie = Cookie::build((SESSION, user.clone()))
        .http_only(true)
        .same_site(SameSite::Lax)
        .max_age(Duration::hours(8));
    Ok((SetCookies::new().set(cookie), Json(Session { user })))
}

/// `GET`: the signed-in user, never cached (it differs per visitor).
async fn whoami(request: Request) -> Result<impl IntoResponse, Error> {
    let session = request.cookie(SESSION).filter(|session| !session.value().is_empty());
    let Some(session) = session else {
        return Err(Error::new(StatusCode::UNAUTHORIZED, "not signed in"));
    };
    Ok((CacheControl::no_store(), Json(Session { user: session.value().to_owned() })))
}

/// `DELETE`: deletes the cookie, whether or not there was one.
async fn sign_out(_request: Request) -> impl IntoResponse {
    (SetCookies::new().delete(SESSION), StatusCode::NO_CONTENT)
}

#[wedge_sdk::handler]
fn routes() -> Router {
    Router::new().get(whoami).post(sign_in).delete(sign_out)
}
