//! The OpenAPI document's `webhooks`: one entry per event kind, with the body a webhook
//! receives (before its `data` rename map; `webhook_name` only when the webhook has a name).
//! These types describe what the engine writes into the event log (`engine::sync`,
//! `engine::mutate`, `engine::outbox`, `engine::tracking`, the account status code); they are
//! never serialized. The suite checks real deliveries against them
//! (`testkit::openapi_check`), so a payload that drifts from its schema fails a test.

use mailroom_engine::webhooks::manage::source_events;
use utoipa::openapi::path::{HttpMethod, OperationBuilder, PathItem};
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::{ContentBuilder, PathsBuilder, Ref, RefOr, Schema};
use utoipa::{Modify, ToSchema};

/// A person on an email, as the sync parsed it.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct EventAttendee {
    display_name: Option<String>,
    /// The email address.
    identifier: String,
    /// `EMAIL_ADDRESS`.
    identifier_type: String,
}

/// An attachment's metadata (the bytes: `GET /emails/{email_id}/attachments/{id}`).
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct EventAttachment {
    id: String,
    name: String,
    size: i64,
    extension: String,
    mime: String,
    cid: Option<String>,
}

/// The mail this one answers.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct EventInReplyTo {
    message_id: String,
    /// mailroom's id of the message replied to, when it is in the index.
    id: Option<String>,
}

/// `mail_received` and `mail_sent` (Unipile's new-email webhook, `unipile-api.md` §5.4).
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct EmailEvent {
    /// `mail_received` or `mail_sent`.
    event: String,
    webhook_name: Option<String>,
    account_id: String,
    /// Our id of the email (`GET /emails/{email_id}`).
    email_id: String,
    date: String,
    from_attendee: Option<EventAttendee>,
    to_attendees: Vec<EventAttendee>,
    cc_attendees: Vec<EventAttendee>,
    bcc_attendees: Vec<EventAttendee>,
    reply_to_attendees: Vec<EventAttendee>,
    provider_id: String,
    message_id: Option<String>,
    subject: Option<String>,
    has_attachments: bool,
    attachments: Vec<EventAttachment>,
    folders: Vec<String>,
    role: String,
    read_date: Option<String>,
    in_reply_to: Option<EventInReplyTo>,
    /// `external`, `mailroom` (sent through this API) or `provider` (sent from the mailbox's
    /// own apps).
    origin: String,
    tracking_id: Option<String>,
    /// The HTML body, or the text when there is no HTML part (read from the index at delivery).
    body: String,
    body_plain: String,
    /// False when the message was no longer indexed at delivery (bodies then empty).
    is_complete: bool,
}

/// `mail_moved` (mailroom extension): where the email is now.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct MailMovedEvent {
    event: String,
    webhook_name: Option<String>,
    account_id: String,
    email_id: String,
    provider_id: String,
    message_id: Option<String>,
    from_folder: Option<String>,
    /// Where it is now (when a synced folder).
    folder: Option<String>,
    role: Option<String>,
    /// Every folder it is in now (Gmail and Outlook accounts; a Gmail message can be in
    /// several).
    folders: Option<Vec<String>>,
}

/// `mail_read` (mailroom extension): announced when mail becomes read, never unread.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct MailReadEvent {
    event: String,
    webhook_name: Option<String>,
    account_id: String,
    email_id: String,
    /// A folder it is in (when a synced folder).
    folder: Option<String>,
    role: Option<String>,
}

/// `mail_deleted` (mailroom extension): gone from the mailbox (the sync saw it go), or moved to
/// the Trash by `DELETE /emails/{id}`.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct MailDeletedEvent {
    event: String,
    webhook_name: Option<String>,
    account_id: String,
    email_id: String,
    provider_id: String,
    message_id: Option<String>,
    /// The folder it was in, when known.
    folder: Option<String>,
    /// That folder's role (`DELETE /emails/{id}` only).
    role: Option<String>,
    /// Where `DELETE /emails/{id}` moved it.
    trashed_to: Option<String>,
}

/// `send_failed` (mailroom extension): a send that will not go (refused, or out of attempts).
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct SendFailedEvent {
    event: String,
    webhook_name: Option<String>,
    account_id: String,
    /// The send's `tracking_id` (`GET /outbox/{tracking_id}`).
    tracking_id: String,
    message_id: String,
    /// The error slug, e.g. `errors/recipient_rejected`.
    #[schema(rename = "type")]
    type_: String,
    detail: String,
    date: String,
}

/// `send_paused` (mailroom extension): the provider's sending quota paused the account's sends
/// until `paused_until` (docs/sending.md, "Send limits").
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct SendPausedEvent {
    event: String,
    webhook_name: Option<String>,
    account_id: String,
    /// The send the provider refused.
    tracking_id: String,
    paused_until: String,
    /// The provider's words.
    detail: String,
    date: String,
}

/// `mail_opened` and `mail_link_clicked` (source `email_tracking`).
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct TrackingEvent {
    /// `mail_opened` or `mail_link_clicked`.
    event: String,
    /// The same as `event`.
    #[schema(rename = "type")]
    type_: String,
    webhook_name: Option<String>,
    event_id: String,
    tracking_id: String,
    date: String,
    email_id: String,
    account_id: String,
    ip: Option<String>,
    user_agent: Option<String>,
    /// The link's target (`mail_link_clicked`).
    url: Option<String>,
    label: Option<String>,
    custom_domain: Option<String>,
    /// Fetched by a mail scanner or proxy, not opened by a person, where recognisable.
    prefetch: bool,
}

