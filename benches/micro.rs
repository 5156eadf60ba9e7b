//! Per-request work in isolation (criterion): route match, host
//! normalisation and tenant resolution, path normalisation, and the request
//! and response header rewrites.
//!
//! Run: `cargo bench --bench micro`

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use http::{HeaderMap, HeaderName, HeaderValue};
use portero::config::{Config, Source};
use portero::host::RequestHost;
use portero::internals::{forward, rewrite};
use portero::internals::{path, table::RouteTable, tenant};

fn config() -> Config {
    Config::from_str(
        include_str!("../config/examples/chalanpro.toml"),
        Source::Embedded,
    )
    .expect("example config is valid")
}

fn routing(c: &mut Criterion) {
    let cfg = config();
    let table = RouteTable::of(&cfg.routes);
    c.bench_function("route match /api/v1/users/42", |b| {
        b.iter(|| {
            table
                .find(black_box("/api/v1/users/42"))
                .map(|(r, _)| r.prefix.as_str().len())
        })
    });
    c.bench_function("route match / (spa fallback)", |b| {
        b.iter(|| table.find(black_box("/dashboard/settings")).is_some())
    });
    c.bench_function("path normalise (clean)", |b| {
        b.iter(|| path::normalize(black_box("/api/v1/users/42")).len())
    });
    c.bench_function("path normalise (dots and escapes)", |b| {
        b.iter(|| path::normalize(black_box("/static/%2e%2e/api/./x%41y")).len())
    });
    c.bench_function("host parse + tenant resolve (alias)", |b| {
        b.iter(|| {
            let h = RequestHost::parse(black_box("acme.localhost:8080")).unwrap();
            tenant::resolve(&h.name, &cfg.tenants).unwrap().forward_host
        })
    });
}

fn headers(c: &mut Criterion) {
    let client_host = RequestHost::parse("acme.localhost:8080").unwrap();
    let tenant_header = HeaderName::from_static("x-tenant");
    let peer_value = HeaderValue::from_static("127.0.0.1");
    let mut base = HeaderMap::new();
    for (k, v) in [
        ("host", "acme.localhost:8080"),
        ("user-agent", "Mozilla/5.0 (X11; Linux x86_64) Chrome/156.0"),
        ("accept", "application/json, text/plain, */*"),
        ("accept-language", "en-US,en;q=0.9"),
        ("accept-encoding", "gzip, deflate, br"),
        ("origin", "http://acme.localhost:8080"),
        ("referer", "http://acme.localhost:8080/dashboard"),
        ("cookie", "csrftoken=abc; sessionid=def"),
        ("connection", "keep-alive"),
    ] {
        base.insert(HeaderName::from_static(k), HeaderValue::from_static(v));
    }
    let port_value = HeaderValue::from_static("8080");
    c.bench_function("request headers: forward::prepare", |b| {
        b.iter_batched_ref(
            || base.clone(),
            |h| {
                let f = forward::Forward {
                    scheme: "http",
                    client_host: &client_host,
                    client_port: 8080,
                    port_value: &port_value,
                    upstream_host: "acme.chalanpro.net",
                    peer: [127, 0, 0, 1].into(),
                    peer_value: &peer_value,
                    trusted_peer: false,
                    tenant: Some((&tenant_header, "acme")),
                    tenant_header: Some(&tenant_header),
                    underscores: false,
                };
                forward::prepare(h, &f, None)
            },
            criterion::BatchSize::SmallInput,
        )
    });
    let mut resp = HeaderMap::new();
    resp.insert("content-type", HeaderValue::from_static("application/json"));
    resp.insert(
        "location",
        HeaderValue::from_static("http://acme.chalanpro.net/api/x/"),
    );
    resp.insert(
        "set-cookie",
        HeaderValue::from_static("sessionid=x; Domain=acme.chalanpro.net; Path=/; HttpOnly"),
    );
    c.bench_function("response headers: rewrite::response", |b| {
        b.iter_batched_ref(
            || resp.clone(),
            |h| {
                rewrite::response(
                    h,
                    &rewrite::Rewrite {
                        client_origin: "http://acme.localhost:8080",
                        client_host: "acme.localhost",
                        forwarded_host: "acme.chalanpro.net",
                        upstream_authority: "127.0.0.1:8000",
                        cookie_domain: None,
                        insecure_cookies: true,
                    },
                )
            },
            criterion::BatchSize::SmallInput,
        )
    });
}

criterion_group!(benches, routing, headers);
criterion_main!(benches);
