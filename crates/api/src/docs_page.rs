//! `/docs`: the OpenAPI document rendered as one self-contained HTML page (no scripts, no
//! external assets, so it works on air-gapped installs).

use std::fmt::Write as _;

use utoipa::openapi::OpenApi;

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

pub fn render(spec: &OpenApi) -> String {
    let mut body = String::new();
    for (path, item) in spec.paths.paths.iter() {
        let ops = [
            ("GET", &item.get),
            ("POST", &item.post),
            ("PUT", &item.put),
            ("PATCH", &item.patch),
            ("DELETE", &item.delete),
        ];
        for (method, op) in ops {
            let Some(op) = op else { continue };
            let summary = op.summary.as_deref().unwrap_or("");
            let description = op.description.as_deref().unwrap_or("");
            let _ = write!(
                body,
                "<section><h2><span class=\"m {m}\">{method}</span> <code>{p}</code></h2><p>{s}</p>",
                m = method.to_ascii_lowercase(),
                p = esc(path),
                s = esc(summary)
            );
            if !description.is_empty() && description != summary {
                let _ = write!(body, "<p>{}</p>", esc(description));
            }
            if let Some(params) = &op.parameters
                && !params.is_empty()
            {
                body.push_str("<h3>Parameters</h3><ul>");
                for p in params {
                    let utoipa::openapi::RefOr::T(p) = p else {
                        continue;
                    };
                    let _ = write!(
                        body,
                        "<li><code>{}</code> ({}) {}</li>",
                        esc(&p.name),
                        serde_json::to_value(&p.parameter_in)
                            .ok()
                            .and_then(|v| v.as_str().map(str::to_owned))
                            .unwrap_or_default(),
                        esc(p.description.as_deref().unwrap_or(""))
                    );
                }
                body.push_str("</ul>");
            }
            body.push_str("<h3>Responses</h3><ul>");
            for (status, resp) in op.responses.responses.iter() {
                let text = match resp {
                    utoipa::openapi::RefOr::T(r) => r.description.clone(),
                    utoipa::openapi::RefOr::Ref(r) => r.ref_location.clone(),
                };
                let _ = write!(body, "<li><b>{}</b> {}</li>", esc(status), esc(&text));
            }
            body.push_str("</ul></section>");
        }
    }
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<title>{title} API</title><style>\
body{{font:15px/1.5 system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#1b1b1b}}\
section{{border-top:1px solid #ddd;padding:.5rem 0}} h2{{font-size:1.05rem}} h3{{font-size:.9rem;margin:.3rem 0}}\
.m{{display:inline-block;min-width:4.5rem;text-align:center;border-radius:4px;color:#fff;font-size:.8rem;padding:2px 6px}}\
.get{{background:#2f6f4f}} .post{{background:#1f5fa8}} .put,.patch{{background:#8a5a00}} .delete{{background:#a31b1b}}\
code{{background:#f3f3f3;padding:1px 4px;border-radius:3px}}</style></head><body>\
<h1>{title} API {version}</h1><p>{desc}</p><p>Machine-readable: <a href=\"/openapi.json\">/openapi.json</a>. \
Authenticate with the <code>X-API-KEY</code> header.</p>{body}</body></html>",
        title = esc(&spec.info.title),
        version = esc(&spec.info.version),
        desc = esc(spec.info.description.as_deref().unwrap_or("")),
    )
}
