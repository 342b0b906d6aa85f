//! Turning a byte offset in a TOML document into `line:column` and a dotted field name.

/// 1-based line and column of byte `offset` in `text`.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let column = before.rfind('\n').map_or(offset, |nl| offset - nl - 1) + 1;
    (line, column)
}

/// The dotted name of the key at or just before `offset`: the enclosing `[table]`
/// header, the key of the line, and the key inside an inline table if the offset is there.
pub fn field_at(text: &str, offset: usize) -> String {
    let offset = offset.min(text.len());
    let line_start = text[..offset].rfind('\n').map_or(0, |i| i + 1);
    let line_end = text[offset..].find('\n').map_or(text.len(), |i| offset + i);
    let line = &text[line_start..line_end];
    let col = offset - line_start;

    let mut parts: Vec<String> = Vec::new();
    if let Some(header) = table_header(text, line_start) {
        parts.push(header);
    }
    let trimmed = line.trim_start();
    if trimmed.starts_with('[') {
        // The error is on a header itself.
        return header_name(trimmed).unwrap_or_default();
    }
    // The line's own key.
    if let Some(eq) = line.find('=') {
        let key = line[..eq].trim();
        if !key.is_empty() {
            parts.push(key.to_string());
        }
        // Inside an inline table: the nearest `key =` (or bare key) before the offset.
        if col > eq {
            let inner = &line[eq + 1..];
            let inner_col = col - eq - 1;
            if let Some(k) = inline_key(inner, inner_col) {
                parts.push(k);
            }
        } else if col < eq {
            parts.pop();
            parts.push(word_at(line, col));
        }
    } else {
        parts.push(word_at(line, col));
    }
    parts.retain(|p| !p.is_empty());
    parts.join(".")
}

/// The `[table]` the text before `before` is in; for the i-th `[[table]]`, `table[i]`.
fn table_header(text: &str, before: usize) -> Option<String> {
    let headers: Vec<String> = text[..before]
        .lines()
        .filter_map(|l| header_name(l.trim_start()))
        .collect();
    let last = headers.last()?;
    Some(match last.strip_suffix("[]") {
        Some(array) => {
            let index = headers.iter().filter(|h| *h == last).count() - 1;
            format!("{array}[{index}]")
        }
        None => last.clone(),
    })
}

fn header_name(line: &str) -> Option<String> {
    let rest = line.strip_prefix('[')?;
    let (rest, array) = match rest.strip_prefix('[') {
        Some(r) => (r, true),
        None => (rest, false),
    };
    let end = rest.find(']')?;
    let name = rest[..end].trim().to_string();
    Some(if array { format!("{name}[]") } else { name })
}

/// The dotted key at `col` inside an inline table (`{ a = 1, tls = { ca_file = … } }`):
/// the keys of the nested tables the offset is in, then the key it sits on, or else the
/// nearest `key =` before it.
fn inline_key(inner: &str, col: usize) -> Option<String> {
    if !inner.trim_start().starts_with('{') {
        return None;
    }
    let upto = &inner[..col.min(inner.len())];
    // Keys of the inline tables opened (and not closed) before the offset, the outermost
    // (the line's own table) excluded.
    let mut nested: Vec<String> = Vec::new();
    let mut last_key: Option<String> = None;
    let (mut depth, mut in_string, mut word, mut in_word) = (0usize, false, String::new(), false);
    for c in upto.chars() {
        if in_string {
            in_string = c != '"';
            continue;
        }
        let key_char = is_key_char(c);
        if key_char && !in_word {
            word.clear();
        }
        in_word = key_char;
        match c {
            '"' => in_string = true,
            '{' => {
                depth += 1;
                if depth > 1 {
                    nested.push(last_key.take().unwrap_or_default());
                }
                last_key = None;
            }
            '}' => {
                if depth > 1 {
                    nested.pop();
                }
                depth = depth.saturating_sub(1);
                last_key = None;
            }
            '=' => last_key = Some(word.clone()),
            c if key_char => word.push(c),
            _ => {}
        }
    }
    // The key the offset sits on, if it sits on one (unknown field).
    let at = word_at(inner, col);
    let after_at = inner[col.min(inner.len())..].trim_start_matches(|c: char| is_key_char(c));
    let key = if !at.is_empty() && after_at.trim_start().starts_with('=') {
        at
    } else {
        last_key.filter(|k| !k.is_empty())?
    };
    nested.push(key);
    nested.retain(|k| !k.is_empty());
    Some(nested.join("."))
}

fn is_key_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '-'
}

