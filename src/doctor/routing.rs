//! Tenants through portero's own routing: portero is started in-process on
//! `127.0.0.1:0` with the loaded config, and real requests go through it
//! with each tenant's host, as a browser would send them.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use super::Report;
use super::probe::{Answer, get, identify};
use crate::config::{Config, RouteTarget};
use crate::server::{Listeners, run};

/// The deadline for one request through portero.
const ROUTED_TIMEOUT: Duration = Duration::from_secs(10);

/// A made-up tenant: what the backend answers for it is what a tenant
/// missing in its database gets.
const NO_SUCH_TENANT: &str = "portero-doctor-no-such-tenant";

/// One host sent through portero.
struct Probe {
    /// The `Host` a browser sends (without the port).
    host: String,
    /// The host the backend sees.
    forwarded: String,
    tenant: Option<String>,
}

/// The path to request and the upstream its route leads to: `/admin/`
/// when a route sends it to an upstream (Django's admin answers on every
/// tenant), else the first upstream route's prefix.
fn probe_path(config: &Config, explicit: Option<&str>) -> Option<(String, Option<String>)> {
    let upstream_routes = || {
        config.routes.iter().filter_map(|r| match &r.target {
            RouteTarget::Upstream(u) => Some((r, u.clone())),
            _ => None,
        })
    };
    if let Some(p) = explicit {
        let p = if p.starts_with('/') {
            p.to_string()
        } else {
            format!("/{p}")
        };
        return Some((p, None));
    }
    let (route, up) = upstream_routes()
        .find(|(r, _)| r.prefix.as_str() == "/admin")
        .or_else(|| upstream_routes().next())?;
    let prefix = route.prefix.as_str();
    let path = if route.exact || prefix.ends_with('/') {
        prefix.to_string()
    } else {
        format!("{prefix}/")
    };
    Some((path, Some(up)))
}

fn probes(config: &Config, tenants: &[String]) -> (Vec<Probe>, Option<Probe>) {
    let Some(base) = &config.tenants.base_domain else {
        let public = Probe {
            host: "localhost".into(),
            forwarded: "localhost".into(),
            tenant: None,
        };
        return (vec![public], None);
    };
    let local = config.tenants.local_suffixes.first();
    let mut out: Vec<Probe> = tenants
        .iter()
        .map(|t| Probe {
            host: match local {
                Some(s) => format!("{t}.{s}"),
                None => format!("{t}.{base}"),
            },
            forwarded: format!("{t}.{base}"),
            tenant: Some(t.clone()),
        })
        .collect();
    // A sample host below the base domain itself, as DNS users reach it.
    out.push(match tenants.first() {
        Some(t) if local.is_some() => Probe {
            host: format!("{t}.{base}"),
            forwarded: format!("{t}.{base}"),
            tenant: Some(t.clone()),
        },
        _ => Probe {
            host: base.to_string(),
            forwarded: base.to_string(),
            tenant: None,
        },
    });
    let control = Probe {
        host: format!("{NO_SUCH_TENANT}.{base}"),
        forwarded: format!("{NO_SUCH_TENANT}.{base}"),
        tenant: Some(NO_SUCH_TENANT.into()),
    };
    (out, Some(control))
}

/// The config portero runs with here: the same routing, on a free
/// loopback port, plain HTTP, and no waiting for a backend that is down.
fn in_process(config: &Config) -> Config {
    let mut c = config.clone();
    c.server.listen = vec![SocketAddr::from(([127, 0, 0, 1], 0))];
    c.server.reuse_port = false;
    c.server.max_connections = Some(64);
    c.server.shutdown_delay = Duration::ZERO;
    c.server.shutdown_timeout = Duration::from_secs(1);
    c.tls = None;
    c.spa.live_reload = false;
    for up in c.upstreams.values_mut() {
        let u = Arc::make_mut(up);
        u.wait_for = Duration::ZERO;
        u.response_timeout = u.response_timeout.min(ROUTED_TIMEOUT);
    }
    c
}

