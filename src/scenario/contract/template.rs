//! Templates: the text a contract's requests are made of (`Template` of `Piece`s, with
//! `{name}` placeholders for the `Slot`s a request fills in), and where a request goes
//! (`Route`: a `Method` and a path template).
//!
//! Invariants: a template uses only the slots its place allows (a lookup cannot use
//! `{quantity}`, only a lookup of an existing resource `{id}`); anything else between braces
//! is text, so JSON's own braces need no escaping; a path starts with `/` and has no spaces;
//! a template is at most `MAX_TEXT` bytes.

use super::MAX_TEXT;

/// What a template may fill in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    Key,
    Merchant,
    Mandate,
    Item,
    Agent,
    Quantity,
    AmountMinor,
    Currency,
    /// The id an "already exists" answer names (lookups only).
    Id,
}

impl Slot {
    const ALL: [(&'static str, Slot); 9] = [
        ("key", Slot::Key),
        ("merchant", Slot::Merchant),
        ("mandate", Slot::Mandate),
        ("item", Slot::Item),
        ("agent", Slot::Agent),
        ("quantity", Slot::Quantity),
        ("amount_minor", Slot::AmountMinor),
        ("currency", Slot::Currency),
        ("id", Slot::Id),
    ];

    fn name(self) -> &'static str {
        Slot::ALL
            .iter()
            .find(|(_, s)| *s == self)
            .map_or("?", |(n, _)| n)
    }
}

/// One piece of a template: text as written, or a placeholder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    Text(String),
    Slot(Slot),
}

/// Text with `{name}` placeholders (`{key}`, `{merchant}`, `{mandate}`, `{item}`,
/// `{agent}`, `{quantity}`, `{amount_minor}`, `{currency}`; `{id}` in a lookup). Anything
/// else between braces is text, so JSON's own braces need no escaping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    pieces: Vec<Piece>,
}

impl Template {
    /// `allowed`: the slots this template may use.
    pub fn parse(text: &str, allowed: &[Slot]) -> Result<Template, String> {
        if text.len() > MAX_TEXT {
            return Err(format!("at most {MAX_TEXT} bytes"));
        }
        let mut pieces = Vec::new();
        let mut literal = String::new();
        let mut rest = text;
        while let Some(open) = rest.find('{') {
            let after = &rest[open + 1..];
            let name_len = after
                .find(|c: char| !(c.is_ascii_lowercase() || c == '_'))
                .unwrap_or(after.len());
            let slot = (after[name_len..].starts_with('}') && name_len > 0)
                .then(|| Slot::ALL.iter().find(|(n, _)| *n == &after[..name_len]))
                .flatten();
            match slot {
                Some((_, slot)) => {
                    if !allowed.contains(slot) {
                        let names: Vec<String> = allowed
                            .iter()
                            .map(|s| format!("{{{}}}", s.name()))
                            .collect();
                        return Err(format!(
                            "`{{{}}}` cannot be used here (this template takes {})",
                            slot.name(),
                            names.join(", ")
                        ));
                    }
                    literal.push_str(&rest[..open]);
                    if !literal.is_empty() {
                        pieces.push(Piece::Text(std::mem::take(&mut literal)));
                    }
                    pieces.push(Piece::Slot(*slot));
                    rest = &after[name_len + 1..];
                }
                None => {
                    literal.push_str(&rest[..=open]);
                    rest = after;
                }
            }
        }
        literal.push_str(rest);
        if !literal.is_empty() {
            pieces.push(Piece::Text(literal));
        }
        Ok(Template { pieces })
    }

    /// A template of a built-in profile. They are written correctly (a test resolves every
    /// profile); were one not, it would be empty rather than panic.
    pub(super) fn builtin(text: &str, allowed: &[Slot]) -> Template {
        Template::parse(text, allowed).unwrap_or(Template { pieces: Vec::new() })
    }

    pub fn pieces(&self) -> &[Piece] {
        &self.pieces
    }

    /// The template as written.
    pub fn text(&self) -> String {
        self.fill(|s| format!("{{{}}}", s.name()))
    }

    pub fn uses(&self, slot: Slot) -> bool {
        self.pieces.contains(&Piece::Slot(slot))
    }

    /// The template with every slot filled by `value`.
    pub fn fill(&self, value: impl Fn(Slot) -> String) -> String {
        let mut out = String::new();
        for p in &self.pieces {
            match p {
                Piece::Text(t) => out.push_str(t),
                Piece::Slot(s) => out.push_str(&value(*s)),
            }
        }
        out
    }
}

/// An HTTP method a contract may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Post,
    Put,
    Patch,
}

impl Method {
    pub(super) fn parse(text: &str) -> Result<Method, String> {
        match text {
            "GET" => Ok(Method::Get),
            "POST" => Ok(Method::Post),
            "PUT" => Ok(Method::Put),
            "PATCH" => Ok(Method::Patch),
            other => Err(format!(
                "`{}`: GET, POST, PUT or PATCH",
                crate::scenario::bounded(other)
            )),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Patch => "PATCH",
        }
    }
}

/// A method and a path (after the endpoint's prefix; `?query` allowed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub method: Method,
    pub path: Template,
}

impl Route {
    /// `"GET /v1/purchases?idempotencyKey={key}"`.
    pub(super) fn parse(text: &str, allowed: &[Slot]) -> Result<Route, String> {
        let (method, path) = text
            .split_once(' ')
            .ok_or_else(|| format!("`{}`: say `METHOD /path`", crate::scenario::bounded(text)))?;
        Ok(Route {
            method: Method::parse(method)?,
            path: path_template(path.trim(), allowed)?,
        })
    }
}

/// A request path: starts with `/`, no spaces, placeholders from `allowed`.
pub(super) fn path_template(path: &str, allowed: &[Slot]) -> Result<Template, String> {
    if !path.starts_with('/') || path.contains(char::is_whitespace) {
        return Err(format!(
            "`{}`: a path starts with `/` and has no spaces",
            crate::scenario::bounded(path)
        ));
    }
    Template::parse(path, allowed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::contract::{BODY_SLOTS, LOOKUP_SLOTS};

    #[test]
    fn templates_keep_json_braces_and_fill_placeholders() {
        let t =
            Template::parse("{\"a\":{quantity},\"b\":\"{key}\",\"c\":{}}", BODY_SLOTS).expect("ok");
        assert_eq!(
            t.fill(|s| if s == Slot::Key {
                "k".into()
            } else {
                "3".into()
            }),
            "{\"a\":3,\"b\":\"k\",\"c\":{}}"
        );
        assert!(t.uses(Slot::Key) && !t.uses(Slot::Item));
        // An unknown name is text, not a placeholder.
        let t = Template::parse("/x/{other}", LOOKUP_SLOTS).expect("ok");
        assert_eq!(t.pieces(), [Piece::Text("/x/{other}".into())]);
    }
}
