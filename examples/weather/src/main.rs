//! `GET /api/weather?city=Oslo`: asks a weather API (`WEATHER_API`) with the
//! secret `WEATHER_API_KEY`, both from the route's `[env]`, and answers
//! `{"city":"Oslo","temperature_c":…,"summary":…}`. The key goes to the
//! upstream only: never into a response, not even an error.

use wedge_sdk::http::header::AUTHORIZATION;
use wedge_sdk::serde_json::{Value, json};
use wedge_sdk::{Body, Error, Json, Request, RequestExt as _, Router, StatusCode, fetch, http};

async fn forecast(request: Request) -> Result<Json<Value>, Error> {
    let city = request.query_param("city").ok_or_else(|| Error::bad_request("add ?city=…"))?;
    let query = form_urlencoded::Serializer::new(String::new()).append_pair("q", &city).finish();
    let upstream = http::Request::get(format!("{}/current?{query}", std::env::var("WEATHER_API")?))
        .header(AUTHORIZATION, format!("Bearer {}", std::env::var("WEATHER_API_KEY")?))
        .body(Body::empty())?;
    let mut response = fetch(upstream).await?;
    if !response.status().is_success() {
        eprintln!("weather API answered {}", response.status()); // its body may quote the key
        return Err(Error::new(StatusCode::BAD_GATEWAY, "the weather service is unavailable"));
    }
    let reading: Value = response.body_mut().json().await?;
    let summary = &reading["condition"];
    Ok(Json(json!({ "city": city, "temperature_c": reading["temp_c"], "summary": summary })))
}

#[wedge_sdk::handler]
fn routes() -> Router {
    Router::new().get(forecast)
}
