//! A hostile client against the common setup: ONE real backend (nginx, which
//! resolves dot-segments, merges slashes and decodes escapes itself) behind
//! a public route and a private `/api` route guarded by `api-key`. Every
//! request is written on a raw socket (a client library would normalise
//! it), and none may reach nginx's private location without a key: each is
//! refused, or routed to the private route where `api-key` answers 401.

use crate::support::{self, read_raw_response, GatewayOptions, TestGateway};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// nginx as the backend, with a case-insensitive private location that
/// logs every hit to its own file.
struct Nginx {
    addr: SocketAddr,
    private_log: PathBuf,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Nginx {
    async fn start() -> Nginx {
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let d = dir.path().display();
        let conf = format!(
            "pid {d}/nginx.pid;\nerror_log {d}/error.log;\nevents {{}}\nhttp {{\n\
             access_log off;\n\
             client_body_temp_path {d}/body; proxy_temp_path {d}/proxy; fastcgi_temp_path {d}/fcgi;\n\
             uwsgi_temp_path {d}/uwsgi; scgi_temp_path {d}/scgi;\n\
             server {{\n  listen 127.0.0.1:{port};\n\
               location ~* ^/api(/|$) {{ access_log {d}/private.log; return 200 \"PRIVATE $uri consumer=$http_x_consumer\\n\"; }}\n\
               location / {{ return 200 \"PUBLIC $uri\\n\"; }}\n\
             }}\n}}\n"
        );
        let conf_path = dir.path().join("nginx.conf");
        std::fs::write(&conf_path, conf).unwrap();
        // One process: killing it on drop leaves no orphaned workers behind.
        let child = Command::new(nginx_binary())
            .args(["-g", "daemon off; master_process off;", "-p"])
            .arg(dir.path())
            .arg("-c")
            .arg(&conf_path)
            .spawn()
            .expect("nginx starts (make test installs it)");
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(addr).await.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Nginx {
            addr,
            private_log: dir.path().join("private.log"),
            child,
            _dir: dir,
        }
    }

    /// Requests nginx's private location has served.
    fn private_hits(&self) -> usize {
        std::fs::read_to_string(&self.private_log)
            .map(|log| log.lines().count())
            .unwrap_or(0)
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn nginx_binary() -> PathBuf {
    ["/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/bin/nginx"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .unwrap_or_else(|| {
            panic!(
                "nginx not installed: `make test` installs it ({})",
                Path::new("scripts/test-deps.sh").display()
            )
        })
}

/// The quickstart shape: `/api` needs a key (matched case-insensitively,
/// as the backend is), everything else is public; both go to nginx.
async fn gateway(nginx: &Nginx) -> TestGateway {
    let upstreams = format!("  backend: {{ targets: ['{}'] }}\n", nginx.addr);
    TestGateway::start_opts(
        "routes:
  - name: private
    match: { path_prefix: /api, case_insensitive: true }
    upstream: backend
    plugins:
      - name: api-key
        config: { keys: [{ key: key-alice-1, consumer: alice }] }
  - name: public
    match: { path_prefix: / }
    upstream: backend
",
        GatewayOptions {
            upstreams: &upstreams,
            ..GatewayOptions::default()
        },
    )
    .await
}

/// Sends `raw` on a fresh connection; the response's status and body, or
/// `None` when the gateway closed without one.
async fn send_raw(addr: SocketAddr, raw: &[u8]) -> Option<(u16, String)> {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(raw).await.unwrap();
    tokio::time::timeout(Duration::from_secs(5), read_raw_response(&mut stream))
        .await
        .expect("an answer or a close within 5 s")
}

/// Request targets a backend reads as `/api/...`, in every spelling tried.
const PATH_ATTACKS: &[&str] = &[
    "/public/../api/users",
    "/./api/users",
    "/public/%2e%2e/api/users",
    "/public/%2E%2E/api/users",
    "/public/.%2e/api/users",
    "/public/%2e./api/users",
    "/public/./../api/users",
    "//api/users",
    "///api//users",
    "/%61pi/users",
    "/%41PI/users",
    "/%61%70%69/users",
    "/api%2fusers",
    "/api%2Fusers",
    "/public/..%2fapi/users",
    "/public%2f..%2fapi/users",
    "/public/%2e%2e%2fapi/users",
    "/api\\users",
    "/public/..\\api/users",
    "/public\\..\\api\\users",
    "/api%5cusers",
    "/public/..%5capi/users",
    "/api;x=1/users",
    "/public/..;/api/users",
    "/api;/users",
    "/API/users",
    "/Api/Users",
    "/public/../API/users",
    "/%2e%2e/api/users",
    "/public/%00/../api/users",
    "/public/%c0%ae%c0%ae/api/users",
    "/public/%e0%80%ae%e0%80%ae/api/users",
    "/public%3f/../api/users",
    "/public/%252e%252e/api/users",
    "/public/..%252fapi/users",
    "http://gw/public/../api/users",
    "http://gw//api/users",
    "http://gw/%61pi/users",
    "/public/x/../../api/users",
    "/api",
    "/api/",
    "/api?x=/public",
    "/api/../api/users",
];

#[tokio::test]
async fn no_spelling_of_a_private_path_reaches_the_backend_without_a_key() {
    let nginx = Nginx::start().await;
    let gw = gateway(&nginx).await;

    // The setup can fail: with a key the private location answers, and a
    // public path is public.
    let with_key = "GET /api/users HTTP/1.1\r\nHost: gw\r\nx-api-key: key-alice-1\r\nConnection: close\r\n\r\n";
    let (status, body) = send_raw(gw.addr, with_key.as_bytes()).await.unwrap();
    assert_eq!(
        (status, body.as_str()),
        (200, "PRIVATE /api/users consumer=alice\n")
    );
    let public = "GET /public/x HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n";
    let (status, body) = send_raw(gw.addr, public.as_bytes()).await.unwrap();
    assert_eq!((status, body.as_str()), (200, "PUBLIC /public/x\n"));
    assert_eq!(nginx.private_hits(), 1);

    let mut leaks = Vec::new();
    for target in PATH_ATTACKS {
        let raw = format!("GET {target} HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n");
        let answer = send_raw(gw.addr, raw.as_bytes()).await;
        if let Some((status, body)) = &answer {
            if body.contains("PRIVATE") || !(*status == 400 || *status == 401 || *status == 200) {
                leaks.push(format!("{target} → {status} {body}"));
            }
        }
    }
    assert!(
        leaks.is_empty(),
        "reached the private location or odd status: {leaks:#?}"
    );
    assert_eq!(
        nginx.private_hits(),
        1,
        "nginx's private location was hit without a key"
    );
}

#[tokio::test]
async fn the_upstream_and_plugins_see_the_canonical_path() {
    let nginx = Nginx::start().await;
    let gw = gateway(&nginx).await;
    let cases = [
        ("/public/a/../b//c/%7e/%61", "PUBLIC /public/b/c/~/a\n"),
        ("//public/./x/", "PUBLIC /public/x/\n"),
    ];
    for (target, expected) in cases {
        let raw = format!("GET {target} HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n");
        let (status, body) = send_raw(gw.addr, raw.as_bytes()).await.unwrap();
        assert_eq!((status, body.as_str()), (200, expected), "{target}");
    }
    // With a key, a dotted spelling of a private path is judged and served
    // as the private path it is.
    let raw = "GET /public/../api/users HTTP/1.1\r\nHost: gw\r\nx-api-key: key-alice-1\r\nConnection: close\r\n\r\n";
    let (status, body) = send_raw(gw.addr, raw.as_bytes()).await.unwrap();
    assert_eq!(
        (status, body.as_str()),
        (200, "PRIVATE /api/users consumer=alice\n")
    );
}

#[tokio::test]
async fn refused_paths_get_400_json() {
    let nginx = Nginx::start().await;
    let gw = gateway(&nginx).await;
    for target in [
        "/%2e%2e/api",
        "/api%2fusers",
        "/a;b",
        "/a%zz",
        "/a%00",
        "/public/%c0%ae",
    ] {
        let raw = format!("GET {target} HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n");
        let (status, body) = send_raw(gw.addr, raw.as_bytes()).await.unwrap();
        assert_eq!(status, 400, "{target}: {body}");
        let json: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(json["code"], "path_rejected", "{target}");
    }
}

#[tokio::test]
async fn path_policies_are_set_per_listener_and_per_route() {
    let gw = TestGateway::start(
        "paths: { escaped_slashes: keep }
routes:
  - name: files
    match: { path_prefix: /files }
    upstream: a
    paths: { escaped_slashes: unescape, path_parameters: strip }
  - name: strict
    match: { path_prefix: /strict }
    upstream: a
    paths: { escaped_slashes: reject }
  - name: rest
    match: { path_prefix: / }
    upstream: b
",
    )
    .await;
    let get = |target: &str| {
        let raw = format!("GET {target} HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n");
        let addr = gw.addr;
        async move { send_raw(addr, raw.as_bytes()).await.unwrap() }
    };
    let path_seen = |body: &str| {
        let json: serde_json::Value = serde_json::from_str(body).unwrap();
        json["path"].as_str().unwrap().to_string()
    };
    // Top-level keep: forwarded encoded, never a segment boundary.
    let (status, body) = get("/rest/a%2fb").await;
    assert_eq!((status, path_seen(&body)), (200, "/rest/a%2Fb".to_string()));
    // The route unescapes and strips parameters.
    let (status, body) = get("/files/a%2Fb;v=1/c").await;
    assert_eq!(
        (status, path_seen(&body)),
        (200, "/files/a/b/c".to_string())
    );
    // Unescaping that climbs out of the route is refused, not rerouted.
    let (status, _) = get("/files/x/..%2F..%2Fstrict").await;
    assert_eq!(status, 400);
    // The route refuses what its listener keeps.
    let (status, _) = get("/strict/a%2fb").await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn a_plugin_rewritten_path_is_canonicalised_again() {
    let gw = TestGateway::start(
        "routes:
  - name: r
    match: { path_prefix: /r }
    upstream: a
    plugins:
      - name: probe
        config: { set_path: /x/../y/./z//%6b }
  - name: up
    match: { path_prefix: /u }
    upstream: a
    plugins:
      - name: probe
        config: { set_path: /../etc }
",
    )
    .await;
    let client = support::get_client();
    let reply = client.get(&gw.url("/r/k"), &[]).await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    assert_eq!(reply.json()["path"], "/y/z/k");
    let reply = client.get(&gw.url("/u/k"), &[]).await;
    assert_eq!(reply.status, 500);
    assert_eq!(reply.json()["code"], "plugin_error");
}

/// Smuggling shapes and head ambiguities hyper would repair silently or a
/// peer would read differently: each is 400 and the connection closes.
const FRAMING_ATTACKS: &[(&str, &str)] = &[
    ("CL+TE", "POST /public/x HTTP/1.1\r\nHost: gw\r\nContent-Length: 44\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /api/users HTTP/1.1\r\nHost: gw\r\n\r\n"),
    ("TE+CL", "POST /public/x HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n0\r\n\r\n"),
    ("CL, CL", "POST /public/x HTTP/1.1\r\nHost: gw\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx"),
    ("CL list", "POST /public/x HTTP/1.1\r\nHost: gw\r\nContent-Length: 1, 1\r\n\r\nx"),
    ("CL sign", "POST /public/x HTTP/1.1\r\nHost: gw\r\nContent-Length: +1\r\n\r\nx"),
    ("TE gzip,chunked", "POST /public/x HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n"),
    ("TE twice", "POST /public/x HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
    ("TE identity", "POST /public/x HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: identity\r\n\r\n"),
    ("TE on 1.0", "POST /public/x HTTP/1.0\r\nHost: gw\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
    ("no Host", "GET /public/x HTTP/1.1\r\n\r\n"),
    ("two Hosts", "GET /public/x HTTP/1.1\r\nHost: gw\r\nHost: internal\r\n\r\n"),
    ("Host userinfo", "GET /public/x HTTP/1.1\r\nHost: gw@internal\r\n\r\n"),
    ("Host path", "GET /public/x HTTP/1.1\r\nHost: gw/api\r\n\r\n"),
    ("NUL in head", "GET /public/x HTTP/1.1\r\nHost: gw\r\nX-A: a\0b\r\n\r\n"),
    ("bare CR", "GET /public/x HTTP/1.1\r\nHost: gw\r\nX-A: a\rb\r\n\r\n"),
    ("obs-fold", "GET /public/x HTTP/1.1\r\nHost: gw\r\nX-A: a\r\n b\r\n\r\n"),
    ("space before colon", "GET /public/x HTTP/1.1\r\nHost: gw\r\nContent-Length : 0\r\n\r\n"),
    ("bad chunk size", "POST /public/x HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n"),
];

#[tokio::test]
async fn ambiguous_framing_and_hosts_get_400_and_a_closed_connection() {
    let gw = TestGateway::start(
        "routes:
  - name: public
    match: { path_prefix: / }
    upstream: a
",
    )
    .await;
    let mut accepted = Vec::new();
    for (name, raw) in FRAMING_ATTACKS {
        let mut stream = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
        stream.write_all(raw.as_bytes()).await.unwrap();
        let answer = tokio::time::timeout(Duration::from_secs(5), read_raw_response(&mut stream))
            .await
            .expect("an answer or a close within 5 s");
        match answer {
            Some((400, _)) | None => {}
            Some((status, body)) => accepted.push(format!("{name}: {status} {body}")),
        }
        // Whatever followed on the connection is not served.
        tokio::time::timeout(Duration::from_secs(5), support::closed_by_peer(&mut stream))
            .await
            .unwrap_or_else(|_| panic!("{name}: the connection stays open"));
    }
    assert!(accepted.is_empty(), "accepted: {accepted:#?}");

    // The judged request is the offending one, not its neighbour: a good
    // request first is served, the bad one after it refused.
    let pipelined = "GET /ok HTTP/1.1\r\nHost: gw\r\n\r\nPOST /bad HTTP/1.1\r\nHost: gw\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
    let mut stream = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    stream.write_all(pipelined.as_bytes()).await.unwrap();
    let mut answers = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answers))
        .await
        .expect("the connection closes after the bad request")
        .unwrap();
    let answers = String::from_utf8_lossy(&answers);
    let statuses: Vec<&str> = answers
        .match_indices("HTTP/1.1 ")
        .map(|(at, _)| &answers[at + 9..at + 12])
        .collect();
    assert_eq!(statuses, ["200", "400"], "{answers}");
    assert!(answers.contains("\"code\":\"bad_request\""), "{answers}");

    // HTTP/1.0 without Host is still served.
    let (status, _) = send_raw(gw.addr, b"GET /x HTTP/1.0\r\n\r\n").await.unwrap();
    assert_eq!(status, 200);
}

/// An upstream that never answers and records the raw bytes of each
/// connection until the gateway closes it.
async fn recording_upstream() -> (SocketAddr, tokio::sync::mpsc::UnboundedReceiver<Vec<u8>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut seen = Vec::new();
                let mut chunk = [0u8; 4096];
                let read = async {
                    while let Ok(n @ 1..) = stream.read(&mut chunk).await {
                        seen.extend_from_slice(&chunk[..n]);
                    }
                };
                let _ = tokio::time::timeout(Duration::from_secs(5), read).await;
                let _ = tx.send(seen);
            });
        }
    });
    (addr, rx)
}

/// Tells whether the bytes an upstream got are an incomplete request.
type Incomplete = fn(&[u8]) -> bool;

#[tokio::test]
async fn a_body_that_ends_early_never_reaches_the_upstream_complete() {
    let (recorder, mut recorded) = recording_upstream().await;
    let upstreams = format!("  recorder: {{ targets: ['{recorder}'], timeout_ms: 10000 }}\n");
    let gw = TestGateway::start_opts(
        "routes:
  - name: r
    match: { path_prefix: / }
    upstream: recorder
",
        GatewayOptions {
            upstreams: &upstreams,
            ..GatewayOptions::default()
        },
    )
    .await;
    let cases: [(&str, Incomplete); 2] = [
        (
            "POST /x HTTP/1.1\r\nHost: gw\r\nContent-Length: 10\r\n\r\nhello",
            |seen| {
                let text = String::from_utf8_lossy(seen).to_ascii_lowercase();
                let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
                text.contains("content-length: 10") && body.len() < 10
            },
        ),
        (
            "POST /x HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n",
            |seen| !seen.ends_with(b"0\r\n\r\n"),
        ),
    ];
    for (raw, incomplete) in cases {
        let mut stream = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
        stream.write_all(raw.as_bytes()).await.unwrap();
        stream.shutdown().await.unwrap();
        let answer = tokio::time::timeout(Duration::from_secs(8), read_raw_response(&mut stream))
            .await
            .expect("an answer within 8 s");
        if let Some((status, body)) = answer {
            assert_eq!(status, 400, "{raw}: {body}");
        }
        let seen = tokio::time::timeout(Duration::from_secs(8), recorded.recv())
            .await
            .expect("the upstream connection ends")
            .unwrap();
        assert!(
            incomplete(&seen),
            "the upstream got a complete request: {}",
            String::from_utf8_lossy(&seen)
        );
    }
}

/// A header value that is not UTF-8 reaches the upstream through a plugin
/// route exactly as the plugins read it (the lossy text), never as other
/// bytes than the ones they judged; a header no plugin of the route reads
/// (they declared which they read) goes on as it came, as on a route
/// without plugins.
#[tokio::test]
async fn an_upstream_gets_a_non_utf8_header_as_the_plugins_read_it() {
    let (recorder, mut recorded) = recording_upstream().await;
    let upstreams = format!("  recorder: {{ targets: ['{recorder}'], timeout_ms: 10000 }}\n");
    let gw = TestGateway::start_opts(
        "routes:
  - name: read
    match: { path_prefix: /read }
    upstream: recorder
    plugins:
      - name: probe
        config: { tag: read }
  - name: blind
    match: { path_prefix: /blind }
    upstream: recorder
    plugins:
      - name: headers
        config: { request: { add: { x-gateway: wasmgate } } }
",
        GatewayOptions {
            upstreams: &upstreams,
            ..GatewayOptions::default()
        },
    )
    .await;
    let mut streams = Vec::new();
    for path in ["/read", "/blind"] {
        let mut stream = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
        let head = format!("GET {path} HTTP/1.1\r\nHost: gw\r\n");
        stream.write_all(head.as_bytes()).await.unwrap();
        stream.write_all(b"x-raw: key\xff\r\n\r\n").await.unwrap();
        streams.push(stream);
    }
    for _ in 0..2 {
        let seen = tokio::time::timeout(Duration::from_secs(8), recorded.recv())
            .await
            .expect("the upstream got the request")
            .unwrap();
        let contains = |needle: &[u8]| seen.windows(needle.len()).any(|w| w == needle);
        let text = String::from_utf8_lossy(&seen);
        if seen.starts_with(b"GET /read ") {
            assert!(contains(b"x-chain: read"), "the plugin ran: {text}");
            assert!(
                contains("x-raw: key\u{fffd}\r\n".as_bytes()) && !contains(b"key\xff"),
                "{text}"
            );
        } else {
            assert!(contains(b"x-gateway: wasmgate"), "the plugin ran: {text}");
            assert!(contains(b"x-raw: key\xff\r\n"), "{text}");
        }
    }
}
