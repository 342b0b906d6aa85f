//! What the history keeps of an answer: a hash of its bytes with the value of the
//! contract's body replay marker masked (a replay must be the original again, byte for
//! byte, but for that value), and, for an answer that broke the contract, which way it
//! did (`Violation`).

use serde::{Deserialize, Serialize};

/// A 64-bit hash of an answer's bytes with the value of its top-level `marker` field
/// (`"replayed"` in ZeroRace's contract) read as `false`, wherever that field stands and
/// however the JSON is spaced, so a replay hashes like its original exactly when it is
/// byte-identical but for that value. Without a marker, the bytes as they are. Never 0.
pub fn answer_hash(body: &[u8], marker: Option<&str>) -> u64 {
    match marker.and_then(|m| marker_span(body, m)) {
        Some(span) => hash_parts(&[&body[..span.start], b"false", &body[span.end..]]),
        None => hash_parts(&[body]),
    }
}

/// `answer_hash` with the byte ranges `cut` (sorted, apart, within `body`: the values of
/// fields the contract says differ from answer to answer) left out. Without `cut`, the
/// same hash as `answer_hash`.
pub fn answer_hash_cut(body: &[u8], marker: Option<&str>, cut: &[std::ops::Range<usize>]) -> u64 {
    if cut.is_empty() {
        return answer_hash(body, marker);
    }
    debug_assert!(cut.windows(2).all(|w| w[0].end <= w[1].start));
    let mut kept: Vec<u8> = Vec::with_capacity(body.len());
    let mut at = 0;
    for range in cut {
        if range.start < at || range.end > body.len() {
            continue;
        }
        kept.extend_from_slice(&body[at..range.start]);
        at = range.end;
    }
    kept.extend_from_slice(&body[at..]);
    answer_hash(&kept, marker)
}

/// Where `values` (raw JSON values read from `body`) stand in `body`, in order; a value
/// read from a copy of the body (an answer whose keys needed unescaping) is not there, and
/// is left out.
pub fn value_spans<'a>(
    body: &[u8],
    values: impl Iterator<Item = &'a serde_json::value::RawValue>,
) -> Vec<std::ops::Range<usize>> {
    let start = body.as_ptr() as usize;
    let mut spans: Vec<std::ops::Range<usize>> = values
        .filter_map(|raw| {
            let at = (raw.get().as_ptr() as usize).checked_sub(start)?;
            let end = at.checked_add(raw.get().len())?;
            (end <= body.len()).then_some(at..end)
        })
        .collect();
    spans.sort_by_key(|r| r.start);
    spans
}

/// `answer_hash` of a stored answer with the contract's `volatile` top-level fields left
/// out, as `answer_hash_cut` hashed the answer when it came (the body read once more here:
/// only for a contract that names volatile fields).
pub fn stored_answer_hash(body: &[u8], marker: Option<&str>, volatile: &[String]) -> u64 {
    if volatile.is_empty() {
        return answer_hash(body, marker);
    }
    type Fields<'a> = std::collections::BTreeMap<&'a str, &'a serde_json::value::RawValue>;
    let spans = match serde_json::from_slice::<Fields<'_>>(body) {
        Ok(fields) => value_spans(
            body,
            volatile
                .iter()
                .filter_map(|name| fields.get(name.as_str()).copied()),
        ),
        Err(_) => Vec::new(),
    };
    answer_hash_cut(body, marker, &spans)
}

/// The byte range of the boolean value of the top-level key `marker`.
/// Answers from swarm's own kernel end in `"replayed":…}`: that case costs no scan.
fn marker_span(body: &[u8], marker: &str) -> Option<std::ops::Range<usize>> {
    if marker == "replayed" {
        for (tail, value) in [
            (&b"\"replayed\":true}"[..], 4),
            (&b"\"replayed\":false}"[..], 5),
        ] {
            if body.ends_with(tail) {
                let end = body.len() - 1;
                return Some(end - value..end);
            }
        }
    }
    // A small scanner: strings are skipped whole, depth is tracked, and only a key at
    // depth 1 counts.
    let mut depth = 0usize;
    let mut i = 0;
    while i < body.len() {
        match body[i] {
            b'{' | b'[' => depth += 1,
            b'}' | b']' => depth = depth.saturating_sub(1),
            b'"' => {
                let start = i + 1;
                i += 1;
                while i < body.len() && body[i] != b'"' {
                    i += if body[i] == b'\\' { 2 } else { 1 };
                }
                let is_key = depth == 1 && &body[start..i.min(body.len())] == marker.as_bytes();
                if is_key {
                    let mut j = i + 1;
                    while j < body.len() && body[j].is_ascii_whitespace() {
                        j += 1;
                    }
                    if body.get(j) == Some(&b':') {
                        j += 1;
                        while j < body.len() && body[j].is_ascii_whitespace() {
                            j += 1;
                        }
                        for word in [&b"true"[..], &b"false"[..]] {
                            if body[j..].starts_with(word) {
                                return Some(j..j + word.len());
                            }
                        }
                    }
                }
            }
            _ => {}
        }
        i += 1;
    }
    None
}

