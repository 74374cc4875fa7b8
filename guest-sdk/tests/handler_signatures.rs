//! `#[wedge_sdk::handler]` on a wrong signature is a compile error that
//! points at the user's code and says what to write instead. The expected
//! messages are in `ui/*.stderr` (`TRYBUILD=overwrite` rewrites them).

#[test]
fn wrong_signatures_are_compile_errors_on_the_users_code() {
    let cases = trybuild::TestCases::new();
    cases.compile_fail("tests/ui/*.rs");
}
