//! The hosted pages: server-rendered HTML with inline styles, no scripts and no external
//! assets, so they work without JavaScript, behind strict CSPs and on air-gapped installs.

use std::fmt::Write as _;

use super::presets::Preset;

pub fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

const STYLE: &str = "\
:root{color-scheme:light dark;--fg:#1a1c1e;--muted:#5b6168;--bg:#f4f5f7;--card:#fff;--line:#d9dce1;--accent:#1f5fa8;--err:#a3261b}\
@media (prefers-color-scheme:dark){:root{--fg:#eceef1;--muted:#a9afb7;--bg:#15171a;--card:#1f2226;--line:#3a3f45;--accent:#7fb0ef;--err:#ff9a8f}}\
*{box-sizing:border-box}body{margin:0;background:var(--bg);color:var(--fg);font:16px/1.5 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif}\
main{max-width:30rem;margin:3rem auto;padding:2rem;background:var(--card);border:1px solid var(--line);border-radius:12px}\
h1{font-size:1.35rem;margin:0 0 .25rem}p{margin:.5rem 0}.muted{color:var(--muted);font-size:.92rem}\
.choices{display:grid;gap:.75rem;margin:1.5rem 0 0;padding:0;list-style:none}\
button,.button{display:block;width:100%;padding:.8rem 1rem;font:inherit;font-weight:600;text-align:left;color:var(--fg);background:var(--card);border:1px solid var(--line);border-radius:8px;cursor:pointer;text-decoration:none}\
button:hover,.button:hover{border-color:var(--accent)}button:focus-visible,.button:focus-visible,input:focus-visible{outline:3px solid var(--accent);outline-offset:2px}\
.primary{background:var(--accent);color:var(--card);border-color:var(--accent);text-align:center}\
label{display:block;font-weight:600;margin:1rem 0 .25rem}input{width:100%;padding:.6rem .7rem;font:inherit;color:var(--fg);background:var(--card);border:1px solid var(--line);border-radius:6px}\
.row{display:grid;grid-template-columns:2fr 1fr;gap:.75rem}fieldset{border:0;padding:0;margin:1.5rem 0 0}legend{font-weight:700;padding:0}form p:last-child{margin-top:1.5rem}\
.error{border-left:4px solid var(--err);padding:.5rem .75rem;color:var(--err);background:transparent}\
footer{margin-top:1.5rem;font-size:.85rem;color:var(--muted)}form{margin:0}";

/// A whole page around `body`.
pub fn layout(title: &str, body: &str) -> String {
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<meta name=\"referrer\" content=\"no-referrer\"><title>{t}</title><style>{STYLE}</style></head>\
<body><main>{body}<footer>Your password and tokens are encrypted and never shared with the application \
that sent you here.</footer></main></body></html>",
        t = esc(title)
    )
}

fn error_box(error: Option<&str>) -> String {
    error
        .map(|e| format!("<p class=\"error\" role=\"alert\">{}</p>", esc(e)))
        .unwrap_or_default()
}

/// The first page: which kind of mailbox to connect.
pub fn choose(
    token: &str,
    name: Option<&str>,
    reconnect: bool,
    google: bool,
    microsoft: bool,
    mail: bool,
    error: Option<&str>,
) -> String {
    let verb = if reconnect { "Reconnect" } else { "Connect" };
    let mut body = format!("<h1>{verb} your mailbox</h1>");
    if let Some(n) = name {
        let _ = write!(body, "<p class=\"muted\">For {}</p>", esc(n));
    }
    body.push_str(&error_box(error));
    body.push_str("<p>Choose where your email is hosted.</p><ul class=\"choices\">");
    let t = esc(token);
    if google {
        let _ = write!(
            body,
            "<li><form method=\"post\" action=\"/hosted/{t}/oauth/google\"><button type=\"submit\">Google (Gmail, Google Workspace)</button></form></li>"
        );
    }
    if microsoft {
        let _ = write!(
            body,
            "<li><form method=\"post\" action=\"/hosted/{t}/oauth/microsoft\"><button type=\"submit\">Microsoft (Outlook, Microsoft 365)</button></form></li>"
        );
    }
    if mail {
        let _ = write!(
            body,
            "<li><a class=\"button\" href=\"/hosted/{t}/imap\">Other email provider (IMAP)</a></li>"
        );
    }
    if !(google || microsoft || mail) {
        body.push_str("<li><p>No way to connect a mailbox is available here. Please contact the application that sent you this link.</p></li>");
    }
    body.push_str("</ul>");
    layout(&format!("{verb} your mailbox"), &body)
}

