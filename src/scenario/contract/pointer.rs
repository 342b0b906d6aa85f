//! `Pointer`: an RFC 6901 JSON pointer (`/error/code`), parsed once, as a contract names
//! where an answer's fields stand.
//!
//! Invariants: a pointer that parses is not empty (it names a field, not the whole answer),
//! starts with `/`, is at most `MAX_TEXT` bytes, and its tokens are unescaped (`~1` is `/`,
//! `~0` is `~`, any other `~` is refused).

use super::MAX_TEXT;

/// An RFC 6901 JSON pointer (`/error/code`), parsed once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pointer {
    text: String,
    tokens: Vec<String>,
}

impl Pointer {
    /// `/`-separated tokens with `~1` and `~0`; `""` (the whole document in RFC 6901) is
    /// refused, since a contract names fields.
    pub fn parse(text: &str) -> Result<Pointer, String> {
        if text.len() > MAX_TEXT {
            return Err(format!("a JSON pointer of at most {MAX_TEXT} bytes"));
        }
        if text.is_empty() {
            return Err(
                "an empty pointer names the whole answer, not a field: give e.g. `/id`".into(),
            );
        }
        let Some(rest) = text.strip_prefix('/') else {
            return Err(format!(
                "`{}` is not a JSON pointer: it starts with `/` (e.g. `/error/code`)",
                crate::scenario::bounded(text)
            ));
        };
        let mut tokens = Vec::new();
        for raw in rest.split('/') {
            let mut token = String::with_capacity(raw.len());
            let mut chars = raw.chars();
            while let Some(c) = chars.next() {
                if c != '~' {
                    token.push(c);
                    continue;
                }
                match chars.next() {
                    Some('0') => token.push('~'),
                    Some('1') => token.push('/'),
                    _ => {
                        return Err(format!(
                            "`{}`: `~` must be followed by 0 or 1 (RFC 6901)",
                            crate::scenario::bounded(text)
                        ));
                    }
                }
            }
            tokens.push(token);
        }
        Ok(Pointer {
            text: text.to_string(),
            tokens,
        })
    }

    /// A pointer of a built-in profile. They are written correctly (a test resolves every
    /// profile); were one not, it would name nothing rather than panic.
    pub(super) fn builtin(text: &str) -> Pointer {
        Pointer::parse(text).unwrap_or_else(|_| Pointer {
            text: text.to_string(),
            tokens: Vec::new(),
        })
    }

    pub fn text(&self) -> &str {
        &self.text
    }

    pub fn tokens(&self) -> &[String] {
        &self.tokens
    }

    /// The field name when the pointer names a top-level field.
    pub fn top_level(&self) -> Option<&str> {
        match self.tokens.as_slice() {
            [one] => Some(one),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pointers_follow_rfc_6901() {
        let p = Pointer::parse("/a~1b/c~0d/0").expect("ok");
        assert_eq!(p.tokens(), ["a/b", "c~d", "0"]);
        assert!(Pointer::parse("/a~2").is_err());
        assert!(Pointer::parse("a").is_err());
        assert!(Pointer::parse("").is_err());
        assert_eq!(Pointer::parse("/x").expect("ok").top_level(), Some("x"));
    }
}
