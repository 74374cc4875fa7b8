//! `/api/todos/[id]`: `GET`, `PUT` and `DELETE` one todo of an in-memory
//! list, through a method router (other methods: `405` with `Allow`).
//!
//! The list is made anew for every request and changes end with it: Wedge
//! runs each request in a fresh instance, so no request sees another's
//! memory. A real app keeps its todos in a database, reached with `fetch`.

use serde::{Deserialize, Serialize};
use wedge_sdk::{Error, Json, Request, RequestExt as _, Router, StatusCode};

#[derive(Serialize, Deserialize)]
struct Todo {
    #[serde(default)]
    id: u32,
    title: String,
    done: bool,
}

fn find(request: &Request) -> Result<Todo, Error> {
    let id: u32 = request.param("id")?;
    let todos = [1, 2].map(|id| Todo { id, title: format!("Todo {id}"), done: false });
    let missing = || Error::new(StatusCode::NOT_FOUND, format!("no todo {id}"));
    todos.into_iter().find(|todo| todo.id == id).ok_or_else(missing)
}

async fn show(request: Request) -> Result<Json<Todo>, Error> {
    Ok(Json(find(&request)?))
}

async fn replace(mut request: Request) -> Result<Json<Todo>, Error> {
    let id = find(&request)?.id;
    Ok(Json(Todo { id, ..request.json().await? }))
}

async fn remove(request: Request) -> Result<StatusCode, Error> {
    find(&request).map(|_| StatusCode::NO_CONTENT)
}

#[wedge_sdk::handler]
fn routes() -> Router {
    Router::new().get(show).put(replace).delete(remove)
}
