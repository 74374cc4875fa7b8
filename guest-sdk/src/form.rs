//! HTML forms: `application/x-www-form-urlencoded` and `multipart/form-data`
//! request bodies, read whole into a `T` or, for uploads, field by field.

use bytes::{Bytes, BytesMut};
use futures_lite::StreamExt as _;
use http::StatusCode;
use http::header::CONTENT_TYPE;
use http_body_util::BodyExt as _;
use serde::de::DeserializeOwned;
use wstd::http::Body;

use crate::Request;
use crate::error::Error;

/// The default cap on one multipart field: 1 MiB, a generous text field or
/// a small file. Raise it with [`FormLimits::max_field`] for uploads.
pub const DEFAULT_MAX_FIELD: u64 = 1024 * 1024;

/// The default cap on a whole form body: 10 MiB, the same as a route's
/// default `max_body` in its sidecar, which the host enforces first.
pub const DEFAULT_MAX_BODY: u64 = 10 * 1024 * 1024;

/// Caps on the size of a form: one multipart field, and the whole body. A
/// form over either is refused with `413 Payload Too Large` and a message
/// naming the cap (and the field). Defaults: [`DEFAULT_MAX_FIELD`] and
/// [`DEFAULT_MAX_BODY`].
///
/// The body cap counts what the multipart parser has read, which runs ahead
/// of the field being handed out: leave room between the two (a body cap a
/// few times the field cap), or a field just over its cap may be refused
/// for the body's instead, with a message that names no field.
///
/// ```
/// use wedge_sdk::{Error, FormLimits, Request, RequestExt as _};
///
/// /// Takes uploads of up to 5 MiB.
/// async fn upload(mut request: Request) -> Result<String, Error> {
///     let limits = FormLimits::new().max_field(5 * 1024 * 1024).max_body(6 * 1024 * 1024);
///     let mut form = request.multipart_with(limits)?;
///     let mut total = 0;
///     while let Some(field) = form.next_field().await? {
///         total += field.bytes().await?.len();
///     }
///     Ok(format!("{total} bytes"))
/// }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FormLimits {
    max_field: u64,
    max_body: u64,
}

impl Default for FormLimits {
    fn default() -> FormLimits {
        FormLimits::new()
    }
}

impl FormLimits {
    /// The defaults: [`DEFAULT_MAX_FIELD`] and [`DEFAULT_MAX_BODY`]. Like
    /// the setters, usable in a `const`.
    ///
    /// ```
    /// use wedge_sdk::FormLimits;
    ///
    /// const UPLOADS: FormLimits = FormLimits::new().max_field(8 << 20).max_body(9 << 20);
    /// assert_eq!(FormLimits::new(), FormLimits::default());
    /// ```
    pub const fn new() -> FormLimits {
        FormLimits {
            max_field: DEFAULT_MAX_FIELD,
            max_body: DEFAULT_MAX_BODY,
        }
    }

    /// Caps one multipart field (a text value or a file) at `bytes`.
    ///
    /// ```
    /// let limits = wedge_sdk::FormLimits::new().max_field(64 * 1024);
    /// ```
    pub const fn max_field(mut self, bytes: u64) -> FormLimits {
        self.max_field = bytes;
        self
    }

    /// Caps the whole body at `bytes`.
    ///
    /// ```
    /// let limits = wedge_sdk::FormLimits::new().max_body(100 * 1024);
    /// ```
    pub const fn max_body(mut self, bytes: u64) -> FormLimits {
        self.max_body = bytes;
        self
    }
}

/// A form body's encoding, from its `Content-Type`.
enum Encoding {
    UrlEncoded,
    Multipart { boundary: String },
}

