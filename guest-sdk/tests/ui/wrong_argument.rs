#[wedge_sdk::handler]
async fn handler(request: String) -> String {
    request
}
