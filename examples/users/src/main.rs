//! `GET /api/users/[id]`: fetches the user from a third-party API (the
//! sidecar's `USERS_API`, JSONPlaceholder in `routes/`) and answers with
//! only what the client needs: `{"id":1,"name":…,"email":…,"city":…}`.

use wedge_sdk::serde_json::{Value, json};
use wedge_sdk::{Body, Error, Json, Request, RequestExt as _, Router, StatusCode, fetch, http};

async fn show(request: Request) -> Result<Json<Value>, Error> {
    let id: u32 = request.param("id")?;
    let url = format!("{}/users/{id}", std::env::var("USERS_API")?);
    let mut response = fetch(http::Request::get(url).body(Body::empty())?).await?;
    match response.status() {
        StatusCode::OK => {}
        StatusCode::NOT_FOUND => return Err(Error::new(StatusCode::NOT_FOUND, "no such user")),
        status => return Err(Error::new(StatusCode::BAD_GATEWAY, format!("users API: {status}"))),
    }
    let user: Value = response.body_mut().json().await?;
    Ok(Json(json!({
        "id": user["id"],
        "name": user["name"],
        "email": user["email"],
        "city": user["address"]["city"],
    })))
}

#[wedge_sdk::handler]
fn routes() -> Router {
    Router::new().get(show)
}