fn encoding(request: &Request) -> Result<Encoding, Error> {
    const EXPECTED: &str = "application/x-www-form-urlencoded or multipart/form-data";
    let Some(content_type) = request.headers().get(CONTENT_TYPE) else {
        return Err(Error::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("a form is {EXPECTED}: the request has no Content-Type"),
        ));
    };
    let content_type = content_type.to_str().unwrap_or_default();
    let essence = content_type.split(';').next().unwrap_or_default().trim();
    if essence.eq_ignore_ascii_case("application/x-www-form-urlencoded") {
        Ok(Encoding::UrlEncoded)
    } else if essence.eq_ignore_ascii_case("multipart/form-data") {
        let boundary = multer::parse_boundary(content_type).map_err(|_| {
            Error::bad_request("a multipart/form-data Content-Type needs a `boundary`")
        })?;
        Ok(Encoding::Multipart { boundary })
    } else {
        Err(Error::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("a form is {EXPECTED}, not {content_type:?}"),
        ))
    }
}

fn too_large(limit: u64) -> Error {
    Error::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("the form is over its limit of {limit} bytes"),
    )
}

/// Reads `request`'s form into `T`: see [`RequestExt::form`](crate::RequestExt::form).
pub(crate) async fn read<T: DeserializeOwned>(
    request: &mut Request,
    limits: FormLimits,
) -> Result<T, Error> {
    let encoded = match encoding(request)? {
        Encoding::UrlEncoded => read_capped(take_body(request), limits.max_body).await?,
        Encoding::Multipart { boundary } => {
            let mut form = Multipart::new(take_body(request), boundary, limits);
            let mut pairs = form_urlencoded::Serializer::new(String::new());
            while let Some(field) = form.next_field().await? {
                // Files are for `multipart()`; a `T` holds the text fields.
                if field.file_name().is_some() {
                    continue;
                }
                let name = field.name().unwrap_or_default().to_owned();
                pairs.append_pair(&name, &field.text().await?);
            }
            Bytes::from(pairs.finish())
        }
    };
    serde_urlencoded::from_bytes(&encoded)
        .map_err(|error| Error::bad_request(format!("invalid form: {error}")))
}

/// Opens `request`'s multipart body: see [`RequestExt::multipart`](crate::RequestExt::multipart).
pub(crate) fn multipart(request: &mut Request, limits: FormLimits) -> Result<Multipart, Error> {
    match encoding(request)? {
        Encoding::Multipart { boundary } => {
            Ok(Multipart::new(take_body(request), boundary, limits))
        }
        Encoding::UrlEncoded => Err(Error::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "expected a multipart/form-data body, not application/x-www-form-urlencoded",
        )),
    }
}

fn take_body(request: &mut Request) -> Body {
    std::mem::replace(request.body_mut(), Body::empty())
}

/// `body` whole, or a `413` once it is over `limit` bytes.
async fn read_capped(body: Body, limit: u64) -> Result<Bytes, Error> {
    if body.content_length().is_some_and(|length| length > limit) {
        return Err(too_large(limit));
    }
    let mut chunks = body.into_boxed_body().into_data_stream();
    let mut bytes = BytesMut::new();
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk.map_err(|error| {
            Error::bad_request(format!("cannot read the request body: {error}"))
        })?;
        if (bytes.len() + chunk.len()) as u64 > limit {
            return Err(too_large(limit));
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes.freeze())
}

/// A `multipart/form-data` body, read one field at a time as it arrives,
/// from [`RequestExt::multipart`](crate::RequestExt::multipart).
///
/// A field's data streams too ([`Field::chunk`]), so an upload is never
/// held whole unless [`Field::bytes`] asks for it. A field over its cap, or
/// a body over its cap, is a `413`; a body that is not well-formed
/// multipart is a `400` saying what is wrong.
///
/// ```
/// use wedge_sdk::{Error, Request, RequestExt as _};
///
/// /// Lists the fields of an upload: name, file name, type and size.
/// async fn upload(mut request: Request) -> Result<String, Error> {
///     let mut form = request.multipart()?;
///     let mut report = String::new();
///     while let Some(mut field) = form.next_field().await? {
///         let name = field.name().unwrap_or("?").to_owned();
///         let file = field.file_name().map(str::to_owned);
///         let kind = field.content_type().unwrap_or("text/plain").to_owned();
///         let mut size = 0;
///         while let Some(chunk) = field.chunk().await? {
///             size += chunk.len();
///         }
///         report += &format!("{name} {file:?} {kind} {size}\n");
///     }
///     Ok(report)
/// }
/// ```
pub struct Multipart {
    inner: multer::Multipart<'static>,
}

