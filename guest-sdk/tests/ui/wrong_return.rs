use wedge_sdk::Request;

#[wedge_sdk::handler]
async fn handler(_request: Request) -> u32 {
    42
}
