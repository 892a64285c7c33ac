//! The ledger as Elasticsearch `_bulk` NDJSON, so an operator loads it into
//! Elasticsearch or OpenSearch as is (`curl -H 'content-type:
//! application/x-ndjson' --data-binary @ledger.ndjson …/_bulk`).
//!
//! Two lines per entry: the action (`index`, the entry's `seq` as `_id`, so
//! loading the same export twice changes nothing) and the document, with ECS
//! field names where ECS has them (`@timestamp`, `event.*`, `service.name`,
//! `ecs.version`) and the ledger's own under `emporium.ledger.*`.

use std::io::{self, Write};

use serde_json::json;

use crate::ledger::Entry;

/// The ECS version the documents follow.
pub const ECS_VERSION: &str = "8.11.0";

/// The two lines of one entry.
pub fn lines(entry: &Entry, index: &str) -> [serde_json::Value; 2] {
    let at = chrono::DateTime::from_timestamp_millis(entry.at)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let action = json!({"index": {"_index": index, "_id": entry.seq.to_string()}});
    let document = json!({
        "@timestamp": at,
        "ecs": {"version": ECS_VERSION},
        "service": {"name": "payments"},
        "event": {
            "kind": "event",
            "dataset": "emporium.ledger",
            "action": entry.movement.as_str(),
            "sequence": entry.seq,
        },
        "emporium": {"ledger": {
            "transaction_id": entry.transaction_id,
            "intent_id": entry.intent_id,
            "account": entry.account.as_str(),
            "amount": entry.amount,
            "currency": entry.currency,
            "prev_hash": entry.prev_hash,
            "hash": entry.hash,
        }},
    });
    [action, document]
}

/// Writes every entry as `_bulk` NDJSON (each line ends with `\n`, the last
/// one too, as `_bulk` requires); returns how many entries were written.
pub fn write_bulk(entries: &[Entry], index: &str, out: &mut impl Write) -> io::Result<usize> {
    for entry in entries {
        for line in lines(entry, index) {
            serde_json::to_writer(&mut *out, &line)?;
            out.write_all(b"\n")?;
        }
    }
    out.flush()?;
    Ok(entries.len())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use uuid::Uuid;

    use super::*;
    use crate::ledger::{GENESIS, Movement, Transfer, post};

    #[test]
    fn each_entry_is_an_action_line_and_a_document_line() {
        let intent = Uuid::now_v7();
        let t = Transfer::new(intent, Movement::Authorize, 1250, "EUR");
        let entries = post(&t, &[], (0, GENESIS), 1_764_410_400_123).unwrap();
        let mut out = Vec::new();
        assert_eq!(
            write_bulk(&entries, "emporium-ledger", &mut out).unwrap(),
            2
        );
        let text = String::from_utf8(out).unwrap();
        assert!(text.ends_with('\n'));
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 4);
        for (n, entry) in entries.iter().enumerate() {
            let (action, doc) = (&lines[2 * n], &lines[2 * n + 1]);
            assert_eq!(
                action,
                &json!({"index": {"_index": "emporium-ledger", "_id": entry.seq.to_string()}})
            );
            assert_eq!(doc["@timestamp"], "2025-11-29T10:00:00.123Z");
            assert_eq!(doc["ecs"]["version"], ECS_VERSION);
            assert_eq!(doc["service"]["name"], "payments");
            assert_eq!(doc["event"]["dataset"], "emporium.ledger");
            assert_eq!(doc["event"]["action"], "authorize");
            assert_eq!(doc["event"]["sequence"], entry.seq);
            let ledger = &doc["emporium"]["ledger"];
            assert_eq!(ledger["intent_id"], intent.to_string());
            assert_eq!(ledger["transaction_id"], entry.transaction_id.to_string());
            assert_eq!(ledger["account"], entry.account.as_str());
            assert_eq!(ledger["amount"], entry.amount);
            assert_eq!(ledger["currency"], "EUR");
            assert_eq!(ledger["prev_hash"], entry.prev_hash);
            assert_eq!(ledger["hash"], entry.hash);
        }
        // The entries of one transfer: holds gain what the customer gives.
        assert_eq!(lines[1]["emporium"]["ledger"]["amount"], -1250);
        assert_eq!(lines[3]["emporium"]["ledger"]["account"], "holds");
    }
}