impl Multipart {
    fn new(body: Body, boundary: String, limits: FormLimits) -> Multipart {
        let size_limit = multer::SizeLimit::new()
            .whole_stream(limits.max_body)
            .per_field(limits.max_field);
        let constraints = multer::Constraints::new().size_limit(size_limit);
        let chunks = body.into_boxed_body().into_data_stream();
        Multipart {
            inner: multer::Multipart::with_constraints(chunks, boundary, constraints),
        }
    }

    /// The next field, or `None` after the last. What is left unread of the
    /// previous field is skipped.
    ///
    /// ```
    /// use wedge_sdk::{Error, Request, RequestExt as _};
    ///
    /// async fn names(mut request: Request) -> Result<String, Error> {
    ///     let mut form = request.multipart()?;
    ///     let mut names = Vec::new();
    ///     while let Some(field) = form.next_field().await? {
    ///         names.push(field.name().unwrap_or_default().to_owned());
    ///     }
    ///     Ok(names.join(","))
    /// }
    /// ```
    pub async fn next_field(&mut self) -> Result<Option<Field>, Error> {
        let field = self.inner.next_field().await.map_err(multipart_error)?;
        Ok(field.map(|inner| Field { inner }))
    }
}

/// One field of a [`Multipart`] form: a text value, or a file.
pub struct Field {
    inner: multer::Field<'static>,
}

impl Field {
    /// The field's name (`<input name="…">`).
    ///
    /// ```
    /// # async fn f(field: wedge_sdk::Field) {
    /// let is_avatar = field.name() == Some("avatar");
    /// # }
    /// ```
    pub fn name(&self) -> Option<&str> {
        self.inner.name()
    }

    /// The file's name, for a file field (`<input type="file">`), as the
    /// client gives it: never trust it as a path.
    ///
    /// ```
    /// # async fn f(field: wedge_sdk::Field) {
    /// let is_file = field.file_name().is_some();
    /// # }
    /// ```
    pub fn file_name(&self) -> Option<&str> {
        self.inner.file_name()
    }

    /// The field's `Content-Type`, if the client sent one (browsers do for
    /// files), such as `image/png`.
    ///
    /// ```
    /// # async fn f(field: wedge_sdk::Field) {
    /// let is_png = field.content_type() == Some("image/png");
    /// # }
    /// ```
    pub fn content_type(&self) -> Option<&str> {
        self.inner.content_type().map(AsRef::as_ref)
    }

    /// The next chunk of the field's data, or `None` at its end.
    ///
    /// ```
    /// use wedge_sdk::{Error, Field};
    ///
    /// async fn size(mut field: Field) -> Result<usize, Error> {
    ///     let mut size = 0;
    ///     while let Some(chunk) = field.chunk().await? {
    ///         size += chunk.len();
    ///     }
    ///     Ok(size)
    /// }
    /// ```
    pub async fn chunk(&mut self) -> Result<Option<Bytes>, Error> {
        self.inner.chunk().await.map_err(multipart_error)
    }

    /// The field's data, whole.
    ///
    /// ```
    /// use wedge_sdk::{Error, Field};
    ///
    /// async fn checksum(field: Field) -> Result<u32, Error> {
    ///     Ok(field.bytes().await?.iter().map(|&b| u32::from(b)).sum())
    /// }
    /// ```
    pub async fn bytes(self) -> Result<Bytes, Error> {
        self.inner.bytes().await.map_err(multipart_error)
    }

