//! The OpenAPI document's frame; paths and schemas come from the handlers' annotations.

use utoipa::openapi::security::{ApiKey, ApiKeyValue, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::error::ErrorBody;
use crate::webhook_events::WebhookEvents;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "mailroom",
        description = "Self-hosted unified email API, compatible with the Unipile v1 email API. \
                       Every error is `{title, detail, instance, type, status}`; branch on `type`.",
    ),
    components(schemas(ErrorBody)),
    modifiers(&ApiKeyScheme, &WebhookEvents),
    tags(
        (name = "Accounts", description = "Link and manage mailboxes"),
        (name = "Emails", description = "Send email and follow what became of it; list and read email and folders from the index"),
        (name = "Hosted auth", description = "Links that let end users connect their own mailbox"),
        (name = "Webhooks", description = "Signed, durable, at-least-once event delivery (see docs/webhooks.md)"),
        (name = "Audit", description = "Who changed which account, key, webhook or send, when and from where (see docs/security.md)"),
    )
)]
struct Base;

struct ApiKeyScheme;

impl Modify for ApiKeyScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("X-API-KEY"))),
        );
    }
}

pub fn base() -> utoipa::openapi::OpenApi {
    Base::openapi()
}
