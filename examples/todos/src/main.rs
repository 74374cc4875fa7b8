//! `GET /api/todos` lists the todos; `POST /api/todos` with `{"title": "…"}`
//! validates it and answers `201` with the new todo: a body that is not
//! that JSON gets a `400` saying what is wrong, an empty title a `422`.
//! Nothing is stored (see `api/todos/[id]`): the new todo is echoed back.

use serde::{Deserialize, Serialize};
use wedge_sdk::{Error, Json, Request, RequestExt as _, Router, StatusCode};

#[derive(Serialize)]
struct Todo {
    id: u32,
    title: String,
    done: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewTodo {
    title: String,
}

async fn list(_request: Request) -> Json<[Todo; 2]> {
    Json([1, 2].map(|id| Todo { id, title: format!("Todo {id}"), done: false }))
}

async fn create(mut request: Request) -> Result<(StatusCode, Json<Todo>), Error> {
    let NewTodo { title } = request.json().await?;
    if title.trim().is_empty() || title.len() > 200 {
        return Err(Error::new(StatusCode::UNPROCESSABLE_ENTITY, "`title` must be 1-200 bytes"));
    }
    Ok((StatusCode::CREATED, Json(Todo { id: 3, title, done: false })))
}

#[wedge_sdk::handler]
fn routes() -> Router {
    Router::new().get(list).post(create)
}
