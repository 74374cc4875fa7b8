//! The examples in `examples/`, served at the routes their crates declare.

use crate::harness::{Routes, Server, json, text};

#[tokio::test]
async fn examples_answer_as_the_readme_says() {
    let routes = Routes::new()
        .with("index.wasm", "index")
        .with("api/hello.wasm", "hello")
        .with("api/echo.wasm", "echo")
        .with("api/users/[id].wasm", "users")
        .with("blog/[...slug].wasm", "blog");
    let server = Server::start(routes.path()).await;
    for client in server.clients() {
        let hello = client.get("/api/hello").await;
        assert_eq!(hello.status(), 200);
        assert_eq!(hello.headers()["content-type"], "application/json");
        assert_eq!(
            json(&hello),
            serde_json::json!({"message": "Hello from Wedge!"})
        );

        let echo = client.post("/api/echo", "ping pong").await;
        assert_eq!((echo.status().as_u16(), text(&echo)), (200, "ping pong"));
        assert_eq!(client.get("/api/echo").await.status(), 405);

        let user = client.get("/api/users/ada%20l").await;
        assert_eq!(json(&user), serde_json::json!({"id": "ada l"}));

        let post = client.get("/blog/2026/hello-world").await;
        assert_eq!(json(&post), serde_json::json!({"slug": "2026/hello-world"}));

        let index = client.get("/").await;
        assert_eq!(index.status(), 200);
        assert!(text(&index).contains("/api/hello"), "{}", text(&index));
    }
}
