//! Plain text from HTML, and telling HTML bodies from plain ones.

/// Column width of the derived plain-text alternative.
pub const TEXT_WIDTH: usize = 78;

/// The plain-text alternative of an HTML body (html2text, 78 columns, no markdown-style
/// emphasis, links as numbered footnotes). Trailing spaces are dropped from each line and the result has no trailing blank
/// lines. Should html2text fail, the tags are stripped crudely instead.
pub fn derive_text(html: &str) -> String {
    let text = html2text::config::plain_no_decorate()
        .link_footnotes(true)
        .string_from_read(html.as_bytes(), TEXT_WIDTH)
        .unwrap_or_else(|_| strip_tags(html));
    let mut out: String = text
        .lines()
        .map(str::trim_end)
        .collect::<Vec<_>>()
        .join("\n");
    let kept = out.trim_end().len();
    out.truncate(kept);
    out
}

/// Whether a body should be treated as HTML.
///
/// The heuristic: the body contains a tag or an entity.
/// - A tag is `<` then an optional `/`, then a letter, then letters, digits or `-`, ending in
///   whitespace, `>` or `/` (`<p>`, `<br/>`, `</div>`, `<a href=…>`); or a comment or
///   declaration `<!--`, `<!DOCTYPE`. So `<bob@example.com>`, `<https://x>` and `a < b` are
///   not tags.
/// - An entity is `&` then a name of two or more ASCII letters/digits starting with a letter,
///   or `#` and decimal digits, or `#x` and hex digits, then `;` (`&amp;`, `&#233;`,
///   `&#xE9;`). So `AT&T;` and `R&D` are not entities.
pub fn looks_like_html(body: &str) -> bool {
    let b = body.as_bytes();
    (0..b.len()).any(|i| match b[i] {
        b'<' => is_tag_at(&b[i + 1..]),
        b'&' => is_entity_at(&b[i + 1..]),
        _ => false,
    })
}

fn is_tag_at(rest: &[u8]) -> bool {
    if rest.starts_with(b"!--") || rest.len() >= 8 && rest[..8].eq_ignore_ascii_case(b"!doctype") {
        return true;
    }
    let rest = rest.strip_prefix(b"/").unwrap_or(rest);
    let Some((first, tail)) = rest.split_first() else {
        return false;
    };
    if !first.is_ascii_alphabetic() {
        return false;
    }
    let name_len = tail
        .iter()
        .take_while(|c| c.is_ascii_alphanumeric() || **c == b'-')
        .count();
    match tail.get(name_len) {
        Some(c) => c.is_ascii_whitespace() || *c == b'>' || *c == b'/',
        None => false,
    }
}

fn is_entity_at(rest: &[u8]) -> bool {
    let (name, min) = match rest {
        [b'#', b'x' | b'X', tail @ ..] => (tail, 1),
        [b'#', tail @ ..] => (tail, 1),
        [first, ..] if first.is_ascii_alphabetic() => (rest, 2),
        _ => return false,
    };
    let hex = rest.len() > 1 && matches!(rest[..2], [b'#', b'x' | b'X']);
    let numeric = rest.first() == Some(&b'#');
    let n = name
        .iter()
        .take_while(|c| match (numeric, hex) {
            (true, true) => c.is_ascii_hexdigit(),
            (true, false) => c.is_ascii_digit(),
            _ => c.is_ascii_alphanumeric(),
        })
        .count();
    n >= min && name.get(n) == Some(&b';')
}

fn strip_tags(html: &str) -> String {
    let mut out = String::with_capacity(html.len());
    let mut in_tag = false;
    for c in html.chars() {
        match c {
            '<' => in_tag = true,
            '>' if in_tag => in_tag = false,
            c if !in_tag => out.push(c),
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_is_recognised_by_tags_and_entities() {
        for html in [
            "<p>Hello</p>",
            "Hi<br>there",
            "Hi<br/>there",
            "line</div>",
            "<a href=\"https://e.test\">x</a>",
            "<!DOCTYPE html><html>",
            "<!-- note -->",
            "Fish &amp; chips",
            "caf&#233;",
            "caf&#xE9;",
        ] {
            assert!(looks_like_html(html), "{html}");
        }
    }

    #[test]
    fn plain_text_is_not_html() {
        for text in [
            "Hello,\nsee you at 5.",
            "Write to <bob@example.com> please",
            "Link: <https://example.com/x>",
            "if a < b and b > c",
            "x <3 y",
            "AT&T; R&D",
            "& alone; &#; &#x;",
            "ends with <",
            "ends with <p",
        ] {
            assert!(!looks_like_html(text), "{text}");
        }
    }

    #[test]
    fn derived_text_keeps_words_links_and_wraps() {
        let html = "<html><body><h1>Title</h1><p>Hello <b>wörld</b> &amp; friends.</p>\
                    <p><a href=\"https://example.com/x\">the link</a></p>\
                    <p>aaaa bbbb cccc dddd eeee ffff gggg hhhh iiii jjjj kkkk llll mmmm nnnn oooo pppp qqqq rrrr</p></body></html>";
        let text = derive_text(html);
        assert!(text.contains("Title"), "{text}");
        assert!(!text.contains("**"), "no markdown emphasis: {text}");
        assert!(text.contains("Hello wörld & friends."), "{text}");
        assert!(text.contains("the link"), "{text}");
        assert!(text.contains("https://example.com/x"), "{text}");
        assert!(!text.contains('<'), "{text}");
        assert!(
            text.lines().all(|l| l.chars().count() <= TEXT_WIDTH),
            "{text}"
        );
        assert!(!text.ends_with('\n'));
    }

    #[test]
    fn strip_tags_fallback() {
        assert_eq!(strip_tags("<p>a <b>b</b></p>"), "a b");
    }
}
