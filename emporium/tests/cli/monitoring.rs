//! The monitoring the repository ships, against a real Prometheus (Debian's
//! `prometheus` package) scraping `emporium up` after a short checkout
//! load: every rule in `deploy/prometheus` evaluates without error, every
//! Grafana panel's query answers, and the core ones have data.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::{TempDir, checkout_load, up_on, within};

/// The repository's root.
fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A Prometheus server, stopped when dropped.
struct Prometheus {
    child: Child,
    base: String,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port free now on 127.0.0.1.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Prometheus scraping `target` (host:port, HTTPS with `ca`) every second
/// and evaluating the shop's rules every second.
fn prometheus(dir: &Path, target: &str, ca: &Path) -> Option<Prometheus> {
    let binary = ["/usr/bin/prometheus", "/usr/local/bin/prometheus"]
        .into_iter()
        .find(|p| Path::new(p).exists())?;
    let rules = repo().join("deploy/prometheus/emporium-rules.yml");
    let config = format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
         rule_files:\n  - {}\n\
         scrape_configs:\n  - job_name: emporium\n    scheme: https\n    tls_config:\n      ca_file: {}\n    \
         static_configs:\n      - targets: ['{target}']\n",
        rules.canonicalize().unwrap().display(),
        ca.display(),
    );
    let file = dir.join("prometheus.yml");
    std::fs::write(&file, config).unwrap();
    let port = free_port();
    let child = Command::new(binary)
        .arg(format!("--config.file={}", file.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("tsdb").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    Some(Prometheus {
        child,
        base: format!("http://127.0.0.1:{port}"),
    })
}

/// `GET /api/v1/query?query=…`: the result list, or the error Prometheus gave.
async fn query(http: &reqwest::Client, base: &str, expr: &str) -> Result<Vec<Value>, String> {
    let url = reqwest::Url::parse_with_params(&format!("{base}/api/v1/query"), [("query", expr)])
        .map_err(|e| e.to_string())?;
    let r = http.get(url).send().await.map_err(|e| e.to_string())?;
    let body: Value = r.json().await.map_err(|e| e.to_string())?;
    if body["status"] != "success" {
        return Err(body.to_string());
    }
    Ok(body["data"]["result"]
        .as_array()
        .cloned()
        .unwrap_or_default())
}

/// Every panel query of every dashboard under deploy/grafana/dashboards.
fn panel_queries() -> Vec<(String, String)> {
    let dir = repo().join("deploy/grafana/dashboards");
    let mut queries = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let dashboard: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap())
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        for panel in dashboard["panels"].as_array().unwrap() {
            for target in panel["targets"].as_array().unwrap() {
                let expr = target["expr"].as_str().unwrap().to_owned();
                queries.push((format!("{name}: {}", panel["title"]), expr));
            }
        }
    }
    queries
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_evaluates_every_rule_and_dashboard_query_against_up() {
    let data = TempDir::new("monitoring");
    let dir = data.0.to_str().unwrap();
    let mut up = up_on(dir);
    let metrics = up.wait_for(
        |l| l.trim_start().starts_with("metrics:"),
        Duration::from_secs(60),
    );
    // "metrics:   https://127.0.0.1:PORT/metrics  (operations port)"
    let url = metrics.split_whitespace().nth(1).unwrap().to_owned();
    let target = url
        .trim_start_matches("https://")
        .trim_end_matches("/metrics")
        .to_owned();
    let gateway = up.listening_url("Gateway");
    let ca = data.0.join("certs").join("ca.pem");
    let Some(server) = prometheus(&data.0, &target, &ca) else {
        assert!(
            std::env::var("CI").is_err(),
            "CI needs Prometheus (Debian's prometheus package)"
        );
        eprintln!("skipped: no prometheus binary (apt-get install prometheus)");
        return;
    };
    let http = reqwest::Client::new();
    let scraping = within(Duration::from_secs(30), || async {
        matches!(query(&http, &server.base, "up{job=\"emporium\"} == 1").await, Ok(r) if !r.is_empty())
    })
    .await;
    assert!(scraping, "Prometheus never scraped {target}");

    // Orders while Prometheus watches.
    let mut load = checkout_load(&gateway, &ca, 10, 3);
    assert!(load.wait_exit(Duration::from_secs(60)));

    // The core series have data once a few scrapes and rule evaluations saw
    // the orders: orders per second, the error ratio, the checkout's p99.
    let core = [
        "shop:orders_placed:rate5m > 0",
        "service:http_server_errors:ratio_rate5m{service=\"orders\"}",
        "service:http_request_duration_seconds:p99_5m{service=\"orders\"} > 0",
        "shop:orders_status_changes:rate5m{status=\"confirmed\"} > 0",
    ];
    for expr in core {
        let has_data = within(Duration::from_secs(30), || async {
            matches!(query(&http, &server.base, expr).await, Ok(r) if !r.is_empty())
        })
        .await;
        assert!(has_data, "no data for {expr}");
    }
    // Every rule was evaluated, and none failed.
    let r: Value = http
        .get(format!("{}/api/v1/rules", server.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut rules = 0;
    for group in r["data"]["groups"].as_array().unwrap() {
        for rule in group["rules"].as_array().unwrap() {
            rules += 1;
            assert_eq!(rule["health"], "ok", "{rule}");
        }
    }
    assert!(rules >= 14, "{rules} rules loaded");
    // Every panel's query answers without an error.
    let panels = panel_queries();
    assert!(panels.len() >= 30, "{} panel queries", panels.len());
    for (panel, expr) in panels {
        if let Err(e) = query(&http, &server.base, &expr).await {
            panic!("{panel}: {expr}: {e}");
        }
    }
    drop(server);
    assert!(up.terminate(Duration::from_secs(30)));
}
