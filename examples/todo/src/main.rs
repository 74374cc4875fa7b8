//! `/api/todos/[id]`: `GET`, `PUT`, `PATCH` and `DELETE` one todo of those
//! `api/todos` creates, through a method router (other methods: `405` with
//! `Allow`). A todo that does not exist is a `404`.
//!
//! The todos live in the key-value store `default`, which the route's
//! sidecar grants (`key_value_stores = ["default"]`), each under
//! `todo:{id}` as JSON. `PUT` replaces a todo (`{"title": "…", "done":
//! true}`, as `GET` answers it but for the id, which may be left out),
//! `PATCH` changes the fields it is given; both change it with a
//! compare-and-swap ([`kv::Store::update`]), so two requests at once
//! cannot undo each other's change or bring back a deleted todo. A body
//! that is not that JSON gets a `400` saying what is wrong, an empty title
//! (or an `id` that is not the path's) a `422`.

use serde::{Deserialize, Serialize};
use wedge_sdk::{Error, Json, Request, RequestExt as _, Router, StatusCode, kv, serde_json};

#[derive(Serialize, Deserialize)]
struct Todo {
    id: u64,
    title: String,
    done: bool,
}

/// A `PUT` body: the todo as `GET` answers it, its id optional.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Replacement {
    id: Option<u64>,
    title: String,
    done: bool,
}

/// A `PATCH` body: the fields to change.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Changes {
    title: Option<String>,
    done: Option<bool>,
}

fn key(id: u64) -> String {
    format!("todo:{id}")
}

fn missing(id: u64) -> Error {
    Error::new(StatusCode::NOT_FOUND, format!("no todo {id}"))
}

fn check_title(title: &str) -> Result<(), Error> {
    if title.trim().is_empty() || title.len() > 200 {
        return Err(Error::new(StatusCode::UNPROCESSABLE_ENTITY, "`title` must be 1-200 bytes"));
    }
    Ok(())
}

/// Rewrites todo `id` with `change`, atomically; a `404` if there is none.
fn modify(id: u64, mut change: impl FnMut(Todo) -> Todo) -> Result<Todo, Error> {
    let store = kv::Store::open("default")?;
    let mut written = None;
    store.update(&key(id), |old| -> Result<_, Error> {
        let old = old.ok_or_else(|| missing(id))?;
        let todo = change(serde_json::from_slice(old)?);
        let bytes = serde_json::to_vec(&todo)?;
        written = Some(todo);
        Ok(Some(bytes))
    })?;
    written.ok_or_else(|| Error::internal("update returned without writing"))
}

async fn show(request: Request) -> Result<Json<Todo>, Error> {
    let id: u64 = request.param("id")?;
    let store = kv::Store::open("default")?;
    store.get_json(&key(id))?.map(Json).ok_or_else(|| missing(id))
}

async fn replace(mut request: Request) -> Result<Json<Todo>, Error> {
    let id: u64 = request.param("id")?;
    let Replacement { id: given, title, done } = request.json().await?;
    if given.is_some_and(|given| given != id) {
        return Err(Error::new(StatusCode::UNPROCESSABLE_ENTITY, "`id` cannot change"));
    }
    check_title(&title)?;
    Ok(Json(modify(id, |_| Todo { id, title: title.clone(), done })?))
}

async fn change(mut request: Request) -> Result<Json<Todo>, Error> {
    let id: u64 = request.param("id")?;
    let changes: Changes = request.json().await?;
    if let Some(title) = &changes.title {
        check_title(title)?;
    }
    Ok(Json(modify(id, |todo| Todo {
        id,
        title: changes.title.clone().unwrap_or(todo.title),
        done: changes.done.unwrap_or(todo.done),
    })?))
}

async fn remove(request: Request) -> Result<StatusCode, Error> {
    let id: u64 = request.param("id")?;
    let store = kv::Store::open("default")?;
    if !store.exists(&key(id))? {
        return Err(missing(id));
    }
    store.delete(&key(id))?;
    Ok(StatusCode::NO_CONTENT)
}

#[wedge_sdk::handler]
fn routes() -> Router {
    Router::new().get(show).put(replace).patch(change).delete(remove)
}