    /// The field's data, whole, as text (in the field's charset, UTF-8 if
    /// it names none; what does not decode becomes `�`).
    ///
    /// ```
    /// use wedge_sdk::{Error, Field};
    ///
    /// async fn shout(field: Field) -> Result<String, Error> {
    ///     Ok(field.text().await?.to_uppercase())
    /// }
    /// ```
    pub async fn text(self) -> Result<String, Error> {
        self.inner.text().await.map_err(multipart_error)
    }
}

/// A `413` for a cap, a `400` saying what is malformed otherwise.
fn multipart_error(error: multer::Error) -> Error {
    match error {
        multer::Error::FieldSizeExceeded { limit, field_name } => Error::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "the field `{}` is over its limit of {limit} bytes",
                field_name.as_deref().unwrap_or("(unnamed)")
            ),
        ),
        multer::Error::StreamSizeExceeded { limit } => too_large(limit),
        multer::Error::StreamReadFailed(error) => {
            Error::bad_request(format!("cannot read the request body: {error}"))
        }
        other => Error::bad_request(format!("malformed multipart/form-data body: {other}")),
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;
    use crate::RequestExt as _;

    #[derive(Debug, Deserialize, PartialEq)]
    struct Contact {
        name: String,
        email: String,
        #[serde(default)]
        age: Option<u8>,
    }

    const BOUNDARY: &str = "X-BOUNDARY";

    fn request(content_type: Option<&str>, body: impl Into<Body>) -> Request {
        let mut request = http::Request::post("/form");
        if let Some(content_type) = content_type {
            request = request.header(CONTENT_TYPE, content_type);
        }
        request.body(body.into()).expect("a request")
    }

    /// A multipart body of `(name, file name, data)` fields.
    fn multipart_body(fields: &[(&str, Option<&str>, &str)]) -> String {
        let mut body = String::new();
        for (name, file_name, data) in fields {
            body += &format!("--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{name}\"");
            if let Some(file_name) = file_name {
                body += &format!("; filename=\"{file_name}\"\r\nContent-Type: text/plain");
            }
            body += &format!("\r\n\r\n{data}\r\n");
        }
        body + &format!("--{BOUNDARY}--\r\n")
    }

    fn multipart_request(fields: &[(&str, Option<&str>, &str)]) -> Request {
        let content_type = format!("multipart/form-data; boundary={BOUNDARY}");
        request(Some(&content_type), multipart_body(fields))
    }

    fn form<T: DeserializeOwned>(mut request: Request, limits: FormLimits) -> Result<T, Error> {
        futures_lite::future::block_on(request.form_with(limits))
    }

    fn failure(result: Result<Contact, Error>) -> (u16, String) {
        let error = result.expect_err("a refusal");
        (error.status().as_u16(), error.to_string())
    }

    #[test]
    fn a_urlencoded_form_is_deserialized() {
        let request = request(
            Some("application/x-www-form-urlencoded"),
            "name=Ada+Lovelace&email=ada%40example.com&age=36",
        );
        let contact: Contact = form(request, FormLimits::new()).expect("a form");
        assert_eq!(
            contact,
            Contact {
                name: "Ada Lovelace".into(),
                email: "ada@example.com".into(),
                age: Some(36)
            }
        );
    }

    #[test]
    fn multipart_text_fields_fill_the_form_and_files_are_left_out() {
        let request = multipart_request(&[
            ("name", None, "Ada"),
            ("cv", Some("cv.txt"), "Analytical Engine"),
            ("email", None, "ada@example.com"),
        ]);
        let contact: Contact = form(request, FormLimits::new()).expect("a form");
        assert_eq!(
            contact,
            Contact {
                name: "Ada".into(),
                email: "ada@example.com".into(),
                age: None
            }
        );
    }

    #[test]
    fn a_missing_or_wrong_field_is_a_400_naming_it() {
        let cases = [
            request(Some("application/x-www-form-urlencoded"), "name=Ada"),
            multipart_request(&[("name", None, "Ada")]),
        ];
        for request in cases {
            let (status, message) = failure(form(request, FormLimits::new()));
            assert_eq!(
                (status, message.as_str()),
                (400, "invalid form: missing field `email`")
            );
        }
        let request = request(
            Some("application/x-www-form-urlencoded"),
            "name=A&email=b&age=old",
        );
        let (status, message) = failure(form(request, FormLimits::new()));
        assert_eq!(status, 400);
        assert!(
            message.starts_with("invalid form: invalid digit"),
            "{message}"
        );
    }

    #[test]
    fn another_content_type_is_a_415_naming_it() {
        let (status, message) = failure(form(
            request(Some("application/json"), "{}"),
            FormLimits::new(),
        ));
        assert_eq!(status, 415);
        assert!(message.ends_with("not \"application/json\""), "{message}");
        let (status, message) = failure(form(request(None, "name=a"), FormLimits::new()));
        assert_eq!(status, 415);
        assert!(
            message.ends_with("the request has no Content-Type"),
            "{message}"
        );
    }

    #[test]
    fn a_multipart_type_without_boundary_or_a_broken_body_is_a_400() {
        let (status, message) = failure(form(
            request(Some("multipart/form-data"), ""),
            FormLimits::new(),
        ));
        assert_eq!(
            (status, message.as_str()),
            (400, "a multipart/form-data Content-Type needs a `boundary`")
        );

        let content_type = format!("multipart/form-data; boundary={BOUNDARY}");
        let cut =
            format!("--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"name\"\r\n\r\nAd");
        let (status, message) = failure(form(request(Some(&content_type), cut), FormLimits::new()));
        assert_eq!(status, 400);
        assert!(
            message.starts_with("malformed multipart/form-data body"),
            "{message}"
        );
    }

    #[test]
    fn a_form_over_a_cap_is_a_413_naming_the_cap() {
        let urlencoded = request(
            Some("application/x-www-form-urlencoded"),
            "name=Ada&email=a@b.c",
        );
        let (status, message) = failure(form(urlencoded, FormLimits::new().max_body(10)));
        assert_eq!(
            (status, message.as_str()),
            (413, "the form is over its limit of 10 bytes")
        );

        let big = "x".repeat(100);
        let fields = [("name", None, big.as_str()), ("email", None, "a@b.c")];
        let (status, message) = failure(form(
            multipart_request(&fields),
            FormLimits::new().max_field(50),
        ));
        assert_eq!(
            (status, message.as_str()),
            (413, "the field `name` is over its limit of 50 bytes")
        );

        let (status, message) = failure(form(
            multipart_request(&fields),
            FormLimits::new().max_body(120),
        ));
        assert_eq!(
            (status, message.as_str()),
            (413, "the form is over its limit of 120 bytes")
        );
    }

    #[test]
    fn multipart_fields_stream_with_their_names_files_and_types() {
        let mut request = multipart_request(&[
            ("title", None, "Notes"),
            ("upload", Some("notes.txt"), "twelve bytes"),
        ]);
        let fields = futures_lite::future::block_on(async {
            let mut form = request.multipart()?;
            let mut fields = Vec::new();
            while let Some(mut field) = form.next_field().await? {
                let name = field.name().map(str::to_owned);
                let file = field.file_name().map(str::to_owned);
                let kind = field.content_type().map(str::to_owned);
                let mut size = 0;
                while let Some(chunk) = field.chunk().await? {
                    size += chunk.len();
                }
                fields.push((name, file, kind, size));
            }
            Ok::<_, Error>(fields)
        })
        .expect("a multipart body");
        assert_eq!(
            fields,
            [
                (Some("title".into()), None, None, 5),
                (
                    Some("upload".into()),
                    Some("notes.txt".into()),
                    Some("text/plain".into()),
                    12
                ),
            ]
        );
    }

    #[test]
    fn multipart_refuses_a_urlencoded_body() {
        let mut request = request(Some("application/x-www-form-urlencoded"), "a=1");
        let error = request.multipart().err().expect("a refusal");
        assert_eq!(error.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    }
}
