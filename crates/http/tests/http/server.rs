//! The shared server through a real HTTPS connection: graceful shutdown drains
//! in-flight requests, and the standard layers answer errors as problems.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::{get, post};
use emporium_http::tls::CertDir;
use emporium_http::{AppJson, HttpServer, HttpSettings, ServiceName, Shutdown, standard_layers};

/// One set of certificates for the whole binary (tests run in parallel).
fn certs() -> CertDir {
    static CERTS: std::sync::OnceLock<CertDir> = std::sync::OnceLock::new();
    CERTS
        .get_or_init(|| {
            let dir =
                std::env::temp_dir().join(format!("emporium-http-tests-{}", std::process::id()));
            let certs = CertDir(dir);
            certs.ensure(&["svc"], &[]).unwrap();
            certs
        })
        .clone()
}

fn settings(certs: &CertDir) -> HttpSettings {
    let mut s = HttpSettings::loopback(&certs.cert("svc"), &certs.key("svc"));
    s.request_timeout_ms = 300;
    s.body_limit_bytes = 1024;
    s
}

async fn slow() -> &'static str {
    tokio::time::sleep(Duration::from_millis(150)).await;
    "done"
}

async fn echo(AppJson(v): AppJson<serde_json::Value>) -> AppJson<serde_json::Value> {
    AppJson(v)
}

async fn very_slow() -> &'static str {
    tokio::time::sleep(Duration::from_secs(5)).await;
    "too late"
}

async fn panics() -> &'static str {
    panic!("a bug")
}

fn app(settings: &HttpSettings) -> Router {
    app_signalling(settings, Arc::new(tokio::sync::Notify::new()))
}

/// As [`app`], with `/slow` signalling `entered` as its handler starts.
fn app_signalling(settings: &HttpSettings, entered: Arc<tokio::sync::Notify>) -> Router {
    let routes = Router::new()
        .route(
            "/slow",
            get(move || {
                let entered = entered.clone();
                async move {
                    entered.notify_one();
                    slow().await
                }
            }),
        )
        .route("/very-slow", get(very_slow))
        .route("/panic", get(panics))
        .route("/echo", post(echo))
        .route(
            "/cacheable",
            get(|| async { ([("cache-control", "public, max-age=60")], "cache me") }),
        );
    standard_layers(routes, ServiceName("test"), settings)
}

#[tokio::test]
async fn shutdown_drains_requests_in_flight() {
    let certs = certs();
    let settings = settings(&certs);
    let server = HttpServer::bind(&settings).unwrap();
    let url = server.base_url();
    let (trigger, shutdown) = Shutdown::new();
    let entered = Arc::new(tokio::sync::Notify::new());
    let running = tokio::spawn(
        server.run_until_stopped(app_signalling(&settings, entered.clone()), shutdown),
    );
    // Clients that trust the test CA; a fresh one per check, so no pooled
    // connection from before stands in for a new one.
    let trusting =
        || emporium_http::tls::client(Some(&certs.ca()), Duration::from_secs(5)).unwrap();
    let r = trusting()
        .get(format!("{url}/cacheable"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "served before the shutdown");
    assert_eq!(r.text().await.unwrap(), "cache me");

    let in_flight = tokio::spawn({
        let client = trusting();
        let url = url.clone();
        async move { client.get(format!("{url}/slow")).send().await }
    });
    tokio::time::timeout(Duration::from_secs(5), entered.notified())
        .await
        .expect("the slow request reached its handler");
    trigger.fire();
    let response = in_flight.await.unwrap().unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), "done");
    tokio::time::timeout(Duration::from_secs(5), running)
        .await
        .expect("the server stops once drained")
        .unwrap()
        .unwrap();
    // Stopped: the same kind of client, which got in before, cannot even connect.
    let err = trusting()
        .get(format!("{url}/cacheable"))
        .send()
        .await
        .expect_err("the stopped server answered");
    assert!(
        err.is_connect() && refused(&err),
        "not a refused connection: {err:?}"
    );
}

