//! [`Json`]: JSON request bodies in, JSON responses out.

use serde::Serialize;
use serde::de::DeserializeOwned;
use wstd::http::Body;

use crate::error::Error;
use crate::response::{IntoResponse, Response, with_content_type};

/// A JSON body: read one from a request, or answer with one.
///
/// As a response, `Json(value)` is a `200` with `content-type:
/// application/json` (wrap it in `(StatusCode, Json(value))` for another
/// status). As an extractor, [`Json::from_body`] (or
/// [`RequestExt::json`](crate::RequestExt::json), its shorthand) reads the
/// whole body and deserializes it; a body that is not JSON, or not the JSON
/// `T` expects, is a `400` whose message says what was wrong, such as
/// ``invalid JSON body: missing field `title` at line 1 column 17``. The
/// request's `content-type` is not checked, so `curl -d '{…}'` works too.
///
/// ```
/// use serde::{Deserialize, Serialize};
/// use wedge_sdk::{Error, Json, Request, RequestExt as _, StatusCode};
///
/// #[derive(Deserialize)]
/// struct NewTodo {
///     title: String,
/// }
///
/// #[derive(Serialize)]
/// struct Todo {
///     id: u32,
///     title: String,
/// }
///
/// async fn create(mut request: Request) -> Result<(StatusCode, Json<Todo>), Error> {
///     let new: NewTodo = request.json().await?;
///     Ok((StatusCode::CREATED, Json(Todo { id: 1, title: new.title })))
/// }
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Json<T>(pub T);

impl<T: DeserializeOwned> Json<T> {
    /// Reads `body` whole and deserializes it as `T`: a `400` [`Error`] if
    /// it cannot be read or is not the JSON `T` expects.
    ///
    /// ```
    /// use wedge_sdk::{Error, Json, Request};
    ///
    /// async fn sum(request: Request) -> Result<String, Error> {
    ///     let Json(numbers) = Json::<Vec<i64>>::from_body(request.into_body()).await?;
    ///     Ok(numbers.iter().sum::<i64>().to_string())
    /// }
    /// ```
    pub async fn from_body(mut body: Body) -> Result<Json<T>, Error> {
        let bytes = body.contents().await.map_err(|error| {
            Error::bad_request(format!("cannot read the request body: {error}"))
        })?;
        parse(bytes).map(Json)
    }
}

/// Deserializes `bytes`, with a `400` that says what was wrong.
pub(crate) fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Error> {
    serde_json::from_slice(bytes)
        .map_err(|error| Error::bad_request(format!("invalid JSON body: {error}")))
}

impl<T: Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        match serde_json::to_vec(&self.0) {
            Ok(bytes) => with_content_type(bytes.into(), "application/json"),
            Err(error) => Error::from(error).into_response(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use http::StatusCode;
    use serde::Deserialize;

    use super::*;
    use crate::response::tests::body_text;

    #[derive(Debug, Deserialize, PartialEq)]
    struct Todo {
        title: String,
        done: bool,
    }

    fn parse_body<T: DeserializeOwned>(body: &'static str) -> Result<T, Error> {
        futures_lite::future::block_on(Json::<T>::from_body(Body::from(body))).map(|j| j.0)
    }

    #[test]
    fn a_matching_body_deserializes() {
        let todo: Todo = parse_body(r#"{"title":"milk","done":false}"#).unwrap();
        assert_eq!(
            todo,
            Todo {
                title: "milk".into(),
                done: false
            }
        );
    }

    #[test]
    fn a_missing_field_is_a_400_that_names_it() {
        let error = parse_body::<Todo>(r#"{"title":"milk"}"#).unwrap_err();
        assert_eq!(error.status(), StatusCode::BAD_REQUEST);
        let text = body_text(error.into_response());
        assert!(
            text.starts_with("invalid JSON body: missing field `done`"),
            "{text}"
        );
    }

    #[test]
    fn malformed_json_is_a_400_with_its_position() {
        let error = parse_body::<Todo>("{\"title\": ").unwrap_err();
        let text = body_text(error.into_response());
        assert!(text.contains("line 1 column"), "{text}");
    }

    #[test]
    fn a_json_response_has_the_json_content_type() {
        let response = Json(serde_json::json!({"id": 7})).into_response();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()["content-type"], "application/json");
        assert_eq!(body_text(response), r#"{"id":7}"#);
    }

    #[test]
    fn an_unserializable_value_is_a_500() {
        let map = HashMap::from([((1, 2), "x")]);
        assert_eq!(
            Json(map).into_response().status(),
            StatusCode::INTERNAL_SERVER_ERROR
        );
    }
}
