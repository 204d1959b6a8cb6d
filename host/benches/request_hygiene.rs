//! What the request-hygiene steps every proxied request passes cost, to
//! weigh them against the ~100 µs of CPU a whole proxied request takes
//! (`bench/run.sh`): path canonicalisation (the fast path: an already
//! canonical path, and a path that needs work), the strict-HTTP head checks,
//! the framing watcher's second parse of an HTTP/1.1 head, and stripping
//! identity headers a client may not send.
//!
//! Run with `cargo bench -p wasmgate --bench request_hygiene`.

use criterion::{criterion_group, criterion_main, Criterion};
use std::hint::black_box;
use wasmgate::http::path::PathPolicy;
use wasmgate::http::strict::framing::FramingWatch;

const HEAD: &[u8] = b"GET /api/users/123?page=2 HTTP/1.1\r\nhost: api.example.com\r\nuser-agent: wrk\r\naccept: */*\r\nauthorization: Bearer abc.def.ghi\r\nx-request-id: 1234\r\n\r\n";

fn bench(c: &mut Criterion) {
    let policy = PathPolicy::default();
    c.bench_function("canonicalize: canonical path", |b| {
        b.iter(|| {
            policy
                .canonicalize(black_box("/api/users/123"))
                .unwrap()
                .len()
        })
    });
    c.bench_function("canonicalize: path needing work", |b| {
        b.iter(|| {
            policy
                .canonicalize(black_box("/public/./../%61pi//users/123"))
                .unwrap()
                .len()
        })
    });
    c.bench_function("framing watch: one HTTP/1.1 head", |b| {
        b.iter(|| {
            let (mut watch, verdicts) = FramingWatch::new(64 * 1024);
            watch.feed(black_box(HEAD));
            verdicts.for_request(0)
        })
    });
    let request = || {
        http::Request::builder()
            .uri("/api/users/123?page=2")
            .header("host", "api.example.com")
            .header("user-agent", "wrk")
            .header("accept", "*/*")
            .body(())
            .unwrap()
    };
    c.bench_function("check_head: a well-formed HTTP/1.1 head", |b| {
        b.iter_batched(
            request,
            |mut r| wasmgate::http::strict::check_head(&mut r).is_ok(),
            criterion::BatchSize::SmallInput,
        )
    });
    let config = wasmgate::config::Config::parse(
        "listeners: [{ address: '127.0.0.1:0' }]\nupstreams: { a: { targets: ['127.0.0.1:1'] } }\nroutes:\n  - { name: r, upstream: a, plugins: [{ name: api-key, config: {} }] }\n",
        std::path::Path::new("bench.yaml"),
        std::path::Path::new("."),
    )
    .unwrap();
    let strip = wasmgate::http::identity_headers::StripList::new(&config);
    c.bench_function("strip identity headers", |b| {
        b.iter_batched(
            || request().into_parts().0.headers,
            |mut headers| {
                strip.strip(&mut headers);
                headers.len()
            },
            criterion::BatchSize::SmallInput,
        )
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
