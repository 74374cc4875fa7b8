//! The route's `methods`: which requests reach the guest, and how the host
//! answers the others without starting it.

use http::Method;

/// What to do with a request's method.
#[derive(Debug, PartialEq, Eq)]
pub enum MethodDecision {
    /// Run the guest with the request as it is.
    Pass,
    /// `HEAD` where only `GET` is listed: run the `GET` handler; hyper drops
    /// the body for the client.
    HeadAsGet,
    /// `OPTIONS` not listed: `204` with this `Allow`, guest not started.
    Options(String),
    /// Not listed: `405` with this `Allow`, guest not started.
    NotAllowed(String),
}

/// Decides for `method` on a route listing `methods` (`None`: all methods
/// go to the guest).
pub fn decide(methods: Option<&[Method]>, method: &Method) -> MethodDecision {
    let Some(listed) = methods else {
        return MethodDecision::Pass;
    };
    if listed.contains(method) {
        MethodDecision::Pass
    } else if *method == Method::HEAD && listed.contains(&Method::GET) {
        MethodDecision::HeadAsGet
    } else if *method == Method::OPTIONS {
        MethodDecision::Options(allow(listed))
    } else {
        MethodDecision::NotAllowed(allow(listed))
    }
}

/// The `Allow` value: what is listed, plus `HEAD` (served by `GET`) and
/// `OPTIONS` (answered by the host) where those are not listed.
fn allow(listed: &[Method]) -> String {
    let mut allowed: Vec<&str> = listed.iter().map(Method::as_str).collect();
    if listed.contains(&Method::GET) && !listed.contains(&Method::HEAD) {
        allowed.push("HEAD");
    }
    if !listed.contains(&Method::OPTIONS) {
        allowed.push("OPTIONS");
    }
    allowed.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use MethodDecision::*;

    #[test]
    fn listed_methods_reach_the_guest_and_the_rest_are_answered_by_the_host() {
        let get_post = [Method::GET, Method::POST];
        let with_options = [Method::GET, Method::OPTIONS];
        let with_head = [Method::GET, Method::HEAD];
        let put = [Method::PUT];
        let cases: &[(Option<&[Method]>, Method, MethodDecision)] = &[
            (None, Method::DELETE, Pass),
            (None, Method::OPTIONS, Pass),
            (Some(&get_post), Method::GET, Pass),
            (Some(&get_post), Method::POST, Pass),
            (Some(&get_post), Method::HEAD, HeadAsGet),
            (
                Some(&get_post),
                Method::OPTIONS,
                Options("GET, POST, HEAD, OPTIONS".into()),
            ),
            (
                Some(&get_post),
                Method::DELETE,
                NotAllowed("GET, POST, HEAD, OPTIONS".into()),
            ),
            (Some(&with_options), Method::OPTIONS, Pass),
            (
                Some(&with_options),
                Method::PUT,
                NotAllowed("GET, OPTIONS, HEAD".into()),
            ),
            (Some(&with_head), Method::HEAD, Pass),
            (Some(&put), Method::HEAD, NotAllowed("PUT, OPTIONS".into())),
            (Some(&put), Method::GET, NotAllowed("PUT, OPTIONS".into())),
        ];
        for (methods, method, expected) in cases {
            assert_eq!(
                decide(*methods, method),
                *expected,
                "{method} on {methods:?}"
            );
        }
    }
}
