//! Reading the answer of Gmail's batch endpoint: `multipart/mixed`, one `application/http`
//! part per call (`Content-ID: <response-…>`), each an HTTP response (status line, headers,
//! body) — Google's "Batching requests" guide.

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};

/// One call's answer.
pub(super) struct Answer {
    pub content_id: Option<String>,
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

/// The answers in `body` (a `multipart/mixed` with `boundary`), in order; `None` when it is
/// not one.
pub(super) fn parse_answers(body: &[u8], boundary: &str) -> Option<Vec<Answer>> {
    let delimiter = format!("--{boundary}").into_bytes();
    let mut answers = vec![];
    let mut rest = &body[find(body, &delimiter)? + delimiter.len()..];
    loop {
        if rest.starts_with(b"--") {
            return Some(answers);
        }
        let end = find(rest, &delimiter)?;
        let part = trim_crlf(&rest[..end]);
        answers.push(parse_part(part)?);
        rest = &rest[end + delimiter.len()..];
    }
}

/// The `boundary` parameter of a multipart Content-Type.
pub(super) fn boundary_of(content_type: &str) -> Option<String> {
    content_type.split(';').find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case("boundary")
            .then(|| v.trim().trim_matches('"').to_owned())
    })
}

fn parse_part(part: &[u8]) -> Option<Answer> {
    let (part_head, http) = split_head(part)?;
    let mut content_id = None;
    for line in std::str::from_utf8(part_head).ok()?.lines() {
        if let Some((n, v)) = line.split_once(':')
            && n.trim().eq_ignore_ascii_case("content-id")
        {
            content_id = Some(
                v.trim()
                    .trim_start_matches('<')
                    .trim_end_matches('>')
                    .to_owned(),
            );
        }
    }
    let (head, body) = split_head(http).unwrap_or((http, &[]));
    let head = std::str::from_utf8(head).ok()?;
    let mut lines = head.lines();
    let status: u16 = lines.next()?.split_whitespace().nth(1)?.parse().ok()?;
    let mut headers = HeaderMap::new();
    for line in lines {
        if let Some((n, v)) = line.split_once(':')
            && let (Ok(n), Ok(v)) = (
                HeaderName::try_from(n.trim()),
                HeaderValue::try_from(v.trim()),
            )
        {
            headers.append(n, v);
        }
    }
    Some(Answer {
        content_id,
        status,
        headers,
        body: trim_crlf(body).to_vec(),
    })
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Splits at the first blank line (CRLF or LF).
fn split_head(s: &[u8]) -> Option<(&[u8], &[u8])> {
    if let Some(i) = find(s, b"\r\n\r\n") {
        return Some((&s[..i], &s[i + 4..]));
    }
    find(s, b"\n\n").map(|i| (&s[..i], &s[i + 2..]))
}

fn trim_crlf(s: &[u8]) -> &[u8] {
    let s = s
        .strip_prefix(b"\r\n")
        .or_else(|| s.strip_prefix(b"\n"))
        .unwrap_or(s);
    s.strip_suffix(b"\r\n")
        .or_else(|| s.strip_suffix(b"\n"))
        .unwrap_or(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_read_in_order_with_their_status_and_headers() {
        let body =
            b"--b1\r\nContent-Type: application/http\r\nContent-ID: <response-item0>\r\n\r\n\
HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n{\"id\":\"a\"}\r\n\
--b1\r\nContent-Type: application/http\r\nContent-ID: <response-item1>\r\n\r\n\
HTTP/1.1 429 Too Many Requests\r\nRetry-After: 3\r\n\r\n{\"error\":{}}\r\n--b1--\r\n";
        let a = parse_answers(body, "b1").unwrap();
        assert_eq!(a.len(), 2);
        assert_eq!(
            (a[0].status, a[0].content_id.as_deref()),
            (200, Some("response-item0"))
        );
        assert_eq!(a[0].body, b"{\"id\":\"a\"}");
        assert_eq!(a[1].status, 429);
        assert_eq!(a[1].headers["retry-after"], "3");
        assert!(parse_answers(b"not multipart", "b1").is_none());
        assert_eq!(
            boundary_of("multipart/mixed; boundary=\"b1\"").as_deref(),
            Some("b1")
        );
    }
}
