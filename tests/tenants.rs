//! Tenants end to end: aliases forwarded as the tenant's real host, unknown
//! hosts refused before anything is forwarded, malformed hosts refused, and
//! per-tenant upstreams and routes.

mod support;

use support::backends::{Echo, header, parse_report};

fn config(backend: &Echo, extra: &str) -> portero::Config {
    support::config(&format!(
        "[upstreams.backend]\nurl = \"http://{}\"\n\
         [[routes]]\nprefix = \"/api\"\nupstream = \"backend\"\n\
         [[routes]]\nprefix = \"/\"\nspa = true\n\
         {extra}",
        backend.addr
    ))
}

const TENANTS: &str = "[tenants]\nbase_domain = \"chalanpro.net\"\nheader = \"X-Tenant\"\n";

#[tokio::test]
async fn aliases_reach_the_backend_as_the_tenant_host() {
    let backend = Echo::start().await;
    let p = support::start(config(&backend, TENANTS)).await;

    // (Host sent, Host the backend must see, tenant header)
    let cases = [
        ("acme.localhost:8080", "acme.chalanpro.net", Some("acme")),
        ("ACME.localhost.", "acme.chalanpro.net", Some("acme")),
        ("x.acme.localhost", "x.acme.chalanpro.net", Some("x.acme")),
        (
            "acme.chalanpro.net:8080",
            "acme.chalanpro.net",
            Some("acme"),
        ),
        ("localhost:8080", "chalanpro.net", None),
        ("chalanpro.net", "chalanpro.net", None),
    ];
    for (sent, seen, tenant) in cases {
        let r = support::get(&p.url("/api/who"), &[("host", sent)]).await;
        assert_eq!(r.status, 200, "{sent}: {}", r.text());
        let (_, headers) = parse_report(&r.text());
        assert_eq!(header(&headers, "host"), Some(seen), "{sent}");
        assert_eq!(header(&headers, "x-tenant"), tenant, "{sent}");
    }
    p.stop().await;
}

#[tokio::test]
async fn the_tenant_header_cannot_be_forged_by_the_client() {
    let backend = Echo::start().await;
    let p = support::start(config(&backend, TENANTS)).await;
    let r = support::get(
        &p.url("/api/who"),
        &[("host", "localhost"), ("x-tenant", "acme")],
    )
    .await;
    let (_, headers) = parse_report(&r.text());
    assert_eq!(header(&headers, "x-tenant"), None);
    let r = support::get(
        &p.url("/api/who"),
        &[("host", "globex.localhost"), ("x-tenant", "acme")],
    )
    .await;
    let (_, headers) = parse_report(&r.text());
    assert_eq!(header(&headers, "x-tenant"), Some("globex"));
    p.stop().await;
}

#[tokio::test]
async fn unknown_and_malformed_hosts_are_refused_and_nothing_is_forwarded() {
    let backend = Echo::start().await;
    let p = support::start(config(&backend, TENANTS)).await;
    for (host, status) in [
        ("evil.example", 421),
        ("chalanpro.net.evil.example", 421),
        ("evilchalanpro.net", 421),
        ("acme..localhost", 400),
        ("acme.localhost:0", 400),
        ("user@acme.localhost", 400),
    ] {
        let r = support::get(&p.url("/api/x"), &[("host", host)]).await;
        assert_eq!(r.status, status, "{host}");
    }
    assert_eq!(backend.hits(), 0, "nothing reached the backend");
    p.stop().await;
}

#[tokio::test]
async fn a_tenant_override_has_its_own_upstream_and_routes() {
    let backend = Echo::start().await;
    let branch = Echo::start().await;
    let beta = Echo::start().await;
    let extra = format!(
        "{TENANTS}\
         [upstreams.acme-branch]\nurl = \"http://{}\"\n\
         [upstreams.beta]\nurl = \"http://{}\"\n\
         [tenants.overrides.acme]\nupstream = \"acme-branch\"\n\
         [[tenants.overrides.acme.routes]]\nprefix = \"/beta\"\nupstream = \"beta\"\n",
        branch.addr, beta.addr
    );
    let p = support::start(config(&backend, &extra)).await;

    let r = support::get(&p.url("/api/x"), &[("host", "acme.localhost")]).await;
    assert_eq!(r.status, 200);
    let (_, headers) = parse_report(&r.text());
    assert_eq!(header(&headers, "host"), Some("acme.chalanpro.net"));
    assert_eq!((branch.hits(), backend.hits()), (1, 0), "acme → its branch");

    let r = support::get(&p.url("/api/x"), &[("host", "globex.localhost")]).await;
    assert_eq!(r.status, 200);
    assert_eq!((branch.hits(), backend.hits()), (1, 1), "globex → shared");

    // The tenant's own route keeps the upstream it names.
    let r = support::get(&p.url("/beta/x"), &[("host", "acme.localhost")]).await;
    assert_eq!(r.status, 200);
    assert_eq!((beta.hits(), branch.hits()), (1, 1), "acme /beta → beta");

    // Other tenants do not get acme's routes.
    let _ = support::get(&p.url("/beta/x"), &[("host", "globex.localhost")]).await;
    assert_eq!(beta.hits(), 1, "globex /beta is not acme's route");
    p.stop().await;
}