fn word_at(line: &str, col: usize) -> String {
    let col = col.min(line.len());
    let start = line[..col]
        .rfind(|c: char| !is_key_char(c))
        .map_or(0, |i| i + 1);
    let end = line[col..]
        .find(|c: char| !is_key_char(c))
        .map_or(line.len(), |i| col + i);
    line[start..end].to_string()
}

/// The byte offset a semantic error should point at.
pub fn find(text: &str, locator: super::validate::Locator) -> usize {
    use super::validate::Locator;
    match locator {
        Locator::At(offset) => offset.min(text.len()),
        Locator::Top(key) => find_line(text, 0, text.len(), |l| {
            key_of(l) == Some(key)
                || header_name(l).as_deref() == Some(key)
                || header_name(l).as_deref() == Some(&format!("{key}[]"))
        })
        .unwrap_or(0),
        Locator::Key(table, key) => {
            // `[table]` then `key = …` below it, or `table = { key = … }` on one line.
            if let Some(h) = find_line(text, 0, text.len(), |l| {
                header_name(l).as_deref() == Some(table)
            }) {
                let end = next_header(text, h);
                return find_line(text, h, end, |l| key_of(l) == Some(key)).unwrap_or(h);
            }
            match find_line(text, 0, text.len(), |l| key_of(l) == Some(table)) {
                Some(line) => {
                    let line_end = text[line..].find('\n').map_or(text.len(), |i| line + i);
                    text[line..line_end]
                        .find(&format!("{key} "))
                        .or_else(|| text[line..line_end].find(&format!("{key}=")))
                        .map_or(line, |i| line + i)
                }
                None => 0,
            }
        }
        Locator::Element(table, index, key) => {
            let header = format!("{table}[]");
            let mut from = 0;
            let mut seen = 0;
            while let Some(h) = find_line(text, from, text.len(), |l| {
                header_name(l).as_deref() == Some(header.as_str())
            }) {
                if seen == index {
                    let end = next_header(text, h);
                    return find_line(text, h, end, |l| key_of(l) == Some(key)).unwrap_or(h);
                }
                seen += 1;
                from = h + 1;
            }
            find_line(text, 0, text.len(), |l| key_of(l) == Some(table)).unwrap_or(0)
        }
    }
}

fn key_of(line: &str) -> Option<&str> {
    let eq = line.find('=')?;
    Some(line[..eq].trim())
}

/// Offset of the first line in `[from, to)` (starting at a line start) that satisfies `pred`.
fn find_line(text: &str, from: usize, to: usize, pred: impl Fn(&str) -> bool) -> Option<usize> {
    let mut start = text[..from].rfind('\n').map_or(0, |i| i + 1);
    if start < from {
        // `from` is inside a line: begin at the next one.
        start = text[from..].find('\n').map_or(text.len(), |i| from + i + 1);
    }
    while start < to {
        let end = text[start..].find('\n').map_or(text.len(), |i| start + i);
        let line = &text[start..end];
        let trimmed = line.trim_start();
        if !trimmed.starts_with('#') && pred(trimmed) {
            return Some(start + (line.len() - trimmed.len()));
        }
        start = end + 1;
    }
    None
}

/// Offset just past the table that starts at `header` (the next header or the end).
fn next_header(text: &str, header: usize) -> usize {
    find_line(text, header + 1, text.len(), |l| l.starts_with('[')).unwrap_or(text.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_and_column_are_one_based() {
        let t = "a = 1\nbb = 2\n";
        assert_eq!(line_col(t, 0), (1, 1));
        assert_eq!(line_col(t, 6), (2, 1));
        assert_eq!(line_col(t, 11), (2, 6));
    }

    #[test]
    fn names_fields_in_tables_and_inline_tables() {
        let t = "[retry]\ntimeout_ms = \"x\"\n";
        assert_eq!(field_at(t, t.find("\"x\"").unwrap()), "retry.timeout_ms");
        let t = "agents = { count = 5, in_flght = 3 }\n";
        assert_eq!(field_at(t, t.find("in_flght").unwrap()), "agents.in_flght");
        let t = "agents = { count = \"5\" }\n";
        assert_eq!(field_at(t, t.find("\"5\"").unwrap()), "agents.count");
        // Nested inline tables name every level, and a closed one is left again.
        let t = "target = { kind = \"http\", tls = { ca_file = \"a{b}\", cafile = 1 } }\n";
        assert_eq!(field_at(t, t.find("cafile").unwrap()), "target.tls.cafile");
        let t = "target = { tls = { insecure = \"yes\" } }\n";
        assert_eq!(
            field_at(t, t.find("\"yes\"").unwrap()),
            "target.tls.insecure"
        );
        let t = "target = { tls = { insecure = true }, htp = \"2\" }\n";
        assert_eq!(field_at(t, t.find("htp").unwrap()), "target.htp");
    }
}
