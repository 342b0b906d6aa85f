//! One pass over every intent: the rows the history is compared with, and the two
//! per-intent state checks that need every row (the stored snapshot against its intent's
//! columns, and the intent's references to merchant, mandate and item).
//!
//! Invariant: `intent` is read once per audit, whatever the mode; everything else the
//! auditor reads is commit-sized or catalog-sized. The catalog (merchants, items,
//! mandates) is held in maps for the pass; a million intents are never held as rows,
//! only as the compact `PartIntent`s the history checks merge-join with, in parts.

use std::borrow::Cow;

use foldhash::HashMap;

use serde::Deserialize;

use super::facts::KeyId;
use super::firsts::Firsts;
use super::parts::{INTENT_LANES, IntentLane, PartIntent, Parts};
use super::source::{Row, Source};
use super::verdict::MAX_EXAMPLES;
use crate::history::{Header, stored_answer_hash};
use crate::sut::db::DbError;

/// The intents a history cannot explain by key: none of its clients would send them.
#[derive(Debug, Default)]
pub struct Foreign {
    /// How many, and the first keys by name.
    pub keys: Firsts<Box<str>>,
    /// Units the committed ones claimed, by catalog item index.
    pub claimed: HashMap<u32, i64>,
}

/// Findings of one per-intent check: how many, and the first few ids.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Found {
    pub count: u64,
    pub examples: Vec<String>,
}

impl Found {
    pub fn add(&mut self, example: impl FnOnce() -> String) {
        self.count += 1;
        if self.examples.len() < MAX_EXAMPLES {
            self.examples.push(example());
        }
    }

    /// Add what a scan of later rows found: its examples come after these.
    fn absorb(&mut self, later: Found) {
        self.count += later.count;
        let room = MAX_EXAMPLES.saturating_sub(self.examples.len());
        self.examples.extend(later.examples.into_iter().take(room));
    }
}

/// What the pass found.
#[derive(Debug, Default)]
pub struct Scan {
    /// The catalog's item ids, by the index intents name them with.
    pub items: Vec<String>,
    /// With a history: the intents of keys its clients do not use.
    pub foreign: Foreign,
    /// Stored snapshots that disagree with their intent's columns.
    pub snapshot_mismatch: Found,
    /// Intents whose merchant, mandate or item is missing, another merchant's, or in
    /// another currency.
    pub broken_reference: Found,
    /// Intents whose quantity or amount is NULL or not an integer.
    pub unreadable: Found,
    /// Items whose committed units (the intents' quantities) exceed the initial stock.
    pub committed_over_stock: Found,
    /// Committed units and intents per (non-sandbox) item, against its initial stock.
    pub sold: Vec<super::verdict::ItemSold>,
    pub intents_read: u64,
    /// Intents whose outcome is `COMMITTED`.
    pub committed: u64,
}

/// The fields of a stored snapshot the auditor compares (the contract's names).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct StoredSnapshot<'a> {
    #[serde(borrow)]
    outcome: Cow<'a, str>,
    #[serde(borrow)]
    intent_id: Cow<'a, str>,
    #[serde(default, borrow)]
    ledger_txn_id: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    chosen_bucket_id: Option<Cow<'a, str>>,
    amount_minor: i64,
    #[serde(borrow)]
    currency: Cow<'a, str>,
}

/// Whether a committed intent's stored snapshot names `bucket` as its chosen bucket.
pub fn chose_bucket(json: &str, bucket: &str) -> bool {
    serde_json::from_str::<StoredSnapshot>(json)
        .ok()
        .and_then(|s| s.chosen_bucket_id)
        .is_some_and(|b| same_id(&b, bucket))
}

/// Owner and currency of a mandate or item.
struct Owned {
    merchant: Box<str>,
    currency: Box<str>,
    /// Items only: the sandbox's rows are not part of any run's history.
    sandbox: bool,
    /// Items only: index into `Catalog::items_by_index`.
    index: u32,
}

/// An item as the committed-over-stock check and the sales figure need it.
struct ItemStock {
    id: String,
    initial_stock: i64,
    sandbox: bool,
}