pub(crate) async fn check(
    config: &Config,
    tenants: &[String],
    path: Option<&str>,
    reachable: &BTreeSet<String>,
    report: &mut Report<'_>,
) {
    let Some((path, upstream)) = probe_path(config, path) else {
        report.ok("routing: no route leads to an upstream, so there is no backend to ask");
        return;
    };
    if let Some(up) = upstream.filter(|u| !reachable.contains(u)) {
        report.fail(format!(
            "tenants: not checked through portero, as upstream {up} (the route for {path}) does \
             not answer (see above)"
        ));
        return;
    }
    let (probes, control) = probes(config, tenants);
    let cfg = in_process(config);
    let listeners = match Listeners::bind(&cfg).await {
        Ok(l) => l,
        Err(e) => {
            report.fail(format!("routing: cannot start portero in-process: {e}"));
            return;
        }
    };
    let Some(port) = listeners
        .plain
        .first()
        .and_then(|l| l.local_addr().ok())
        .map(|a| a.port())
    else {
        report.fail("routing: the in-process listener has no address");
        return;
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = run(listeners, cfg, async {
        let _ = stopped.await;
    });
    let requests = async {
        let send = |host: String| {
            let path = path.clone();
            async move {
                let h = format!("{host}:{port}");
                get("127.0.0.1", port, None, &h, &path, ROUTED_TIMEOUT).await
            }
        };
        let control = match &control {
            Some(c) => send(c.host.clone()).await.ok(),
            None => None,
        };
        for p in &probes {
            let label = match &p.tenant {
                Some(t) => format!("tenant {t}: {} → {}", p.host, p.forwarded),
                None => format!("public: {} → {}", p.host, p.forwarded),
            };
            match send(p.host.clone()).await {
                Ok(a) => match judge(&a, control.as_ref(), p, &path) {
                    Ok(m) => report.ok(format!("{label}: {m}")),
                    Err(m) => report.fail(format!("{label}: {m}")),
                },
                Err(e) => report.fail(format!("{label}: portero in-process: {e}")),
            }
        }
        let _ = stop.send(());
    };
    let (served, ()) = tokio::join!(server, requests);
    if let Err(e) = served {
        report.fail(format!("routing: portero in-process failed: {e}"));
    }
}

/// What the answer to `GET path` for `p` means: `Ok` with a description,
/// or `Err` with what to fix.
fn judge(a: &Answer, control: Option<&Answer>, p: &Probe, path: &str) -> Result<String, String> {
    let fwd = &p.forwarded;
    let who = match &p.tenant {
        Some(t) => format!("tenant {t}"),
        None => "the public tenant".into(),
    };
    match a.status {
        400 if a.body.contains("DisallowedHost") || a.body.contains("Invalid HTTP_HOST") => {
            Err(format!(
                "Django refused the host {fwd} (DisallowedHost): ALLOWED_HOSTS must cover it \
                 (see the settings below)"
            ))
        }
        400 => Err(format!(
            "the backend answered 400 Bad Request to GET {path}: with DEBUG = False that is how \
             Django refuses a host missing from ALLOWED_HOSTS; make it cover {fwd} (see the \
             settings below)"
        )),
        404 if a.body.contains("No tenant for hostname") => Err(format!(
            "{who} is missing in the database: django-tenants says \"No tenant for hostname\" \
             {fwd}; create it with a Domain row for {fwd}"
        )),
        404 if control.is_some_and(|c| c.status == 404 && c.body == a.body) => Err(format!(
            "{who} is probably missing in the database: GET {path} answers 404 exactly as for a \
             made-up tenant (django-tenants' \"No tenant for hostname\" is a plain 404 when \
             DEBUG = False); create it with a Domain row for {fwd}, or pass --path with a page \
             that exists"
        )),
        421 => Err(format!(
            "portero refused the host (421 Misdirected Request): {}",
            first_line(&a.body)
        )),
        502..=504 if a.header("server").is_none() => Err(format!(
            "portero got no answer from the upstream ({}): {}",
            a.status,
            first_line(&a.body)
        )),
        s if s >= 500 => Err(format!(
            "the backend failed with {s} for GET {path}: see its log"
        )),
        s => Ok(format!(
            "GET {path} → {s} from {}",
            identify(&a.headers, &a.body)
        )),
    }
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or("").trim()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16, body: &str) -> Answer {
        Answer {
            status,
            headers: http::HeaderMap::new(),
            body: body.into(),
        }
    }

    fn acme() -> Probe {
        Probe {
            host: "acme.localhost".into(),
            forwarded: "acme.chalanpro.net".into(),
            tenant: Some("acme".into()),
        }
    }

    #[test]
    fn answers_are_explained() {
        let p = acme();
        let j = |a: &Answer, c: Option<&Answer>| judge(a, c, &p, "/admin/");
        assert!(j(&answer(302, ""), None).is_ok());
        let e = j(&answer(400, "DisallowedHost at /"), None).unwrap_err();
        assert!(e.contains("ALLOWED_HOSTS"), "{e}");
        let e = j(&answer(400, "<h1>Bad Request (400)</h1>"), None).unwrap_err();
        assert!(e.contains("ALLOWED_HOSTS"), "{e}");
        let e = j(
            &answer(404, "No tenant for hostname \"acme.chalanpro.net\""),
            None,
        )
        .unwrap_err();
        assert!(e.contains("tenant acme is missing in the database"), "{e}");
        let generic = answer(404, "<h1>Not Found</h1>");
        let e = j(&generic, Some(&generic)).unwrap_err();
        assert!(e.contains("tenant acme is probably missing"), "{e}");
        // A 404 unlike the made-up tenant's is the page's own.
        assert!(j(&generic, Some(&answer(404, "other"))).is_ok());
        assert!(j(&answer(502, "502 Bad Gateway: down"), None).is_err());
    }

    #[test]
    fn the_probe_path_prefers_the_admin() {
        let c = Config::embedded();
        assert_eq!(
            probe_path(&c, None),
            Some(("/admin/".to_string(), Some("backend".to_string())))
        );
        assert_eq!(probe_path(&c, Some("api/x")).unwrap().0, "/api/x");
    }
}
