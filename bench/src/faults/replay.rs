//! Replay twice: every read model rebuilt from the log into fresh files, twice.

use std::path::Path;

use anyhow::Result;
use serde_json::json;

use super::load::sends_under_kills;
use super::{Profile, Row};

/// Some traffic, then every read model rebuilt twice from the log into fresh files: both
/// rebuilds match the live store (`--verify`) and each other.
pub async fn replay_twice(bin: &Path, work: &Path, p: &Profile) -> Result<Row> {
    let row = sends_under_kills(bin, &work.join("replay-load"), p, 0, 3.0).await?;
    let data = work.join("replay-load").join("baseline-load").join("data");
    let mut sums = Vec::new();
    let mut wrong = Vec::new();
    for store in ["history", "analytics", "notifications"] {
        let mut mine = Vec::new();
        for round in 0..2 {
            let into = work.join(format!("replay-{store}-{round}.db"));
            let _ = std::fs::remove_file(&into);
            let out = tokio::process::Command::new(bin)
                .arg("--data-dir")
                .arg(&data)
                .args(["replay", "--store", store, "--verify", "--into"])
                .arg(&into)
                .env("RUST_LOG", "warn")
                .output()
                .await?;
            let stdout = String::from_utf8_lossy(&out.stdout).to_string();
            let sum = stdout
                .lines()
                .find(|l| l.starts_with("checksum ") && l.contains(&*into.to_string_lossy()))
                .and_then(|l| l.split("sha256=").nth(1))
                .unwrap_or_default()
                .to_string();
            if !out.status.success() || !stdout.contains("verify: match") {
                wrong.push(format!(
                    "{store} round {round}: {}",
                    stdout.lines().last().unwrap_or_default()
                ));
            }
            mine.push(sum);
        }
        if mine[0].is_empty() || mine[0] != mine[1] {
            wrong.push(format!("{store}: the two rebuilds differ"));
        }
        sums.push(json!({"store": store, "sha256": mine}));
    }
    Ok(Row {
        scenario: "replay twice".into(),
        load: row.load.clone(),
        faults: "history, analytics and notifications each rebuilt twice from the log".into(),
        lost: row.lost,
        duplicated: row.duplicated,
        recovery: "–".into(),
        passed: wrong.is_empty() && row.passed,
        notes: if wrong.is_empty() {
            "both rebuilds identical to each other and to the live stores".into()
        } else {
            wrong.join("; ")
        },
        detail: json!({"checksums": sums}),
    })
}