/// The catalog, held for the pass (catalog-sized; keys are ids exactly as stored).
struct Catalog {
    mandates: HashMap<Box<str>, Owned>,
    items: HashMap<Box<str>, Owned>,
    items_by_index: Vec<ItemStock>,
}

async fn catalog(src: &Source) -> Result<Catalog, DbError> {
    let mut mandates = HashMap::default();
    src.for_each_row(
        "SELECT CAST(mandate_id AS TEXT), CAST(merchant_id AS TEXT), currency FROM mandate",
        |r| {
            mandates.insert(
                text(r, 0)?.into(),
                Owned {
                    merchant: text(r, 1)?.into(),
                    currency: text(r, 2)?.into(),
                    sandbox: false,
                    index: 0,
                },
            );
            Ok(())
        },
    )
    .await?;
    let mut items = HashMap::default();
    let mut items_by_index = Vec::new();
    src.for_each_row(
        "SELECT CAST(item_id AS TEXT), CAST(merchant_id AS TEXT), currency, sandbox, initial_stock FROM item",
        |r| {
            let id = text(r, 0)?;
            items.insert(
                id.into(),
                Owned {
                    merchant: text(r, 1)?.into(),
                    currency: text(r, 2)?.into(),
                    sandbox: r.int(3)? == Some(1),
                    index: items_by_index.len() as u32,
                },
            );
            items_by_index.push(ItemStock {
                id: id.to_string(),
                initial_stock: r.int(4)?.unwrap_or(0),
                sandbox: r.int(3)? == Some(1),
            });
            Ok(())
        },
    )
    .await?;
    Ok(Catalog {
        mandates,
        items,
        items_by_index,
    })
}

/// Column `i`, which the query promises is text and not NULL (NULL reads as "", which
/// no check accepts as an id).
fn text<'r>(r: &'r Row<'_>, i: usize) -> Result<&'r str, DbError> {
    Ok(r.text(i)?.unwrap_or(""))
}

fn same_id(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b)
}

/// Why a stored snapshot disagrees with its intent (`None`: it agrees).
pub fn snapshot_disagrees(
    json: &str,
    intent_id: &str,
    outcome: &str,
    amount_minor: i64,
    currency: &str,
    ledger_txn_id: Option<&str>,
) -> Option<&'static str> {
    let Ok(s) = serde_json::from_str::<StoredSnapshot>(json) else {
        return Some("unreadable");
    };
    if !same_id(&s.intent_id, intent_id) {
        Some("intentId")
    } else if s.outcome != outcome {
        Some("outcome")
    } else if s.amount_minor != amount_minor {
        Some("amountMinor")
    } else if s.currency != currency {
        Some("currency")
    } else if outcome != "COMMITTED" && s.chosen_bucket_id.is_some() {
        Some("chosenBucketId")
    } else if match (s.ledger_txn_id.as_deref(), ledger_txn_id) {
        (Some(a), Some(b)) => !same_id(a, b),
        (None, None) => false,
        _ => true,
    } {
        Some("ledgerTxnId")
    } else {
        None
    }
}

/// Why an intent's references do not hold (`None`: they do).
fn reference_broken(
    c: &Catalog,
    merchant: &str,
    mandate: &str,
    item: Option<&Owned>,
    currency: &str,
) -> Option<&'static str> {
    let Some(item) = item else {
        return Some("no such item");
    };
    let Some(mandate) = c.mandates.get(mandate) else {
        return Some("no such mandate");
    };
    // The merchant itself exists when its mandate's does (the catalog half of the
    // reference check holds every mandate's merchant to an existing row).
    if *mandate.merchant != *merchant {
        Some("mandate of another merchant")
    } else if *item.merchant != *merchant {
        Some("item of another merchant")
    } else if *mandate.currency != *currency {
        Some("mandate in another currency")
    } else if *item.currency != *currency {
        Some("item in another currency")
    } else {
        None
    }
}