/// Values typed into the IMAP form (kept when the form is shown again after an error).
#[derive(Default, Debug, Clone)]
pub struct ImapValues {
    pub email: String,
    pub imap_host: String,
    pub imap_port: String,
    pub smtp_host: String,
    pub smtp_port: String,
    pub username: String,
}

impl ImapValues {
    pub fn from_preset(email: &str, p: &Preset) -> Self {
        Self {
            email: email.to_owned(),
            imap_host: p.imap_host.to_owned(),
            imap_port: p.imap_port.to_string(),
            smtp_host: p.smtp_host.to_owned(),
            smtp_port: p.smtp_port.to_string(),
            username: email.to_owned(),
        }
    }
}

/// Step one of IMAP: the address (to pick a preset).
pub fn imap_email(token: &str, error: Option<&str>) -> String {
    let t = esc(token);
    let body = format!(
        "<h1>Connect by IMAP</h1>{e}<form method=\"get\" action=\"/hosted/{t}/imap\">\
<label for=\"email\">Email address</label><input id=\"email\" name=\"email\" type=\"email\" autocomplete=\"email\" required autofocus>\
<p class=\"muted\">We fill in the server settings for well-known providers.</p>\
<button class=\"primary\" type=\"submit\">Continue</button></form>",
        e = error_box(error)
    );
    layout("Connect by IMAP", &body)
}

/// Step two of IMAP: server settings and password.
pub fn imap_form(
    token: &str,
    v: &ImapValues,
    preset: Option<&Preset>,
    error: Option<&str>,
) -> String {
    let t = esc(token);
    let note = match preset {
        Some(p) => format!(
            "<p class=\"muted\">Settings for {}.{}</p>",
            esc(p.label),
            if p.note.is_empty() { String::new() } else { format!(" {}", esc(p.note)) }
        ),
        None => "<p class=\"muted\">Enter your provider's IMAP and SMTP settings (your provider's help pages list them).</p>".to_owned(),
    };
    let field = |id: &str, label: &str, value: &str, kind: &str, extra: &str| {
        format!(
            "<label for=\"{id}\">{label}</label><input id=\"{id}\" name=\"{id}\" type=\"{kind}\" value=\"{v}\" {extra}>",
            v = esc(value)
        )
    };
    let body = format!(
        "<h1>Connect by IMAP</h1>{e}{note}<form method=\"post\" action=\"/hosted/{t}/imap\">\
{email}{user}{pw}\
<fieldset><legend>Incoming mail (IMAP, encrypted)</legend><div class=\"row\"><div>{ih}</div><div>{ip}</div></div></fieldset>\
<fieldset><legend>Outgoing mail (SMTP, encrypted)</legend><div class=\"row\"><div>{sh}</div><div>{sp}</div></div></fieldset>\
<p><button class=\"primary\" type=\"submit\">Connect</button></p></form>",
        e = error_box(error),
        email = field(
            "email",
            "Email address",
            &v.email,
            "email",
            "autocomplete=\"email\" required"
        ),
        user = field(
            "username",
            "Username",
            &v.username,
            "text",
            "autocomplete=\"username\" required"
        ),
        pw = field(
            "password",
            "Password",
            "",
            "password",
            "autocomplete=\"current-password\" required"
        ),
        ih = field("imap_host", "Server", &v.imap_host, "text", "required"),
        ip = field(
            "imap_port",
            "Port",
            &v.imap_port,
            "number",
            "min=\"1\" max=\"65535\" required"
        ),
        sh = field("smtp_host", "Server", &v.smtp_host, "text", "required"),
        sp = field(
            "smtp_port",
            "Port",
            &v.smtp_port,
            "number",
            "min=\"1\" max=\"65535\" required"
        ),
    );
    layout("Connect by IMAP", &body)
}

/// A final page: done, or why not.
pub fn message(title: &str, text: &str) -> String {
    layout(
        title,
        &format!("<h1>{}</h1><p>{}</p>", esc(title), esc(text)),
    )
}
