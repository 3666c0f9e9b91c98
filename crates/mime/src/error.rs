//! The one error type of this crate. Its `Display` is a sentence fit for an API `detail`.

/// Why an email was refused or could not be built.
///
/// The API maps [`MimeError::ForbiddenHeader`] to 422 `errors/invalid_headers` and every other
/// kind to 400 `errors/invalid_parameters`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MimeError {
    /// Not a valid (ASCII-encodable) email address.
    #[error("{field} is not a valid email address: {detail}")]
    InvalidAddress { field: String, detail: String },
    /// A header value that would break the header block: CR, LF, NUL or another control
    /// character, a malformed header name, a malformed id.
    #[error("{field} is not a valid header value: {detail}")]
    InvalidHeader { field: String, detail: String },
    /// A well-formed custom header name that clients may not set.
    #[error(
        "{field}: the header `{name}` may not be set; only X-* headers, Reply-To, \
         List-Unsubscribe and List-Unsubscribe-Post are allowed"
    )]
    ForbiddenHeader { field: String, name: String },
    /// The message already has a header that was to be added (a second would be malformed).
    #[error("the message already has a {name} header")]
    HeaderPresent { name: String },
    /// Bytes that mail-parser cannot read as a message.
    #[error("the message is not parseable MIME")]
    Unparseable,
    /// Lettre refused the message (should not happen after the guards).
    #[error("the message could not be built: {detail}")]
    Build { detail: String },
}

impl MimeError {
    /// The request field at fault (`to[2].identifier`, `custom_headers[0].name`, …), if any.
    pub fn field(&self) -> Option<&str> {
        match self {
            MimeError::InvalidAddress { field, .. }
            | MimeError::InvalidHeader { field, .. }
            | MimeError::ForbiddenHeader { field, .. } => Some(field),
            MimeError::HeaderPresent { .. } | MimeError::Unparseable | MimeError::Build { .. } => {
                None
            }
        }
    }

    pub(crate) fn address(field: impl Into<String>, detail: impl Into<String>) -> Self {
        MimeError::InvalidAddress {
            field: field.into(),
            detail: detail.into(),
        }
    }

    pub(crate) fn header(field: impl Into<String>, detail: impl Into<String>) -> Self {
        MimeError::InvalidHeader {
            field: field.into(),
            detail: detail.into(),
        }
    }

    pub(crate) fn build(detail: impl Into<String>) -> Self {
        MimeError::Build {
            detail: detail.into(),
        }
    }
}

/// A user value for an error message: escaped (no raw control characters) and shortened.
pub(crate) fn shown(value: &str) -> String {
    let mut out = String::new();
    for (i, c) in value.chars().enumerate() {
        if i == 60 {
            out.push('…');
            break;
        }
        out.extend(c.escape_debug());
    }
    format!("`{out}`")
}
