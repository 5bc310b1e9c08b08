//! Replies rendered as Markdown (pulldown-cmark). Raw HTML in model output is shown as text,
//! never interpreted: a reply must not be able to inject markup or scripts into the page.

use pulldown_cmark::{html, CodeBlockKind, Event, Options, Parser, Tag, TagEnd};

pub fn to_html(text: &str) -> String {
    let mut opts = Options::empty();
    opts.insert(Options::ENABLE_TABLES);
    opts.insert(Options::ENABLE_STRIKETHROUGH);
    let events = Parser::new_ext(text, opts).flat_map(|ev| match ev {
        Event::Html(raw) | Event::InlineHtml(raw) => vec![Event::Text(raw)],
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
    out
}

fn escape(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '_' | '#' | '.'))
        .collect()
}
