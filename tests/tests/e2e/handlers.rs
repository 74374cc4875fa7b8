//! The Route Handlers examples over real HTTP: cookies (`api/session`),
//! redirects (`go/[name]`), forms (`api/contact`), CORS (`api/public`), a
//! signed webhook (`api/webhook`) and `Cache-Control` (`api/quote`), each
//! served with its committed sidecar from `routes/`.

use std::path::Path;

use hmac::{Hmac, Mac};
use serde_json::json;
use sha2::Sha256;

use crate::harness::{Answer, Http, Routes, Server, json, text};

/// The webhook's shared secret, given to the server's environment: the
/// committed sidecar copies it in with `${WEBHOOK_SECRET}`.
const WEBHOOK_SECRET: &str = "e2e-webhook-secret";

/// The examples these tests cover: route file (without `.wasm`), package.
const EXAMPLES: &[(&str, &str)] = &[
    ("api/session", "session"),
    ("go/[name]", "redirect"),
    ("api/contact", "contact"),
    ("api/public", "public"),
    ("api/webhook", "webhook"),
    ("api/quote", "quote"),
];

/// The examples at their routes, each with its committed sidecar.
fn handler_routes() -> Routes {
    let committed = Path::new(env!("CARGO_MANIFEST_DIR")).join("../routes");
    EXAMPLES
        .iter()
        .fold(Routes::new(), |routes, (route, package)| {
            let sidecar = format!("{route}.toml");
            let text = std::fs::read(committed.join(&sidecar)).expect("a committed sidecar");
            routes
                .with(&format!("{route}.wasm"), package)
                .with_bytes(&sidecar, &text)
        })
}

async fn start() -> (Server, Routes) {
    let routes = handler_routes();
    let env = [("WEBHOOK_SECRET", WEBHOOK_SECRET)];
    let server = Server::start_with_env(routes.path(), &[], &env).await;
    (server, routes)
}

/// Every value of header `name`, as text.
fn all<'a>(answer: &'a Answer, name: &str) -> Vec<&'a str> {
    answer
        .headers()
        .get_all(name)
        .iter()
        .map(|value| value.to_str().expect("an ASCII header"))
        .collect()
}

/// The one value of header `name`, if any.
fn header<'a>(answer: &'a Answer, name: &str) -> Option<&'a str> {
    let values = all(answer, name);
    assert!(values.len() <= 1, "{name}: {values:?}");
    values.first().copied()
}

/// The `Set-Cookie` attributes, split at `; `.
fn set_cookie(answer: &Answer) -> Vec<String> {
    let values = all(answer, "set-cookie");
    assert_eq!(values.len(), 1, "one Set-Cookie: {values:?}");
    values[0].split("; ").map(str::to_owned).collect()
}

const FORM: (&str, &str) = ("content-type", "application/x-www-form-urlencoded");

