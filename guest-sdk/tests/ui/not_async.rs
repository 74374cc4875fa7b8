use wedge_sdk::Request;

#[wedge_sdk::handler]
fn handler(request: Request) -> String {
    request.uri().to_string()
}
