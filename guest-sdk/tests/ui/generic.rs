#[wedge_sdk::handler]
async fn handler<T>(_request: T) -> &'static str {
    "hi"
}
