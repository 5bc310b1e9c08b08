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

impl ChatTemplate {
    pub fn new(source: &str) -> Result<Self> {
        let mut env = Environment::new();
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function(
            "raise_exception",
            |msg: String| -> std::result::Result<String, Error> {
                Err(Error::new(ErrorKind::InvalidOperation, msg))
            },
        );
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
        let t = self
            .env
            .get_template("chat")
            .map_err(|e| QinsError::Manifest(e.to_string()))?;
        t.render(minijinja::context! {
            messages => messages,
            add_generation_prompt => add_generation_prompt,
            bos_token => bos,
            eos_token => eos,
        })
        .map_err(|e| QinsError::Manifest(format!("chat template: {e}")))
    }
}
