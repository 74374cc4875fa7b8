//! `GET /api/todos` lists the todos; `POST /api/todos` with `{"title": "…"}`
//! validates it, stores it, and answers `201` with the new todo: a body
//! that is not that JSON gets a `400` saying what is wrong, an empty title
//! a `422`.
//!
//! The todos live in the key-value store `default`, which the route's
//! sidecar grants (`key_value_stores = ["default"]`): each under
//! `todo:{id}` as JSON, numbered by the counter `todos:next-id`.
//! `api/todos/[id]` reads, changes and deletes them.

use serde::{Deserialize, Serialize};
use wedge_sdk::{Error, Json, Request, RequestExt as _, Router, StatusCode, kv, serde_json};

/// The counter that numbers new todos.
const NEXT_ID: &str = "todos:next-id";

/// What comes before a todo's id in its key.
const PREFIX: &str = "todo:";

#[derive(Serialize, Deserialize)]
struct Todo {
    id: u64,
    title: String,
    done: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewTodo {
    title: String,
}

/// Every todo, by id.
async fn list(_request: Request) -> Result<Json<Vec<Todo>>, Error> {
    let store = kv::Store::open("default")?;
    let mut ids: Vec<u64> =
        store.keys()?.iter().filter_map(|key| key.strip_prefix(PREFIX)?.parse().ok()).collect();
    ids.sort_unstable();
    let keys: Vec<String> = ids.iter().map(|id| format!("{PREFIX}{id}")).collect();
    // One round trip for all of them; a todo deleted meanwhile is skipped.
    let mut todos = Vec::with_capacity(keys.len());
    for value in store.get_many(&keys)?.into_iter().flatten() {
        todos.push(serde_json::from_slice(&value)?);
    }
    Ok(Json(todos))
}

async fn create(mut request: Request) -> Result<(StatusCode, Json<Todo>), Error> {
    let NewTodo { title } = request.json().await?;
    if title.trim().is_empty() || title.len() > 200 {
        return Err(Error::new(StatusCode::UNPROCESSABLE_ENTITY, "`title` must be 1-200 bytes"));
    }
    let store = kv::Store::open("default")?;
    // Atomic: two requests at once get different ids.
    let id = u64::try_from(store.increment(NEXT_ID, 1)?)?;
    let todo = Todo { id, title, done: false };
    store.set_json(&format!("{PREFIX}{id}"), &todo)?;
    Ok((StatusCode::CREATED, Json(todo)))
}

#[wedge_sdk::handler]
fn routes() -> Router {
    Router::new().get(list).post(create)
}