fn parse_key(prefix: &str, k: &str) -> Option<KeyId> {
    let rest = k.strip_prefix(prefix)?.strip_prefix('-')?;
    let mut parts = rest.split('-');
    // Only as a client writes it (`history::key`): digits, no sign, no leading zero.
    fn number<T: std::str::FromStr>(part: Option<&str>) -> Option<T> {
        let part = part?;
        let canonical =
            part.bytes().all(|b| b.is_ascii_digit()) && (part.len() == 1 || !part.starts_with('0'));
        canonical.then(|| part.parse().ok()).flatten()
    }
    let id = (
        number(parts.next())?,
        number(parts.next())?,
        number(parts.next())?,
    );
    parts.next().is_none().then_some(id)
}

/// The columns every intent is read with; the split scan adds its rowid range.
const INTENT_COLUMNS: &str = "SELECT n.idem_key, n.outcome, n.quantity, n.amount_minor, n.snapshot, \
    CAST(n.item_id AS TEXT), CAST(n.intent_id AS TEXT), CAST(n.merchant_id AS TEXT), \
    CAST(n.mandate_id AS TEXT), n.currency, CAST(n.ledger_txn_id AS TEXT) FROM intent n";

/// What a scan of some of the intents found; several, over consecutive ranges, add up
/// (`absorb`) to what one pass over all of them finds.
struct Pass<'c> {
    catalog: &'c Catalog,
    /// The audited history's key prefix, when there is one.
    prefix: Option<&'c str>,
    /// The contract's body replay marker and volatile answer fields, masked and left out
    /// of a stored answer's hash as they were of the answer's.
    marker: Option<&'c str>,
    volatile: &'c [String],
    scan: Scan,
    committed_units: Vec<i64>,
    committed_intents: Vec<u64>,
}

impl<'c> Pass<'c> {
    fn new(
        catalog: &'c Catalog,
        prefix: Option<&'c str>,
        marker: Option<&'c str>,
        volatile: &'c [String],
    ) -> Pass<'c> {
        Pass {
            catalog,
            prefix,
            marker,
            volatile,
            scan: Scan::default(),
            committed_units: vec![0; catalog.items_by_index.len()],
            committed_intents: vec![0; catalog.items_by_index.len()],
        }
    }

    /// One intent; with a history, its key's row goes to `lane`.
    fn row(&mut self, r: &Row<'_>, lane: Option<&mut IntentLane>) -> Result<(), DbError> {
        let (catalog, scan) = (self.catalog, &mut self.scan);
        scan.intents_read += 1;
        let (outcome, snapshot, intent_id, currency) =
            (text(r, 1)?, text(r, 4)?, text(r, 6)?, text(r, 9)?);
        // NULL or not an integer: a finding (`torn_commit.unreadable_value`), then 0.
        let mut number = |i: usize, column: &str| match r.int(i) {
            Ok(Some(n)) => n,
            _ => {
                scan.unreadable
                    .add(|| format!("intent.{column}:{intent_id}"));
                0
            }
        };
        let (quantity, amount_minor) = (number(2, "quantity"), number(3, "amount_minor"));
        let committed = outcome == "COMMITTED";
        scan.committed += u64::from(committed);
        if let Some(why) = snapshot_disagrees(
            snapshot,
            intent_id,
            outcome,
            amount_minor,
            currency,
            r.text(10)?,
        ) {
            scan.snapshot_mismatch
                .add(|| format!("{intent_id} ({why})"));
        }
        let item = catalog.items.get(text(r, 5)?);
        if let Some(why) = reference_broken(catalog, text(r, 7)?, text(r, 8)?, item, currency) {
            scan.broken_reference
                .add(|| format!("intent:{intent_id} ({why})"));
        }
        if let (true, Some(item)) = (committed, item) {
            self.committed_units[item.index as usize] += quantity;
            self.committed_intents[item.index as usize] += 1;
        }
        let (Some(prefix), Some(lane)) = (self.prefix, lane) else {
            return Ok(());
        };
        if item.is_some_and(|i| i.sandbox) {
            return Ok(());
        }
        let k = text(r, 0)?;
        let item = item.map_or(u32::MAX, |i| i.index);
        match parse_key(prefix, k) {
            Some(id) => lane
                .push(&PartIntent {
                    id,
                    committed,
                    quantity,
                    amount_minor,
                    snapshot_hash: stored_answer_hash(
                        snapshot.as_bytes(),
                        self.marker,
                        self.volatile,
                    ),
                    item,
                })
                .map_err(|e| DbError::Other(format!("the audit's work files: {e}")))?,
            None => {
                scan.foreign.keys.add(k.into());
                if committed {
                    *scan.foreign.claimed.entry(item).or_default() += quantity;
                }
            }
        }
        Ok(())
    }

    /// Add what a scan of the intents after this one's found.
    fn absorb(&mut self, later: Pass<'_>) {
        let (s, l) = (&mut self.scan, later.scan);
        s.intents_read += l.intents_read;
        s.committed += l.committed;
        for (mine, theirs) in [
            (&mut s.snapshot_mismatch, l.snapshot_mismatch),
            (&mut s.broken_reference, l.broken_reference),
            (&mut s.unreadable, l.unreadable),
        ] {
            mine.absorb(theirs);
        }
        s.foreign
            .keys
            .absorb(l.foreign.keys.count(), l.foreign.keys.examples().cloned());
        for (item, units) in l.foreign.claimed {
            *s.foreign.claimed.entry(item).or_default() += units;
        }
        for (mine, theirs) in self.committed_units.iter_mut().zip(later.committed_units) {
            *mine += theirs;
        }
        for (mine, theirs) in self
            .committed_intents
            .iter_mut()
            .zip(later.committed_intents)
        {
            *mine += theirs;
        }
    }
}