/// One hash over the concatenation of `parts`. Never 0.
fn hash_parts(parts: &[&[u8]]) -> u64 {
    let mut h = StreamHash::default();
    for part in parts {
        h.write(part);
    }
    h.finish()
}

/// A hash of a byte stream fed in pieces, eight bytes at a time (it runs once or twice per
/// request); murmur3's finaliser at the end. The pieces' boundaries do not matter.
#[derive(Debug, Clone)]
pub struct StreamHash {
    h: u64,
    carry: [u8; 8],
    filled: usize,
    len: usize,
}

impl Default for StreamHash {
    fn default() -> Self {
        StreamHash {
            h: 0xcbf2_9ce4_8422_2325,
            carry: [0; 8],
            filled: 0,
            len: 0,
        }
    }
}

fn mix(h: u64, word: u64) -> u64 {
    let h = (h ^ word).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    h ^ (h >> 32)
}

impl StreamHash {
    pub fn write(&mut self, mut bytes: &[u8]) {
        self.len += bytes.len();
        if self.filled > 0 {
            let take = (8 - self.filled).min(bytes.len());
            self.carry[self.filled..self.filled + take].copy_from_slice(&bytes[..take]);
            self.filled += take;
            bytes = &bytes[take..];
            if self.filled < 8 {
                return;
            }
            self.h = mix(self.h, u64::from_le_bytes(self.carry));
        }
        let whole = bytes.len() / 8 * 8;
        for w in bytes[..whole].chunks_exact(8) {
            let mut word = [0u8; 8];
            word.copy_from_slice(w);
            self.h = mix(self.h, u64::from_le_bytes(word));
        }
        let rest = &bytes[whole..];
        self.carry[..rest.len()].copy_from_slice(rest);
        self.filled = rest.len();
    }

    pub fn finish(mut self) -> u64 {
        if self.filled > 0 {
            self.carry[self.filled..].fill(0);
            self.h = mix(self.h, u64::from_le_bytes(self.carry));
        }
        let mut h = mix(self.h, self.len as u64);
        h = (h ^ (h >> 33)).wrapping_mul(0xff51_afd7_ed55_8ccd);
        h = (h ^ (h >> 33)).wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        (h ^ (h >> 33)).max(1)
    }
}

/// How an answer broke the contract (a `Code::Violation` record's `detail`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[repr(u8)]
pub enum Violation {
    /// The body is not a JSON object.
    Unparseable = 1,
    /// A required field is missing or has the wrong type or value.
    MissingField = 2,
    /// Money written as a float (`2500.0`), never rounded.
    FloatMoney = 3,
    /// The status disagrees with the outcome (201 with DECLINED, 200 with COMMITTED, …).
    StatusMismatch = 4,
    /// `amountMinor` or `currency` differ from what was asked.
    PayloadMismatch = 5,
}

impl Violation {
    pub const ALL: [Violation; 5] = [
        Violation::Unparseable,
        Violation::MissingField,
        Violation::FloatMoney,
        Violation::StatusMismatch,
        Violation::PayloadMismatch,
    ];

