#[wedge_sdk::handler]
fn routes() -> u32 {
    42
}