/// Read every intent once. `history`: the audited history's key prefix and the parts its
/// records went to, when there is one: the non-sandbox intents of its keys go to the same
/// parts, the others are counted as foreign. A SQLite database is read by one scanner
/// per intent lane at once, each over its share of the rows; the shares add up to what
/// one pass finds, the same examples included.
pub async fn scan(src: &Source, history: Option<(&Header, &mut Parts)>) -> Result<Scan, DbError> {
    let catalog = catalog(src).await?;
    let prefix = history.as_ref().map(|(h, _)| h.key_prefix.as_str());
    let volatile = history
        .as_ref()
        .map_or(&[][..], |(h, _)| &h.volatile_fields[..]);
    // The body marker the answers were hashed with (`replayed`, the kernel's own, without
    // a history); a header marker or none masks nothing.
    let marker: Option<String> = match history.as_ref() {
        Some((h, _)) => h.body_marker(),
        None => Some("replayed".into()),
    };
    let mut lanes: Vec<Option<&mut IntentLane>> = match history {
        Some((_, parts)) => parts.lanes().iter_mut().map(Some).collect(),
        None => (0..INTENT_LANES).map(|_| None).collect(),
    };
    let mut passes: Vec<(Pass, Option<&mut IntentLane>)> = lanes
        .iter_mut()
        .map(|lane| {
            (
                Pass::new(&catalog, prefix, marker.as_deref(), volatile),
                lane.take(),
            )
        })
        .collect();
    let split = src
        .for_each_row_split(
            "intent",
            &format!("{INTENT_COLUMNS} WHERE n.rowid BETWEEN ?1 AND ?2"),
            &mut passes,
            |(pass, lane), r| pass.row(r, lane.as_deref_mut()),
        )
        .await?;
    let mut passes = passes.into_iter();
    let Some((mut pass, mut lane)) = passes.next() else {
        return Err(DbError::Other("the audit has no intent lane".into()));
    };
    if split {
        for (later, _) in passes {
            pass.absorb(later);
        }
    } else {
        src.for_each_row(INTENT_COLUMNS, |r| pass.row(r, lane.as_deref_mut()))
            .await?;
    }
    let Pass {
        mut scan,
        committed_units,
        committed_intents,
        ..
    } = pass;
    for (i, (item, units)) in catalog
        .items_by_index
        .iter()
        .zip(&committed_units)
        .enumerate()
    {
        if *units > item.initial_stock {
            scan.committed_over_stock.add(|| item.id.clone());
        }
        if !item.sandbox {
            scan.sold.push(super::verdict::ItemSold {
                item: item.id.clone(),
                units: *units,
                stock: item.initial_stock,
                purchases: committed_intents[i],
                from: "database".into(),
            });
        }
    }
    scan.items = catalog.items_by_index.into_iter().map(|i| i.id).collect();
    Ok(scan)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SNAP: &str = r#"{"outcome":"COMMITTED","intentId":"00000000-0000-4000-8000-000000000001","ledgerTxnId":"00000000-0000-4000-8000-000000000002","chosenBucketId":"00000000-0000-4000-8000-000000000003","amountMinor":2500,"currency":"USD","attempts":1,"replayed":false}"#;
    const INTENT: &str = "00000000-0000-4000-8000-000000000001";
    const LEDGER: &str = "00000000-0000-4000-8000-000000000002";

    #[test]
    fn a_snapshot_agrees_only_with_its_own_columns() {
        let upper = INTENT.to_uppercase();
        let agree = |intent, outcome, amount, currency, ledger| {
            snapshot_disagrees(SNAP, intent, outcome, amount, currency, ledger)
        };
        assert_eq!(agree(INTENT, "COMMITTED", 2500, "USD", Some(LEDGER)), None);
        // Ids compare without regard to case (a foreign engine may print them upper-case).
        assert_eq!(agree(&upper, "COMMITTED", 2500, "USD", Some(LEDGER)), None);
        assert_eq!(
            agree(LEDGER, "COMMITTED", 2500, "USD", Some(LEDGER)),
            Some("intentId")
        );
        assert_eq!(
            agree(INTENT, "DECLINED", 2500, "USD", Some(LEDGER)),
            Some("outcome")
        );
        assert_eq!(
            agree(INTENT, "COMMITTED", 2501, "USD", Some(LEDGER)),
            Some("amountMinor")
        );
        assert_eq!(
            agree(INTENT, "COMMITTED", 2500, "EUR", Some(LEDGER)),
            Some("currency")
        );
        assert_eq!(
            agree(INTENT, "COMMITTED", 2500, "USD", Some(INTENT)),
            Some("ledgerTxnId")
        );
        assert_eq!(
            agree(INTENT, "COMMITTED", 2500, "USD", None),
            Some("ledgerTxnId")
        );
        assert_eq!(
            snapshot_disagrees("{", INTENT, "COMMITTED", 2500, "USD", None),
            Some("unreadable")
        );
    }

    #[test]
    fn found_in_two_shares_adds_up_to_one_pass() {
        let mut one = Found::default();
        let (mut first, mut later) = (Found::default(), Found::default());
        for i in 0..MAX_EXAMPLES + 3 {
            one.add(|| i.to_string());
            let share = if i < 2 { &mut first } else { &mut later };
            share.add(|| i.to_string());
        }
        first.absorb(later);
        assert_eq!(first, one);
    }

    #[test]
    fn keys_parse_back_exactly() {
        assert_eq!(parse_key("s42", "s42-7-0-1"), Some((7, 0, 1)));
        assert_eq!(parse_key("s42", "s42-7-0-1-2"), None);
        assert_eq!(parse_key("s42", "s4-7-0-1"), None);
        assert_eq!(
            parse_key("s42", "s42-07-0-1"),
            None,
            "not how a client writes it"
        );
        assert_eq!(parse_key("s42", "phantom"), None);
        assert_eq!(parse_key("s42", "s42-+7-0-1"), None, "no sign");
        assert_eq!(parse_key("s42", "s42-7--1"), None);
        assert_eq!(parse_key("s42", "s42-7-0-256"), None, "a variant is a u8");
        for (agent, purchase, variant) in [(0, 0, 0), (10, 65535, 255), (u32::MAX, 1, 9)] {
            let k = crate::history::key("s42", agent, purchase, variant);
            assert_eq!(parse_key("s42", &k), Some((agent, purchase, variant)));
        }
    }
}
