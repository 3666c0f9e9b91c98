//! Open and click tracking in an HTML body: every `http(s)` link of an `<a href>` (or
//! `<area href>`) is replaced by a tracking URL, and a 1×1 image is added at the end of the
//! body. `lol_html` rewrites only those attributes and inserts only the image, so the rest of
//! the author's HTML is sent byte for byte as written.

use lol_html::html_content::ContentType;
use lol_html::{RewriteStrSettings, element, end, rewrite_str};

/// What to add to a body.
pub struct Instrument<'a> {
    /// The open pixel's URL, when opens are tracked.
    pub pixel: Option<&'a str>,
    /// The tracking URL of one link, called with the link's own URL in order of appearance;
    /// `None` when links are not tracked.
    pub link: Option<&'a mut dyn FnMut(&str) -> String>,
}

/// Whether a link can be tracked: an absolute `http`/`https` URL (not `mailto:`, anchors,
/// relative or template links, which the recipient's client could not follow through us).
fn trackable(href: &str) -> bool {
    let h = href.trim();
    let lower = h.get(..8).unwrap_or(h).to_ascii_lowercase();
    (lower.starts_with("http://") || lower.starts_with("https://")) && url::Url::parse(h).is_ok()
}

/// An attribute value as the browser reads it: `lol_html` gives it as written, character
/// references included (`&amp;` in a URL's query). The references a URL can hold are decoded:
/// the five named ones of XML and numeric ones; any other `&` is left as it is.
fn decode_attribute(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut rest = raw;
    while let Some(at) = rest.find('&') {
        out.push_str(&rest[..at]);
        rest = &rest[at..];
        let semi = rest.char_indices().take(12).find(|(_, c)| *c == ';');
        let Some((semi, _)) = semi else {
            out.push('&');
            rest = &rest[1..];
            continue;
        };
        let name = &rest[1..semi];
        let decoded = match name {
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            _ => name
                .strip_prefix("#x")
                .or_else(|| name.strip_prefix("#X"))
                .and_then(|h| u32::from_str_radix(h, 16).ok())
                .or_else(|| name.strip_prefix('#').and_then(|d| d.parse().ok()))
                .and_then(char::from_u32),
        };
        match decoded {
            Some(c) => {
                out.push(c);
                rest = &rest[semi + 1..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

fn pixel_html(url: &str) -> String {
    let escaped = url.replace('&', "&amp;").replace('"', "&quot;");
    format!(
        "<img src=\"{escaped}\" width=\"1\" height=\"1\" alt=\"\" \
         style=\"display:block;width:1px;height:1px;border:0\">"
    )
}

/// `html` with its links and the pixel as `what` asks. HTML that cannot be parsed is sent as
/// it is (`None`).
pub fn instrument(html: &str, what: Instrument<'_>) -> Option<String> {
    let Instrument { pixel, mut link } = what;
    let pixel = pixel.map(pixel_html);
    let body_seen = std::cell::Cell::new(false);
    let mut settings = RewriteStrSettings::new();
    if let Some(rewrite) = link.as_mut() {
        settings =
            settings.append_element_content_handler(element!("a[href], area[href]", move |el| {
                if let Some(href) = el.get_attribute("href").map(|h| decode_attribute(&h))
                    && trackable(&href)
                {
                    // Tracking URLs are URL-safe: nothing in them needs escaping.
                    el.set_attribute("href", &rewrite(href.trim()))?;
                }
                Ok(())
            }));
    }
    if let Some(p) = &pixel {
        let body_seen = &body_seen;
        settings = settings
            .append_element_content_handler(element!("body", move |el| {
                body_seen.set(true);
                el.append(p, ContentType::Html);
                Ok(())
            }))
            // Without a <body> (a fragment, as most API users send), the image goes at the end.
            .append_document_content_handler(end!(move |end| {
                if !body_seen.get() {
                    end.append(p, ContentType::Html);
                }
                Ok(())
            }));
    }
    rewrite_str(html, settings).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn instrumented(html: &str, pixel: Option<&str>, links: bool) -> (String, Vec<String>) {
        let mut seen = vec![];
        let mut n = 0;
        let mut rewrite = |u: &str| {
            seen.push(u.to_owned());
            n += 1;
            format!("https://t.example/c/{n}")
        };
        let out = instrument(
            html,
            Instrument {
                pixel,
                link: if links { Some(&mut rewrite) } else { None },
            },
        )
        .unwrap();
        (out, seen)
    }

    #[test]
    fn links_are_rewritten_and_nothing_else_changes() {
        let html = "<p>Hi <a href=\"https://example.com/a?x=1&amp;y=2\" class=k>one</a>, \
                    <a href='mailto:x@y.z'>mail</a>, <a href=\"#top\">top</a>, \
                    <A HREF=\"HTTP://Example.com/B\">two</A><!-- kept --></p>";
        let (out, seen) = instrumented(html, None, true);
        assert_eq!(
            seen,
            vec!["https://example.com/a?x=1&y=2", "HTTP://Example.com/B"]
        );
        assert_eq!(
            out,
            "<p>Hi <a href=\"https://t.example/c/1\" class=k>one</a>, \
             <a href='mailto:x@y.z'>mail</a>, <a href=\"#top\">top</a>, \
             <A HREF=\"https://t.example/c/2\">two</A><!-- kept --></p>"
        );
    }

    #[test]
    fn the_pixel_ends_the_body_or_the_fragment() {
        let (out, _) = instrumented(
            "<html><body><p>x</p></body></html>",
            Some("https://t.example/o/1?a&b"),
            false,
        );
        assert_eq!(
            out,
            "<html><body><p>x</p><img src=\"https://t.example/o/1?a&amp;b\" width=\"1\" \
             height=\"1\" alt=\"\" style=\"display:block;width:1px;height:1px;border:0\"></body></html>"
        );
        let (out, _) = instrumented("<p>x</p>", Some("https://t.example/o/1"), false);
        assert!(
            out.starts_with("<p>x</p><img src=\"https://t.example/o/1\""),
            "{out}"
        );
        assert_eq!(out.matches("<img").count(), 1);
    }

    #[test]
    fn attribute_references_are_decoded() {
        assert_eq!(decode_attribute("a?x=1&amp;y=&#50;&#x33;"), "a?x=1&y=23");
        assert_eq!(decode_attribute("a&b&unknown;&amp"), "a&b&unknown;&amp");
        assert_eq!(decode_attribute("é&éééééééééééé;"), "é&éééééééééééé;");
    }

    #[test]
    fn nothing_asked_changes_nothing() {
        let html = "<p><a href=\"https://example.com\">x</a></p>";
        assert_eq!(instrumented(html, None, false).0, html);
    }
}
