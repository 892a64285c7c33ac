//! docs/operations.md's one-process-per-service walkthrough, run as written
//! (the shell block between `<!-- walkthrough -->` and `<!-- end
//! walkthrough -->`) against this machine's PostgreSQL and RabbitMQ.

use std::path::Path;
use std::process::{Command, Stdio};

use crate::TempDir;

/// The guide's shell block.
fn walkthrough() -> String {
    let doc = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/operations.md"),
    )
    .unwrap();
    let (_, rest) = doc.split_once("<!-- walkthrough -->").unwrap();
    let (block, _) = rest.split_once("<!-- end walkthrough -->").unwrap();
    let block = block.trim();
    let block = block.strip_prefix("```sh").unwrap();
    block.strip_suffix("```").unwrap().to_owned()
}

/// The guide's processes (every process working in its directory),
/// stopped one by one, by their own ids, when dropped.
struct Started(std::path::PathBuf);

impl Drop for Started {
    fn drop(&mut self) {
        let Ok(entries) = std::fs::read_dir("/proc") else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(pid) = name.to_str().and_then(|n| n.parse::<u32>().ok()) else {
                continue;
            };
            let here = std::fs::read_link(entry.path().join("cwd")).ok();
            if pid > 1 && here.is_some_and(|cwd| cwd.starts_with(&self.0)) {
                let _ = Command::new("kill").arg(pid.to_string()).status();
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_one_process_per_service_guide_runs_as_written() {
    let postgres = Command::new("pg_isready")
        .args(["-h", "127.0.0.1", "-q"])
        .status()
        .is_ok_and(|s| s.success());
    if !postgres {
        assert!(std::env::var("CI").is_err(), "CI needs PostgreSQL");
        eprintln!("skipped: no PostgreSQL on 127.0.0.1");
        return;
    }
    // The guide creates its databases; a run before this one left them.
    for s in ["accounts", "catalog", "payments", "orders", "cards"] {
        let _ = Command::new("dropdb")
            .args([
                "-h",
                "127.0.0.1",
                "-U",
                "postgres",
                "--if-exists",
                "--force",
            ])
            .arg(format!("shop_{s}"))
            .status();
    }
    let dir = TempDir::new("walkthrough");
    let binary = Path::new(env!("CARGO_BIN_EXE_emporium"));
    let path = format!(
        "{}:{}",
        binary.parent().unwrap().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut bash = Command::new("bash");
    bash.args(["-euo", "pipefail", "-c", &walkthrough()])
        .current_dir(&dir.0)
        .env("PATH", path)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = bash.spawn().unwrap();
    let started = Started(dir.0.canonicalize().unwrap());
    let out = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let logs = |name: &str| {
        std::fs::read_to_string(dir.0.join("shop").join(format!("{name}.log"))).unwrap_or_default()
    };
    assert!(
        out.status.success(),
        "the guide failed:\n{stdout}\n{stderr}\n{}",
        logs("gateway")
    );
    // Ready, and the seeded catalog answers through the gateway.
    assert!(stdout.contains("\"items\":[{"), "{stdout}");
    // Nothing that reads like an error was printed on the way.
    for line in stdout.lines().chain(stderr.lines()) {
        assert!(!line.contains("already exists"), "{line}");
        assert!(!line.contains("NOTICE"), "{line}");
    }
    for service in [
        "accounts", "catalog", "cards", "payments", "orders", "gateway",
    ] {
        let text = logs(service);
        assert!(text.contains("listening"), "{service}: {text}");
        assert!(
            !text.contains("\"log.level\":\"ERROR\""),
            "{service}: {text}"
        );
    }
    drop(started);
}