/// Whether a request failed because its connection was refused (so not in
/// the TLS handshake, nor later).
fn refused(err: &reqwest::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = source {
        if let Some(io) = e.downcast_ref::<std::io::Error>()
            && io.kind() == std::io::ErrorKind::ConnectionRefused
        {
            return true;
        }
        source = e.source();
    }
    // Some layers box their cause in a way `source` skips; the chain's debug form names it.
    format!("{err:?}").contains("ConnectionRefused")
}

#[tokio::test]
async fn errors_from_every_layer_are_problems() {
    let certs = certs();
    let (addr, _stop) = serve(settings(&certs)).await;
    let url = format!("https://{addr}");
    let client = emporium_http::tls::client(Some(&certs.ca()), Duration::from_secs(5)).unwrap();
    let get_at = |path: &str| client.get(format!("{url}{path}"));
    let post_echo = || client.post(format!("{url}/echo"));
    let cases = [
        (get_at("/very-slow"), 503),
        (get_at("/panic"), 500),
        (
            post_echo()
                .header("content-type", "application/json")
                .body(vec![b' '; 4096]),
            413,
        ),
        (post_echo().body("{}"), 415),
        (get_at("/echo"), 405),
        (get_at("/nothing"), 404),
    ];
    for (request, status) in cases {
        let r = request.send().await.unwrap();
        assert_eq!(r.status().as_u16(), status);
        assert_eq!(
            r.headers()["content-type"],
            "application/problem+json",
            "{status}"
        );
    }
    let r = post_echo()
        .json(&serde_json::json!({"a": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

/// Starts the test app with these settings; returns `host:port` and the
/// trigger that stops it when dropped by the caller.
async fn serve(settings: HttpSettings) -> (std::net::SocketAddr, emporium_http::ShutdownTrigger) {
    let server = HttpServer::bind(&settings).unwrap();
    let addr = server.local_addr();
    let (trigger, shutdown) = Shutdown::new();
    tokio::spawn(server.run_until_stopped(app(&settings), shutdown));
    (addr, trigger)
}

/// As [`serve`], over plain HTTP, with the test settings as `change` leaves them.
async fn serve_plain(
    change: impl FnOnce(&mut HttpSettings),
) -> (std::net::SocketAddr, emporium_http::ShutdownTrigger) {
    let mut s = plain(settings(&certs()));
    change(&mut s);
    serve(s).await
}

/// Reads until the peer closes (or errors); `None` if it is still open after `within`.
async fn closed_within(stream: &mut tokio::net::TcpStream, within: Duration) -> Option<Vec<u8>> {
    use tokio::io::AsyncReadExt;
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(seen),
            Ok(Ok(n)) => seen.extend_from_slice(&buf[..n]),
        }
    }
}

/// Whether a new connection to `addr` that sends nothing is closed by the
/// server within `within`.
async fn dropped_within(addr: std::net::SocketAddr, within: Duration) -> bool {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    closed_within(&mut stream, within).await.is_some()
}

fn plain(mut s: HttpSettings) -> HttpSettings {
    s.insecure_http = true;
    s
}

/// A client sending one header line at a time is cut off at the header-read
/// timeout: still served while within it, closed soon after it.
#[tokio::test]
async fn a_slow_header_client_is_cut_off() {
    use tokio::io::AsyncWriteExt;
    let (addr, _stop) = serve_plain(|s| s.header_read_timeout_ms = 800).await;
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"GET /slow HTTP/1.1\r\nhost: x\r\n")
        .await
        .unwrap();
    let started = std::time::Instant::now();
    // Within the timeout the connection is open: nothing to read, no close.
    assert!(
        closed_within(&mut stream, Duration::from_millis(300))
            .await
            .is_none(),
        "closed before the timeout"
    );
    for i in 0..30 {
        if stream
            .write_all(format!("x-{i}: y\r\n").as_bytes())
            .await
            .is_err()
        {
            break;
        }
        if closed_within(&mut stream, Duration::from_millis(150))
            .await
            .is_some()
        {
            break;
        }
    }
    let lasted = started.elapsed();
    assert!(
        lasted >= Duration::from_millis(700) && lasted < Duration::from_secs(3),
        "cut off after {lasted:?}"
    );
}

/// A kept-alive connection that goes quiet is closed after the idle timeout,
/// and a TLS connection that never starts its handshake after the header timeout.
#[tokio::test]
async fn idle_connections_are_closed() {
    use tokio::io::AsyncWriteExt;
    let (addr, _stop) = serve_plain(|s| {
        s.idle_timeout_ms = 400;
        s.header_read_timeout_ms = 5_000;
    })
    .await;
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"GET /slow HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let seen = closed_within(&mut stream, Duration::from_secs(3))
        .await
        .expect("the idle connection is closed");
    assert!(String::from_utf8_lossy(&seen).starts_with("HTTP/1.1 200"));

    let mut s = settings(&certs());
    s.header_read_timeout_ms = 400;
    let (addr, _stop) = serve(s).await;
    assert!(
        dropped_within(addr, Duration::from_secs(3)).await,
        "a silent TLS client is dropped"
    );
}

/// Connections over the per-client cap are refused at once; freeing one frees a slot.
#[tokio::test]
async fn connections_per_client_are_capped() {
    let (addr, _stop) = serve_plain(|s| s.max_connections_per_client = 3).await;
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(tokio::net::TcpStream::connect(addr).await.unwrap());
    }
    // Each is accepted and counted once it has been served.
    for stream in &mut held {
        assert!(
            served(stream).await,
            "a connection within the cap is served"
        );
    }
    assert!(
        dropped_within(addr, Duration::from_secs(2)).await,
        "the fourth connection is refused"
    );
    drop(held.pop());
    // Once the server has seen the close, a new connection gets the slot.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut next = tokio::net::TcpStream::connect(addr).await.unwrap();
        if served(&mut next).await {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the freed slot never went to a new connection"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Sends one request on a raw HTTP/1.1 connection; whether it was answered 200.
async fn served(stream: &mut tokio::net::TcpStream) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    if stream
        .write_all(b"GET /cacheable HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .is_err()
    {
        return false;
    }
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&seen).contains("cache me") {
        match tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => seen.extend_from_slice(&buf[..n]),
            _ => return false,
        }
    }
    seen.starts_with(b"HTTP/1.1 200")
}

