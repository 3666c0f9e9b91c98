//! The error catalogue: every error the API answers is one of these kinds, each with the
//! Unipile `type` slug, HTTP status and title. The HTTP layer renders them as
//! `{title, detail, instance, type, status}`.

use serde::Serialize;

macro_rules! catalogue {
    ($( $variant:ident => ($status:literal, $slug:literal, $title:literal), )*) => {
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum ErrorKind { $( $variant, )* }

        impl ErrorKind {
            pub const ALL: &'static [ErrorKind] = &[ $( ErrorKind::$variant, )* ];

            /// The HTTP status this kind is answered with.
            pub fn status(self) -> u16 {
                match self { $( ErrorKind::$variant => $status, )* }
            }

            /// The `type` field: `errors/<slug>`.
            pub fn type_slug(self) -> &'static str {
                match self { $( ErrorKind::$variant => concat!("errors/", $slug), )* }
            }

            pub fn title(self) -> &'static str {
                match self { $( ErrorKind::$variant => $title, )* }
            }
        }
    };
}

catalogue! {
    InvalidParameters => (400, "invalid_parameters", "Invalid parameters"),
    MissingParameters => (400, "missing_parameters", "Missing parameters"),
    MalformedRequest => (400, "malformed_request", "Malformed request"),
    InvalidRequest => (400, "invalid_request", "Invalid request"),
    ContentTooLarge => (400, "content_too_large", "Content too large"),
    MissingCredentials => (401, "missing_credentials", "Unauthorized"),
    InvalidCredentials => (401, "invalid_credentials", "Unauthorized"),
    DisconnectedAccount => (401, "disconnected_account", "Disconnected account"),
    InvalidImapConfiguration => (401, "invalid_imap_configuration", "Invalid IMAP configuration"),
    InvalidSmtpConfiguration => (401, "invalid_smtp_configuration", "Invalid SMTP configuration"),
    ExpiredLink => (401, "expired_link", "Expired link"),
    InsufficientPermissions => (403, "insufficient_permissions", "Forbidden"),
    ResourceNotFound => (404, "resource_not_found", "Not found"),
    TooManyRequests => (429, "too_many_requests", "Too many requests"),
    Conflict => (409, "idempotency_key_reused", "Resource already used"),
    UnprocessableEntity => (422, "unprocessable_entity", "Unprocessable entity"),
    ParentMailNotFound => (422, "parent_mail_not_found", "Parent mail not found"),
    InvalidHeaders => (422, "invalid_headers", "Invalid headers"),
    RecipientRejected => (422, "recipient_rejected", "Recipient rejected"),
    SendAsDenied => (422, "send_as_denied", "Send-as denied"),
    SenderRejected => (422, "sender_rejected", "Sender rejected"),
    ProviderContentTooLarge => (422, "content_too_large", "Content too large"),
    CantSendMessage => (422, "cant_send_message", "Cannot send message"),
    ProviderUnreachable => (422, "provider_unreachable", "Provider unreachable"),
    InvalidAccount => (422, "invalid_account", "Invalid account"),
    UnexpectedError => (500, "unexpected_error", "Internal server error"),
    ProviderError => (500, "provider_error", "Provider error"),
    ServiceUnavailable => (503, "service_unavailable", "Service unavailable"),
    RequestTimeout => (504, "request_timeout", "Request timeout"),
}

/// The IMAP/SMTP settings echoed on 401 account errors (`connectionParams`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConnectionParams {
    pub imap_host: String,
    pub imap_encryption: String,
    pub imap_port: u16,
    pub imap_user: String,
    pub smtp_host: String,
    pub smtp_port: u16,
    pub smtp_user: String,
}

/// An error as the API answers it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{} ({}): {detail}", kind.type_slug(), kind.status())]
pub struct ApiError {
    pub kind: ErrorKind,
    pub detail: String,
    /// Boxed: it is rare, and keeps `Result<_, ApiError>` small.
    pub connection_params: Option<Box<ConnectionParams>>,
}

impl ApiError {
    pub fn new(kind: ErrorKind, detail: impl Into<String>) -> Self {
        Self {
            kind,
            detail: detail.into(),
            connection_params: None,
        }
    }

    pub fn with_connection_params(mut self, params: ConnectionParams) -> Self {
        self.connection_params = Some(Box::new(params));
        self
    }

    pub fn invalid(detail: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidParameters, detail)
    }

    pub fn missing(detail: impl Into<String>) -> Self {
        Self::new(ErrorKind::MissingParameters, detail)
    }

    pub fn not_found(what: &str) -> Self {
        Self::new(ErrorKind::ResourceNotFound, format!("{what} not found"))
    }

    pub fn unexpected(detail: impl Into<String>) -> Self {
        Self::new(ErrorKind::UnexpectedError, detail)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_are_unique_and_statuses_are_http_errors() {
        let mut seen = std::collections::HashSet::new();
        for k in ErrorKind::ALL {
            // One slug, two statuses on purpose: our own size limits answer 400, a provider's
            // refusal of the message size answers 422 like every other provider refusal.
            if *k == ErrorKind::ProviderContentTooLarge {
                continue;
            }
            assert!(
                seen.insert(k.type_slug()),
                "duplicate slug {}",
                k.type_slug()
            );
            assert!(k.type_slug().starts_with("errors/"));
            assert!((400..600).contains(&k.status()));
        }
        assert_eq!(
            ErrorKind::InvalidCredentials.type_slug(),
            "errors/invalid_credentials"
        );
        assert_eq!(ErrorKind::ResourceNotFound.status(), 404);
    }
}