    /// What the check counts, in words.
    pub fn describe(self) -> &'static str {
        match self {
            Violation::Unparseable => "answers whose body is not a JSON object",
            Violation::MissingField => {
                "answers missing a required field (or with a wrong type or value)"
            }
            Violation::FloatMoney => "answers writing money as a float",
            Violation::StatusMismatch => "answers whose status disagrees with their outcome",
            Violation::PayloadMismatch => "answers naming another amount or currency than asked",
        }
    }

    /// The check's name in the `contract.*` family.
    pub fn name(self) -> &'static str {
        match self {
            Violation::Unparseable => "unparseable",
            Violation::MissingField => "missing_field",
            Violation::FloatMoney => "float_money",
            Violation::StatusMismatch => "status_mismatch",
            Violation::PayloadMismatch => "payload_mismatch",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stored_answer_hashes_like_the_answer_with_its_volatile_fields_cut() {
        let volatile = ["requestId".to_string()];
        let sent = br#"{"outcome":"COMMITTED","requestId":"r-1","n":1,"replayed":false}"#;
        let stored = br#"{"outcome":"COMMITTED","requestId":"r-977","n":1,"replayed":true}"#;
        let fields: std::collections::BTreeMap<&str, &serde_json::value::RawValue> =
            serde_json::from_slice(sent).expect("json");
        let cut = answer_hash_cut(
            sent,
            Some("replayed"),
            &value_spans(sent, fields.get("requestId").copied().into_iter()),
        );
        assert_eq!(stored_answer_hash(stored, Some("replayed"), &volatile), cut);
        assert_eq!(stored_answer_hash(sent, Some("replayed"), &volatile), cut);
        assert_ne!(
            stored_answer_hash(stored, Some("replayed"), &[]),
            cut,
            "without the contract's word, the request id counts"
        );
        let other = br#"{"outcome":"COMMITTED","requestId":"r-1","n":2,"replayed":false}"#;
        assert_ne!(stored_answer_hash(other, Some("replayed"), &volatile), cut);
    }

    #[test]
    fn replay_hashes_like_its_original() {
        let h = |s: &str| answer_hash(s.as_bytes(), Some("replayed"));
        // Every prefix length, so the masked value starts at every offset in a word.
        let mut body = String::from("{\"x\":\"");
        let mut seen = std::collections::HashSet::new();
        for i in 0..40 {
            let a = format!("{body}\",\"replayed\":false}}");
            let b = format!("{body}\",\"replayed\":true}}");
            assert_eq!(h(&a), h(&b), "{a}");
            assert!(seen.insert(h(&a)), "{a} collides");
            // One byte changed anywhere changes the hash.
            let mut c = a.clone().into_bytes();
            c[i % (a.len() - 1) + 1] ^= 1;
            let c = String::from_utf8(c).expect("ascii");
            assert_ne!(h(&a), h(&c), "{a} / {c}");
            body.push(char::from(b'a' + (i % 26) as u8));
        }
        assert_ne!(h(""), 0);
    }

    #[test]
    fn the_contracts_marker_is_masked_and_without_one_nothing_is() {
        let a = answer_hash(b"{\"again\":false,\"x\":1}", Some("again"));
        let b = answer_hash(b"{\"again\":true,\"x\":1}", Some("again"));
        assert_eq!(a, b);
        // `replayed` is data when the contract marks replays elsewhere.
        assert_ne!(
            answer_hash(b"{\"replayed\":false}", None),
            answer_hash(b"{\"replayed\":true}", None)
        );
        assert_ne!(
            answer_hash(b"{\"replayed\":false}", Some("again")),
            answer_hash(b"{\"replayed\":true}", Some("again"))
        );
    }

    #[test]
    fn replayed_is_masked_wherever_it_stands_and_however_it_is_spaced() {
        let h = |s: &str| answer_hash(s.as_bytes(), Some("replayed"));
        let first =
            "{ \"outcome\": \"DECLINED\", \"replayed\": false, \"failureCode\": \"OUT_OF_STOCK\" }";
        let again =
            "{ \"outcome\": \"DECLINED\", \"replayed\": true, \"failureCode\": \"OUT_OF_STOCK\" }";
        assert_eq!(h(first), h(again));
        // Layout is part of the bytes: another spacing is another hash.
        assert_ne!(h(first), h(&first.replace(": ", ":")));
        // Only the top-level key counts: a nested or quoted "replayed" is data.
        let nested = "{\"meta\":{\"replayed\":true},\"replayed\":false}";
        assert_eq!(marker_span(nested.as_bytes(), "replayed"), Some(37..42));
        let quoted = "{\"note\":\"\\\"replayed\\\": true\",\"replayed\":true,\"x\":1}";
        let span = marker_span(quoted.as_bytes(), "replayed").expect("found");
        assert_eq!(&quoted[span], "true");
        assert_eq!(
            marker_span(b"{\"outcome\":\"COMMITTED\"}", "replayed"),
            None
        );
        // Split across words or not, the parts hash as one stream.
        assert_eq!(
            hash_parts(&[b"abc", b"defghijkl", b"m"]),
            hash_parts(&[b"abcdefghijklm"])
        );
    }
}