/// A chunked upload over the limit gets its 413 read by the client: the
/// server reads on (bounded) instead of closing while the client still sends.
#[tokio::test]
async fn an_oversized_chunked_upload_reads_its_413() {
    use tokio::io::AsyncWriteExt;
    let (addr, _stop) = serve_plain(|s| s.request_timeout_ms = 30_000).await;
    for _ in 0..6 {
        // A small send buffer, so the upload is still being sent when the
        // server answers: an early close would fail the send (EPIPE or reset).
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_send_buffer_size(16 * 1024).unwrap();
        let stream = socket.connect(addr).await.unwrap();
        let (mut reader, mut writer) = stream.into_split();
        let sending = tokio::spawn(async move {
            let head = "POST /echo HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n\
                        transfer-encoding: chunked\r\n\r\n";
            writer.write_all(head.as_bytes()).await?;
            let chunk = format!("{:x}\r\n{}\r\n", 8192, " ".repeat(8192));
            // About 650 KB: far over the 1 KiB limit and the socket buffers,
            // and within what the server reads on before giving up.
            for _ in 0..80 {
                writer.write_all(chunk.as_bytes()).await?;
            }
            writer.write_all(b"0\r\n\r\n").await?;
            // Kept open (returned), as a client waiting for its answer does:
            // a half-closed connection is one hyper may close at once.
            Ok::<_, std::io::Error>(writer)
        });
        let text = closed_or_answered(&mut reader).await;
        assert!(text.starts_with("HTTP/1.1 413"), "{text:?}");
        let sent = tokio::time::timeout(Duration::from_secs(10), sending)
            .await
            .expect("the upload finishes")
            .unwrap();
        assert!(sent.is_ok(), "the upload broke off: {:?}", sent.err());
    }
}

