use wedge_sdk::Request;

#[wedge_sdk::handler]
async fn handler(request: Request, extra: u32) -> String {
    format!("{} {extra}", request.uri())
}
