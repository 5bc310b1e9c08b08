use minijinja::value::{Kwargs, Value};
use minijinja::{Environment, Error, ErrorKind};
use serde::{Deserialize, Serialize};

use crate::{QinsError, Result};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    pub role: String,
    pub content: String,
}

impl Message {
    pub fn new(role: &str, content: &str) -> Self {
        Self {
            role: role.into(),
            content: content.into(),
        }
    }
}

/// The model's own Jinja chat template rendered with Hugging Face's conventions (`messages`,
/// `add_generation_prompt`, `bos_token`, `eos_token`, `raise_exception`, Python string methods),
/// so every model's prompt format comes from its data.
pub struct ChatTemplate {
    env: Environment<'static>,
}

/// A template is code that comes with the archive: its run time is bounded by fuel (minijinja's
/// instruction budget: a 200-turn conversation with a tools branch takes well under 1 % of it)
/// and its output by size, so a template that loops forever or writes without end is an error,
/// not a hung page.
const TEMPLATE_FUEL: u64 = 20_000_000;
/// The longest prompt a template may write: far past any context a model here has.
const MAX_PROMPT_BYTES: usize = 16 << 20;

/// Collects a render's output, refusing bytes past [`MAX_PROMPT_BYTES`].
struct Capped(String);

impl std::fmt::Write for Capped {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        if self.0.len() + s.len() > MAX_PROMPT_BYTES {
            return Err(std::fmt::Error);
        }
        self.0.push_str(s);
        Ok(())
    }
}

impl std::io::Write for Capped {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let s = std::str::from_utf8(buf)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
        std::fmt::Write::write_str(self, s).map_err(|_| {
            std::io::Error::other(format!("the prompt exceeds {MAX_PROMPT_BYTES} bytes"))
        })?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl ChatTemplate {
    pub fn new(source: &str) -> Result<Self> {
        let mut env = Environment::new();
        env.set_fuel(Some(TEMPLATE_FUEL));
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function(
            "raise_exception",
            |msg: String| -> std::result::Result<String, Error> {
                Err(Error::new(ErrorKind::InvalidOperation, msg))
            },
        );
        env.add_filter("tojson", py_tojson);
        // HF templates rely on trim_blocks / lstrip_blocks being on.
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.add_template_owned("chat", source.to_string())
            .map_err(|e| QinsError::Manifest(format!("chat template: {e}")))?;
        Ok(Self { env })
    }

    pub fn render(
        &self,
        messages: &[Message],
        add_generation_prompt: bool,
        bos: &str,
        eos: &str,
    ) -> Result<String> {
        self.render_with(
            Value::from_serialize(messages),
            Value::from(()),
            add_generation_prompt,
            bos,
            eos,
        )
    }

    /// Renders messages given as JSON (OpenAI's shape: `tool_calls` on assistant turns, `tool`
    /// turns) with the tools offered (a JSON array, or None), as transformers'
    /// `apply_chat_template(messages, tools=…)` does.
    pub fn render_json(
        &self,
        messages: &serde_json::Value,
        tools: Option<&serde_json::Value>,
        add_generation_prompt: bool,
        bos: &str,
        eos: &str,
    ) -> Result<String> {
        self.render_with(
            Value::from_serialize(messages),
            tools.map_or(Value::from(()), Value::from_serialize),
            add_generation_prompt,
            bos,
            eos,
        )
    }

    fn render_with(
        &self,
        messages: Value,
        tools: Value,
        add_generation_prompt: bool,
        bos: &str,
        eos: &str,
    ) -> Result<String> {
        let t = self
            .env
            .get_template("chat")
            .map_err(|e| QinsError::Manifest(e.to_string()))?;
        let mut out = Capped(String::new());
        t.render_captured_to(
            minijinja::context! {
                messages => messages,
                tools => tools,
                add_generation_prompt => add_generation_prompt,
                bos_token => bos,
                eos_token => eos,
            },
            &mut out,
        )
        .map_err(|e| QinsError::Manifest(format!("chat template: {e}")))?;
        Ok(out.0)
    }
}

/// `tojson` as transformers defines it for chat templates: Python's `json.dumps(value,
/// ensure_ascii=False, indent=indent)` — ", " and ": " between items, non-ASCII as is, no HTML
/// escaping (minijinja's own filter is compact and HTML-safe, so a tool's JSON would differ from
/// what the model was trained on). Written by hand: serde_json has no Python-style formatter.
fn py_tojson(value: Value, kwargs: Kwargs) -> std::result::Result<Value, Error> {
    let indent: Option<usize> = kwargs.get("indent")?;
    kwargs.assert_all_used()?;
    let out = match indent {
        Some(n) => to_json(
            &value,
            serde_json::ser::PrettyFormatter::with_indent(&vec![b' '; n]),
        ),
        None => to_json(&value, PyFormatter),
    };
    let bad = |e: String| Error::new(ErrorKind::InvalidOperation, e);
    let text =
        String::from_utf8(out.map_err(|e| bad(e.to_string()))?).map_err(|e| bad(e.to_string()))?;
    Ok(Value::from_safe_string(text))
}

fn to_json(value: &Value, fmt: impl serde_json::ser::Formatter) -> serde_json::Result<Vec<u8>> {
    let mut out = Vec::new();
    serde::Serialize::serialize(
        value,
        &mut serde_json::Serializer::with_formatter(&mut out, fmt),
    )?;
    Ok(out)
}

/// Python's default separators: ", " between items, ": " after keys.
struct PyFormatter;

impl serde_json::ser::Formatter for PyFormatter {
    fn begin_array_value<W: ?Sized + std::io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        if first {
            Ok(())
        } else {
            w.write_all(b", ")
        }
    }

    fn begin_object_key<W: ?Sized + std::io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        if first {
            Ok(())
        } else {
            w.write_all(b", ")
        }
    }

    fn begin_object_value<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        w.write_all(b": ")
    }
}

#[cfg(test)]
mod tests {
    use super::{ChatTemplate, Message};

    fn render(source: &str) -> crate::Result<String> {
        ChatTemplate::new(source)?.render(&[Message::new("user", "hi")], true, "", "")
    }

    #[test]
    fn a_template_that_loops_forever_is_an_error_not_a_hang() {
        let started = web_time::Instant::now();
        // 10^15 iterations (minijinja caps one range at 100 000 elements, not their nesting).
        let nested = "{% for i in range(100000) %}{% for j in range(100000) %}\
                      {% for k in range(100000) %}{% endfor %}{% endfor %}{% endfor %}";
        let err = render(nested).unwrap_err();
        assert!(err.to_string().contains("fuel"), "{err}");
        assert!(
            started.elapsed().as_secs_f64() < 1.0,
            "{:?}",
            started.elapsed()
        );
    }

    #[test]
    fn a_template_that_writes_without_end_is_an_error() {
        let err = render("{% for i in range(100000) %}{{ 'x' * 1000 }}{% endfor %}").unwrap_err();
        assert!(err.to_string().contains("chat template"), "{err}");
        let err = render("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}").unwrap_err();
        assert!(err.to_string().contains("chat template"), "{err}");
    }

    #[test]
    fn a_normal_template_still_renders() {
        let out =
            render("{% for m in messages %}<{{ m.role }}>{{ m.content }}{% endfor %}").unwrap();
        assert_eq!(out, "<user>hi");
    }
}