/// Every answer carries the security headers; a handler's own Cache-Control stays.
#[tokio::test]
async fn answers_carry_security_headers() {
    let (addr, _stop) = serve_plain(|_| {}).await;
    for path in ["/slow", "/nothing-here"] {
        let r = reqwest::get(format!("http://{addr}{path}")).await.unwrap();
        assert_eq!(r.headers()["x-content-type-options"], "nosniff");
        assert_eq!(r.headers()["referrer-policy"], "no-referrer");
        assert_eq!(r.headers()["cache-control"], "no-store");
        assert_eq!(r.headers()["strict-transport-security"], "max-age=31536000");
    }
    let r = reqwest::get(format!("http://{addr}/cacheable"))
        .await
        .unwrap();
    assert_eq!(r.headers()["cache-control"], "public, max-age=60");
}

/// An idle HTTP/2 connection over TLS is closed after the idle timeout: with
/// one connection allowed per client, a second client gets in only then.
#[tokio::test]
async fn an_idle_http2_connection_is_closed() {
    let certs = certs();
    let mut s = settings(&certs);
    s.idle_timeout_ms = 1_000;
    s.max_connections_per_client = 1;
    let (addr, _stop) = serve(s).await;
    let url = format!("https://127.0.0.1:{}/slow", addr.port());
    let h2 = || {
        reqwest::Client::builder()
            .http2_prior_knowledge()
            .add_root_certificate(
                reqwest::Certificate::from_pem(&std::fs::read(certs.ca()).unwrap()).unwrap(),
            )
            .build()
            .unwrap()
    };
    let first = h2();
    let r = first.get(&url).send().await.unwrap();
    assert_eq!(r.version(), reqwest::Version::HTTP_2);
    let idle_since = Instant::now();
    // The first client's connection stays in its pool, idle.
    assert!(
        h2().get(&url).send().await.is_err(),
        "the cap holds while the first connection is open"
    );
    // Once the idle connection is closed, a second client gets in.
    let deadline = idle_since + Duration::from_secs(5);
    let r = loop {
        if let Ok(r) = h2().get(&url).send().await {
            break r;
        }
        assert!(
            Instant::now() < deadline,
            "the idle connection was never closed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(r.status(), 200);
    let waited = idle_since.elapsed();
    assert!(
        waited >= Duration::from_millis(800),
        "a second client got in after {waited:?}, before the idle timeout"
    );
    drop(first);
}

/// A request head over the limit is refused with 431 (hyper answers it itself,
/// before any layer, so the body is not a problem document).
#[tokio::test]
async fn an_oversized_head_is_refused() {
    let (addr, _stop) = serve_plain(|s| s.max_header_bytes = 8_192).await;
    let r = reqwest::Client::new()
        .get(format!("http://{addr}/slow"))
        .header("x-big", "a".repeat(20_000))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 431);
}

/// Bodies being received share one memory budget per listener: past it, a
/// body answers 503 with Retry-After at once, and the budget comes back when
/// the requests holding it are answered.
#[tokio::test]
async fn request_bodies_share_a_memory_budget() {
    let (addr, _stop) = serve_with_budget(2_000, None).await;
    // Two uploads that stop short of their length hold 900 bytes each.
    let mut holders = Vec::new();
    for _ in 0..2 {
        holders.push(start_upload(addr, "127.0.0.1").await);
    }
    // Once the server has read the holders' bytes, a third body is refused.
    let seen = refused_within(addr, "127.0.0.1").await;
    assert!(
        seen.to_ascii_lowercase().contains("retry-after: 1"),
        "{seen}"
    );
    // The first upload completes: answered, and its bytes return to the budget.
    let mut first = holders.remove(0);
    let seen = finish_upload(&mut first).await;
    assert!(seen.starts_with("HTTP/1.1 200"), "{seen}");
    let r = reqwest::Client::new()
        .post(format!("http://{addr}/echo"))
        .json(&serde_json::json!({"pad": "x".repeat(800)}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

/// As [`serve_plain`], with `budget` bytes for the bodies being received, of
/// which one client address may hold `per_client` (by default, the default).
async fn serve_with_budget(
    budget: usize,
    per_client: Option<usize>,
) -> (std::net::SocketAddr, emporium_http::ShutdownTrigger) {
    serve_plain(|s| {
        s.max_buffered_body_bytes = budget;
        if let Some(per_client) = per_client {
            s.max_buffered_body_bytes_per_client = per_client;
        }
        s.request_timeout_ms = 10_000;
    })
    .await
}

/// The head of an upload of a 1000-byte JSON body.
const UPLOAD_HEAD: &str = "POST /echo HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n";

/// Connects from `ip` and sends an upload's head and 900 bytes of its body.
async fn start_upload(addr: std::net::SocketAddr, ip: &str) -> tokio::net::TcpStream {
    use tokio::io::AsyncWriteExt;
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(format!("{ip}:0").parse().unwrap()).unwrap();
    let mut stream = socket.connect(addr).await.unwrap();
    stream.write_all(UPLOAD_HEAD.as_bytes()).await.unwrap();
    stream.write_all(&[b' '; 900]).await.unwrap();
    stream
}

/// Sends the last 100 bytes of an upload [`start_upload`] began; returns
/// the answer's head.
async fn finish_upload(stream: &mut tokio::net::TcpStream) -> String {
    use tokio::io::AsyncWriteExt;
    stream.write_all(&[b' '; 99]).await.unwrap();
    stream.write_all(b"1").await.unwrap();
    closed_or_answered(stream).await
}

/// Sends 900 bytes of a 1000-byte body from `ip` until the server answers 503
/// (it may not have read earlier uploads' bytes yet); returns that answer.
async fn refused_within(addr: std::net::SocketAddr, ip: &str) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut tries = Vec::new();
    loop {
        let mut stream = start_upload(addr, ip).await;
        let answer =
            tokio::time::timeout(Duration::from_millis(500), closed_or_answered(&mut stream)).await;
        if let Ok(seen) = answer
            && seen.starts_with("HTTP/1.1 503")
        {
            return seen;
        }
        // Still being read (it holds budget now): keep it open, try again.
        tries.push(stream);
        assert!(std::time::Instant::now() < deadline, "never refused");
    }
}

/// The answer's head as text, read until its blank line (or the close).
async fn closed_or_answered(stream: &mut (impl tokio::io::AsyncRead + Unpin)) -> String {
    use tokio::io::AsyncReadExt;
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
        match tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => seen.extend_from_slice(&buf[..n]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&seen).into_owned()
}

/// One client address cannot take the whole budget: past its share its own
/// bodies answer 503, while another address is still served.
#[tokio::test]
async fn one_client_cannot_starve_the_others() {
    let (addr, _stop) = serve_with_budget(1_000_000, Some(2_000)).await;
    let mut holders = Vec::new();
    for _ in 0..2 {
        holders.push(start_upload(addr, "127.0.0.1").await);
    }
    refused_within(addr, "127.0.0.1").await;
    let mut other = start_upload(addr, "127.0.0.2").await;
    let seen = finish_upload(&mut other).await;
    assert!(seen.starts_with("HTTP/1.1 200"), "{seen}");
    drop(holders);
}