#[tokio::test]
async fn a_session_cookie_is_set_read_back_and_deleted() {
    let (server, _routes) = start().await;
    for client in server.clients() {
        let signed_in = client
            .call_with("POST", "/api/session", &[FORM], "user=ada")
            .await;
        assert_eq!(signed_in.status(), 200, "{}", text(&signed_in));
        assert_eq!(json(&signed_in), json!({"user": "ada"}));
        let mut attributes = set_cookie(&signed_in);
        assert_eq!(attributes.remove(0), "session=ada");
        attributes.sort_unstable();
        assert_eq!(
            attributes,
            ["HttpOnly", "Max-Age=28800", "Path=/", "SameSite=Lax"]
        );

        // The browser sends it back: the handler reads it.
        let cookie = [("cookie", "theme=dark; session=ada")];
        let whoami = client.call_with("GET", "/api/session", &cookie, "").await;
        assert_eq!(whoami.status(), 200, "{}", text(&whoami));
        assert_eq!(json(&whoami), json!({"user": "ada"}));
        assert_eq!(header(&whoami, "cache-control"), Some("no-store"));
        let other = client
            .call_with("GET", "/api/session", &[("cookie", "session=grace")], "")
            .await;
        assert_eq!(
            json(&other),
            json!({"user": "grace"}),
            "the value is the cookie's"
        );

        let anonymous = client.get("/api/session").await;
        assert_eq!(
            (anonymous.status().as_u16(), text(&anonymous)),
            (401, "not signed in")
        );
        let refused = client
            .call_with("POST", "/api/session", &[FORM], "user=a%20b")
            .await;
        assert_eq!(
            (refused.status().as_u16(), text(&refused)),
            (400, "`user` must be 1-32 letters or digits")
        );
        assert!(
            all(&refused, "set-cookie").is_empty(),
            "no cookie on a refusal"
        );
        let missing = client
            .call_with("POST", "/api/session", &[FORM], "name=ada")
            .await;
        assert_eq!(
            (missing.status().as_u16(), text(&missing)),
            (400, "invalid form: missing field `user`")
        );

        // Signing out deletes it: empty, expired, same name and path.
        let signed_out = client
            .call_with("DELETE", "/api/session", &cookie, "")
            .await;
        assert_eq!(signed_out.status(), 204);
        let attributes = set_cookie(&signed_out);
        assert_eq!(attributes[..3], ["session=", "Path=/", "Max-Age=0"]);
        let expires = attributes[3].strip_prefix("Expires=").expect("an Expires");
        assert!(expires.ends_with(" GMT"), "{expires}");
        // What a browser sends after honouring the deletion: nothing, or
        // the empty value if it kept it.
        let after = client
            .call_with("GET", "/api/session", &[("cookie", "session=")], "")
            .await;
        assert_eq!(after.status(), 401);
    }
}

#[tokio::test]
async fn short_links_redirect_with_the_status_their_permanence_calls_for() {
    let (server, _routes) = start().await;
    for client in server.clients() {
        let cases = [
            ("/go/docs", 307, "https://docs.rs/wstd"),
            ("/go/home", 308, "/"),
        ];
        for (path, status, location) in cases {
            let answer = client.get(path).await;
            assert_eq!(answer.status(), status, "{path}: {}", text(&answer));
            assert_eq!(header(&answer, "location"), Some(location), "{path}");
            assert!(answer.body().is_empty(), "{path}");
        }
        let unknown = client.get("/go/nowhere").await;
        assert_eq!(
            (unknown.status().as_u16(), text(&unknown)),
            (404, "no link called `nowhere`")
        );
        assert_eq!(header(&unknown, "location"), None);
    }
}

const BOUNDARY: &str = "e2e-boundary-7MA4YWxkTrZu0gW";

