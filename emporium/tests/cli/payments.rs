//! `emporium payments ledger verify|export` on a real ledger.

use std::process::Command;

use emporium_db::testing::TestDatabase;
use emporium_payments::ledger::{Movement, Transfer};
use emporium_payments::store::{Ledger, MIGRATIONS};
use serde_json::Value;
use uuid::Uuid;

fn ledger_command(url: &str, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_emporium"))
        .args(["payments", "ledger"])
        .args(args)
        .env("EMPORIUM_DATABASE_URL", url)
        .output()
        .unwrap()
}

#[tokio::test]
async fn the_ledger_is_verified_and_exported_from_the_command_line() {
    let file = TestDatabase::sqlite();
    let db = emporium_db::open_service_db(&file.url, 2, &[MIGRATIONS])
        .await
        .unwrap();
    let ledger = Ledger::new(db.clone());
    let intent = Uuid::now_v7();
    for movement in [Movement::Authorize, Movement::Capture] {
        let t = Transfer::new(intent, movement, 4200, "EUR");
        ledger.record_now(&t, 1_700_000_000_000).await.unwrap();
    }

    let verified = ledger_command(&file.url, &["verify"]);
    assert!(verified.status.success());
    let report: Value = serde_json::from_slice(&verified.stdout).unwrap();
    assert_eq!(
        report,
        serde_json::json!({"entries": 4, "valid": true, "first_bad_entry": null})
    );

    let out = std::env::temp_dir().join(format!("ledger-{}.ndjson", Uuid::now_v7()));
    let exported = ledger_command(&file.url, &["export", "--out", out.to_str().unwrap()]);
    assert!(
        exported.status.success(),
        "{}",
        String::from_utf8_lossy(&exported.stderr)
    );
    let text = std::fs::read_to_string(&out).unwrap();
    std::fs::remove_file(&out).unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 8);
    for (n, pair) in lines.chunks(2).enumerate() {
        let seq = (n + 1).to_string();
        assert_eq!(pair[0]["index"]["_id"], seq.as_str());
        assert_eq!(pair[0]["index"]["_index"], "emporium-ledger");
        assert_eq!(pair[1]["event"]["sequence"], n + 1);
        assert_eq!(
            pair[1]["emporium"]["ledger"]["intent_id"],
            intent.to_string()
        );
    }

    // Someone lifts the trigger and changes an amount: verify names the entry.
    db.sql()
        .execute("DROP TRIGGER ledger_entries_no_update", ())
        .await
        .unwrap();
    let tamper = "UPDATE ledger_entries SET amount = 1 WHERE seq = 3";
    db.sql().execute(tamper, ()).await.unwrap();
    let broken = ledger_command(&file.url, &["verify"]);
    assert_eq!(broken.status.code(), Some(1));
    let report: Value = serde_json::from_slice(&broken.stdout).unwrap();
    assert_eq!(report["valid"], false);
    assert_eq!(report["first_bad_entry"]["seq"], 3);
}
