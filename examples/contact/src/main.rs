//! `POST /api/contact` (route `api/contact`): a contact form, as a Next.js
//! route handler reading `await request.formData()`.
//!
//! The form comes as `application/x-www-form-urlencoded` (an HTML form, or
//! `curl -d`) or `multipart/form-data` (a form with a file, or `curl -F`)
//! with `name`, `email` and `message`, and in a multipart form an optional
//! file `attachment` of up to 64 KiB, counted as it streams in. A valid form
//! is answered `303 See Other` to `/contact/thanks` (post, redirect, get:
//! reloading that page does not post again), with the attachment's size in
//! the query. A missing or empty field is a `400` naming it, a file over the
//! cap a `413`, another body type a `415`.
//!
//! ```sh
//! curl -i -d name=Ada -d email=ada@example.com -d message=Hi localhost:3000/api/contact
//! curl -i -F name=Ada -F email=ada@example.com -F message=Hi -F attachment=@Cargo.toml \
//!     localhost:3000/api/contact       # 303, Location: /contact/thanks?attachment_bytes=…
//! curl -i -d name=Ada localhost:3000/api/contact   # 400 `email` is required
//! ```

use serde::Deserialize;
use wedge_sdk::http::header::CONTENT_TYPE;
use wedge_sdk::{Error, FormLimits, Redirect, Request, RequestExt as _, Router};

/// Any field, the attachment included, may be 64 KiB; the whole form 256
/// KiB. (The body cap counts what the parser has read ahead, so it leaves
/// room: a file just over 64 KiB is refused for being one, with its name.)
const LIMITS: FormLimits = FormLimits::new().max_field(64 * 1024).max_body(256 * 1024);

#[derive(Default, Deserialize)]
#[serde(default)]
struct Contact {
    name: String,
    email: String,
    message: String,
}

impl Contact {
    /// A `400` naming the first field that is missing or wrong.
    fn validate(&self) -> Result<(), Error> {
        let fields = [("name", &self.name), ("email", &self.email), ("message", &self.message)];
        for (field, value) in fields {
            if value.trim().is_empty() {
                return Err(Error::bad_request(format!("`{field}` is required")));
            }
        }
        if !self.email.contains('@') {
            return Err(Error::bad_request("`email` is not an email address"));
        }
        Ok(())
    }
}

async fn submit(mut request: Request) -> Result<Redirect, Error> {
    let multipart = request
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("multipart/form-data"));
    let (contact, attachment_bytes) = if multipart {
        read_multipart(&mut request).await?
    } else {
        (request.form_with(LIMITS).await?, 0)
    };
    contact.validate()?;
    // A real handler would send the message on here (with `fetch`).
    Ok(Redirect::see_other(format!("/contact/thanks?attachment_bytes={attachment_bytes}")))
}

/// The text fields, and the attachment's size, streamed: never held whole.
async fn read_multipart(request: &mut Request) -> Result<(Contact, usize), Error> {
    let mut form = request.multipart_with(LIMITS)?;
    let (mut contact, mut attachment_bytes) = (Contact::default(), 0);
    while let Some(mut field) = form.next_field().await? {
        match field.name() {
            Some("attachment") => {
                while let Some(chunk) = field.chunk().await? {
                    attachment_bytes += chunk.len();
                }
            }
            Some("name") => contact.name = field.text().await?,
            Some("email") => contact.email = field.text().await?,
            Some("message") => contact.message = field.text().await?,
            _ => {} // skipped
        }
    }
    Ok((contact, attachment_bytes))
}

#[wedge_sdk::handler]
fn routes() -> Router {
    Router::new().post(submit)
}