/// A multipart body of `(name, file, data)` fields, and its content type.
fn multipart(fields: &[(&str, Option<&str>, &[u8])]) -> ([(&'static str, String); 1], Vec<u8>) {
    let mut body = Vec::new();
    for (name, file, data) in fields {
        let mut head = format!("--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{name}\"");
        if let Some(file) = file {
            head += &format!("; filename=\"{file}\"\r\nContent-Type: application/octet-stream");
        }
        body.extend_from_slice(format!("{head}\r\n\r\n").as_bytes());
        body.extend_from_slice(data);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
    (
        [(
            "content-type",
            format!("multipart/form-data; boundary={BOUNDARY}"),
        )],
        body,
    )
}

async fn post_multipart(client: &Http, fields: &[(&str, Option<&str>, &[u8])]) -> Answer {
    let ([(name, value)], body) = multipart(fields);
    client
        .call_with("POST", "/api/contact", &[(name, value.as_str())], body)
        .await
}

#[tokio::test]
async fn a_form_post_is_validated_and_answered_with_see_other() {
    let (server, _routes) = start().await;
    for client in server.clients() {
        let body = "name=Ada+Lovelace&email=ada%40example.com&message=Hello%21";
        let sent = client
            .call_with("POST", "/api/contact", &[FORM], body)
            .await;
        assert_eq!(sent.status(), 303, "{}", text(&sent));
        assert_eq!(
            header(&sent, "location"),
            Some("/contact/thanks?attachment_bytes=0")
        );

        let cases = [
            ("name=Ada&message=Hi", "`email` is required"),
            ("name=Ada&email=&message=Hi", "`email` is required"),
            ("name=+&email=a%40b&message=Hi", "`name` is required"),
            (
                "name=Ada&email=nowhere&message=Hi",
                "`email` is not an email address",
            ),
        ];
        for (body, message) in cases {
            let refused = client
                .call_with("POST", "/api/contact", &[FORM], body)
                .await;
            assert_eq!(
                (refused.status().as_u16(), text(&refused)),
                (400, message),
                "{body}"
            );
        }
        let json_body = [("content-type", "application/json")];
        let wrong_type = client
            .call_with("POST", "/api/contact", &json_body, "{}")
            .await;
        assert_eq!(wrong_type.status(), 415, "{}", text(&wrong_type));
        assert!(
            text(&wrong_type).contains("application/json"),
            "{}",
            text(&wrong_type)
        );

        // Multipart, with an attachment counted as it streams in.
        let attachment: Vec<u8> = (0..12_345u32).map(|n| (n % 251) as u8).collect();
        let fields = [
            ("name", None, &b"Ada"[..]),
            ("email", None, b"ada@example.com"),
            ("message", None, b"See attached"),
            ("attachment", Some("notes.bin"), &attachment),
        ];
        let sent = post_multipart(&client, &fields).await;
        assert_eq!(sent.status(), 303, "{}", text(&sent));
        assert_eq!(
            header(&sent, "location"),
            Some("/contact/thanks?attachment_bytes=12345")
        );

        let refused = post_multipart(&client, &fields[1..]).await;
        assert_eq!(
            (refused.status().as_u16(), text(&refused)),
            (400, "`name` is required")
        );

        let too_big = vec![b'x'; 100 * 1024];
        let over = [
            ("name", None, &b"Ada"[..]),
            ("attachment", Some("big.bin"), &too_big),
        ];
        let refused = post_multipart(&client, &over).await;
        assert_eq!(
            (refused.status().as_u16(), text(&refused)),
            (
                413,
                "the field `attachment` is over its limit of 65536 bytes"
            )
        );
    }
}

const APP: &str = "https://app.example.com";

fn cors_headers(answer: &Answer) -> Vec<&str> {
    let mut names: Vec<&str> = answer
        .headers()
        .keys()
        .map(|name| name.as_str())
        .filter(|name| name.starts_with("access-control-"))
        .collect();
    names.sort_unstable();
    names
}

/// A browser's preflight for a JSON `POST` from `origin`.
async fn preflight(client: &Http, origin: &str) -> Answer {
    let headers = [
        ("origin", origin),
        ("access-control-request-method", "POST"),
        ("access-control-request-headers", "content-type"),
    ];
    client
        .call_with("OPTIONS", "/api/public", &headers, "")
        .await
}

#[tokio::test]
async fn cors_admits_the_one_allowed_origin() {
    let (server, _routes) = start().await;
    for client in server.clients() {
        let allowed = preflight(&client, APP).await;
        assert_eq!(allowed.status(), 204, "{}", text(&allowed));
        assert_eq!(header(&allowed, "access-control-allow-origin"), Some(APP));
        assert_eq!(
            header(&allowed, "access-control-allow-methods"),
            Some("GET, POST")
        );
        assert_eq!(
            header(&allowed, "access-control-allow-headers"),
            Some("content-type")
        );
        assert_eq!(header(&allowed, "access-control-max-age"), Some("600"));
        assert!(header(&allowed, "vary").is_some_and(|vary| vary.contains("origin")));
        assert!(allowed.body().is_empty());

        let stranger = preflight(&client, "https://evil.example").await;
        assert_eq!(stranger.status(), 204);
        assert_eq!(cors_headers(&stranger), Vec::<&str>::new());

        let get = client
            .call_with("GET", "/api/public", &[("origin", APP)], "")
            .await;
        assert_eq!(get.status(), 200);
        assert_eq!(json(&get), json!({"items": ["alpha", "beta"]}));
        assert_eq!(header(&get, "access-control-allow-origin"), Some(APP));
        assert_eq!(all(&get, "vary"), ["origin"]);
        assert_eq!(header(&get, "access-control-allow-credentials"), None);

        let post = client
            .call_with(
                "POST",
                "/api/public",
                &[("origin", APP), ("content-type", "application/json")],
                r#"{"n":1}"#,
            )
            .await;
        assert_eq!(json(&post), json!({"received": {"n": 1}}));
        assert_eq!(header(&post, "access-control-allow-origin"), Some(APP));

        let foreign = client
            .call_with(
                "GET",
                "/api/public",
                &[("origin", "https://evil.example")],
                "",
            )
            .await;
        assert_eq!(foreign.status(), 200, "answered: the browser withholds it");
        assert_eq!(cors_headers(&foreign), Vec::<&str>::new());
        assert_eq!(all(&foreign, "vary"), ["origin"]);

        let same_origin = client.get("/api/public").await;
        assert_eq!(cors_headers(&same_origin), Vec::<&str>::new());
    }
}

/// `sha256=<hex>` of `body` under `secret`, as the sender computes it.
fn signature(secret: &str, body: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(body.as_bytes());
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// `POST /api/webhook` with `body`, signed with `signature` if any.
async fn deliver(client: &Http, signature: Option<&str>, body: &str) -> Answer {
    let headers: Vec<(&str, &str)> = signature
        .map(|s| ("x-hub-signature-256", s))
        .into_iter()
        .collect();
    client
        .call_with("POST", "/api/webhook", &headers, body.to_owned())
        .await
}

#[tokio::test]
async fn a_webhook_is_accepted_only_with_the_signature_of_its_body() {
    let (server, _routes) = start().await;
    let body = r#"{"action":"opened","number":42}"#;
    for client in server.clients() {
        let signed = signature(WEBHOOK_SECRET, body);
        let accepted = deliver(&client, Some(&signed), body).await;
        assert_eq!(accepted.status(), 200, "{}", text(&accepted));
        assert_eq!(json(&accepted), json!({"ok": true, "bytes": body.len()}));

        let other_secret = signature("not-the-secret", body);
        let tampered = r#"{"action":"opened","number":43}"#;
        let cases = [
            (
                Some(other_secret.as_str()),
                body,
                "the signature does not match",
            ),
            (
                Some(signed.as_str()),
                tampered,
                "the signature does not match",
            ),
            (None, body, "missing X-Hub-Signature-256"),
            (
                Some("sha1=0123"),
                body,
                "X-Hub-Signature-256 is not sha256=<hex>",
            ),
            (
                Some("sha256=not-hex"),
                body,
                "X-Hub-Signature-256 is not sha256=<hex>",
            ),
        ];
        for (signature, body, message) in cases {
            let refused = deliver(&client, signature, body).await;
            assert_eq!(
                (refused.status().as_u16(), text(&refused)),
                (401, message),
                "{signature:?}"
            );
            assert!(!text(&refused).contains(WEBHOOK_SECRET));
        }
    }
}

#[tokio::test]
async fn the_cached_example_says_how_long_shared_caches_may_keep_it() {
    let (server, _routes) = start().await;
    let client = server.http1();
    let answer = client.get("/api/quote").await;
    assert_eq!(answer.status(), 200, "{}", text(&answer));
    assert_eq!(
        header(&answer, "cache-control"),
        Some("public, s-maxage=10, stale-while-revalidate=30")
    );
    let quote = json(&answer);
    assert!(
        quote["quote"].as_str().is_some_and(|q| !q.is_empty()),
        "{quote}"
    );
    assert!(
        quote["served_at"]
            .as_u64()
            .is_some_and(|t| t > 1_700_000_000),
        "{quote}"
    );
    assert_eq!(header(&answer, "x-wedge-cache"), Some("MISS"));
    // Wedge is such a shared cache: the next request is the same answer,
    // from memory.
    let again = client.get("/api/quote").await;
    assert_eq!(header(&again, "x-wedge-cache"), Some("HIT"));
    assert_eq!(json(&again), quote);
}