/// The account's new status.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct AccountStatusBody {
    account_id: String,
    /// `MAIL`, `GOOGLE_OAUTH` or `OUTLOOK`.
    account_type: String,
    /// `CREATION_SUCCESS`, `RECONNECTED`, `CONNECTING`, `OK`, `SYNC_SUCCESS`, `ERROR`,
    /// `CREDENTIALS`, `STOPPED` or `DELETED`.
    message: String,
    /// Why, for the sync statuses that have a reason.
    reason: Option<String>,
}

/// Source `account_status`: exactly as Unipile sends it.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct AccountStatusEvent {
    #[schema(rename = "AccountStatus")]
    account_status: AccountStatusBody,
}

/// A hosted link's `notify_url` call (not signed: there is no secret).
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct HostedNotifyCall {
    /// `CREATION_SUCCESS` or `RECONNECTED`.
    status: String,
    account_id: String,
    /// The link's `name`.
    name: String,
}

/// Event kind → the schema of its body.
pub fn schema_of_kind(kind: &str) -> Option<&'static str> {
    Some(match kind {
        "mail_received" | "mail_sent" => "EmailEvent",
        "mail_moved" => "MailMovedEvent",
        "mail_read" => "MailReadEvent",
        "mail_deleted" => "MailDeletedEvent",
        "send_failed" => "SendFailedEvent",
        "send_paused" => "SendPausedEvent",
        "mail_opened" | "mail_link_clicked" => "TrackingEvent",
        "account_status" => "AccountStatusEvent",
        "hosted_notify" => "HostedNotifyCall",
        _ => return None,
    })
}

/// Every event kind a webhook (or a hosted link's `notify_url`) can receive, in the order the
/// document lists them: the engine's own list per source, so a kind added there without a
/// schema here fails the unit test below.
pub fn kinds() -> Vec<&'static str> {
    let sources = ["email", "email_tracking"];
    sources
        .iter()
        .flat_map(|s| source_events(s).unwrap_or(&[]).iter().copied())
        .chain(["account_status", "hosted_notify"])
        .collect()
}

/// Adds the event schemas and the `webhooks` section.
pub struct WebhookEvents;

fn add<T: ToSchema>(schemas: &mut Vec<(String, RefOr<Schema>)>) {
    schemas.push((T::name().into_owned(), T::schema()));
    T::schemas(schemas);
}

impl Modify for WebhookEvents {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let mut schemas = vec![];
        add::<EmailEvent>(&mut schemas);
        add::<MailMovedEvent>(&mut schemas);
        add::<MailReadEvent>(&mut schemas);
        add::<MailDeletedEvent>(&mut schemas);
        add::<SendFailedEvent>(&mut schemas);
        add::<SendPausedEvent>(&mut schemas);
        add::<TrackingEvent>(&mut schemas);
        add::<AccountStatusEvent>(&mut schemas);
        add::<HostedNotifyCall>(&mut schemas);
        let components = openapi.components.get_or_insert_with(Default::default);
        for (name, schema) in schemas {
            components.schemas.insert(name, schema);
        }
        let mut paths = PathsBuilder::new();
        for kind in kinds() {
            let schema = schema_of_kind(kind).expect("every kind has a schema");
            let op = OperationBuilder::new()
                .summary(Some(format!("`{kind}`")))
                .description(Some(
                    "A POST to the webhook's `request_url` with the Standard Webhooks headers \
                     (`webhook-id`: the event's id, the same on every retry; `webhook-timestamp`; \
                     `webhook-signature`: `v1,<base64 HMAC-SHA256>`) and the webhook's custom \
                     headers; `format: form` sends the same fields urlencoded. Any 2xx settles it; \
                     410 disables the webhook; anything else is retried (docs/webhooks.md).",
                ))
                .request_body(Some(
                    RequestBodyBuilder::new()
                        .content(
                            "application/json",
                            ContentBuilder::new()
                                .schema(Some(Ref::from_schema_name(schema)))
                                .build(),
                        )
                        .required(Some(utoipa::openapi::Required::True))
                        .build(),
                ))
                .response(
                    "2XX",
                    ResponseBuilder::new().description("Delivered").build(),
                )
                .tag("Webhooks")
                .build();
            paths = paths.path(kind, PathItem::new(HttpMethod::Post, op));
        }
        openapi.webhooks = Some(paths.build());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_a_schema_in_the_document() {
        let mut doc = utoipa::openapi::OpenApi::default();
        WebhookEvents.modify(&mut doc);
        let v = serde_json::to_value(&doc).unwrap();
        for kind in kinds() {
            let name = schema_of_kind(kind).unwrap();
            assert!(
                v["components"]["schemas"][name].is_object(),
                "{kind}: no schema {name}"
            );
            assert_eq!(
                v["webhooks"][kind]["post"]["requestBody"]["content"]["application/json"]["schema"]
                    ["$ref"],
                format!("#/components/schemas/{name}")
            );
        }
        assert_eq!(
            v["components"]["schemas"]["AccountStatusEvent"]["required"],
            serde_json::json!(["AccountStatus"])
        );
        assert_eq!(
            v["components"]["schemas"]["SendFailedEvent"]["properties"]["type"]["type"],
            "string"
        );
    }
}
