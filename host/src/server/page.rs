//! Error pages for dev mode (`--dev`, `wedge dev`): the error in full, as
//! HTML for a browser and as text for everything else.

use bytes::Bytes;

/// The content type and body of a dev-mode error page: `title`, then
/// `detail` (a trap and its backtrace, a load or build error) as is.
pub(super) fn dev_page(title: &str, detail: &str, html: bool) -> (&'static str, Bytes) {
    if !html {
        return (
            "text/plain; charset=utf-8",
            Bytes::from(format!("{title}\n\n{detail}\n")),
        );
    }
    let (title, detail) = (
        html_escape::encode_text(title),
        html_escape::encode_text(detail),
    );
    let page = format!(
        r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{title}</title>
<style>
body {{ font: 15px/1.5 system-ui, sans-serif; margin: 2rem; color: #1f1f1f; }}
h1 {{ font-size: 1.25rem; color: #a11; }}
pre {{ background: #f5f5f5; padding: 1rem; overflow-x: auto; white-space: pre-wrap; }}
footer {{ color: #666; font-size: 0.85rem; }}
</style>
</head>
<body>
<h1>{title}</h1>
<pre>{detail}</pre>
<footer>Shown in dev mode only: without it, the client gets the short message above.</footer>
</body>
</html>
"#
    );
    ("text/html; charset=utf-8", Bytes::from(page))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_pages_escape_the_error() {
        let (content_type, body) =
            dev_page("route failed to build", "expected `;`, found `<`", true);
        assert_eq!(content_type, "text/html; charset=utf-8");
        let body = std::str::from_utf8(&body).unwrap();
        assert!(
            body.contains("<pre>expected `;`, found `&lt;`</pre>"),
            "{body}"
        );
    }

    #[test]
    fn text_pages_carry_the_error_as_is() {
        let (content_type, body) = dev_page("internal server error", "trap: <unreachable>", false);
        assert_eq!(content_type, "text/plain; charset=utf-8");
        assert_eq!(body, "internal server error\n\ntrap: <unreachable>\n");
    }
}
