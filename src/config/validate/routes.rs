//! `[[routes]]` and a tenant's own routes: prefix, exactly one target,
//! and the options that apply to it.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use toml::Spanned;

use super::Checker;
use crate::config::defaults;
use crate::config::file::RawRoute;
use crate::config::{HostMode, Route, RoutePrefix, RouteTarget, Upstream};

/// Validates routes given with their index in the file.
pub(super) fn routes<'a>(
    c: &mut Checker,
    path: &str,
    raw: impl Iterator<Item = (usize, &'a Spanned<RawRoute>)>,
    upstreams: &BTreeMap<String, Arc<Upstream>>,
) -> Vec<Route> {
    let mut out: Vec<Route> = Vec::new();
    let mut seen: BTreeMap<(String, bool), usize> = BTreeMap::new();
    for (i, r) in raw {
        let key = format!("{path}[{i}]");
        if let Some(route) = route(c, &key, r, upstreams) {
            let id = (route.prefix.to_string(), route.exact);
            if let Some(first) = seen.insert(id, i) {
                c.err(
                    &format!("{key}.prefix"),
                    r.get_ref().prefix.as_ref().map(|p| p.span()),
                    format!(
                        "prefix {:?} is already used by {path}[{first}]",
                        route.prefix.as_str()
                    ),
                );
            }
            out.push(route);
        }
    }
    out
}

fn route(
    c: &mut Checker,
    key: &str,
    r: &Spanned<RawRoute>,
    upstreams: &BTreeMap<String, Arc<Upstream>>,
) -> Option<Route> {
    let span = r.span();
    let r = r.get_ref();
    let prefix = match &r.prefix {
        None => {
            c.err(key, Some(span.clone()), "missing `prefix`".into());
            None
        }
        Some(p) => RoutePrefix::parse(p.get_ref())
            .map_err(|m| c.err(&format!("{key}.prefix"), Some(p.span()), m))
            .ok(),
    };

    // Every target given, `None` for one that is invalid (reported once):
    // "several targets" is still said when one of them is broken.
    let mut targets: Vec<Option<RouteTarget>> = Vec::new();
    if let Some(u) = &r.upstream {
        if upstreams.contains_key(u.get_ref()) || c.declared_upstreams.contains(u.get_ref()) {
            targets.push(Some(RouteTarget::Upstream(u.get_ref().clone())));
        } else {
            let known: Vec<&str> = c.declared_upstreams.iter().map(String::as_str).collect();
            c.err(
                &format!("{key}.upstream"),
                Some(u.span()),
                format!(
                    "no upstream named {:?} (known: {})",
                    u.get_ref(),
                    if known.is_empty() {
                        "none".into()
                    } else {
                        known.join(", ")
                    }
                ),
            );
            targets.push(None);
        }
    }
    if let Some(s) = &r.spa {
        if *s.get_ref() {
            targets.push(Some(RouteTarget::Spa));
        } else {
            c.err(
                &format!("{key}.spa"),
                Some(s.span()),
                "`spa = false` means nothing; remove it or give another target".into(),
            );
        }
    }
    if let Some(d) = &r.static_dir {
        targets.push(Some(RouteTarget::Static(PathBuf::from(d.get_ref()))));
    }
    let target = match targets.len() {
        1 => targets.pop().flatten(),
        0 => {
            c.err(
                key,
                Some(span.clone()),
                "no target: give one of `upstream`, `spa = true`, `static_dir`".into(),
            );
            None
        }
        _ => {
            c.err(
                key,
                Some(span.clone()),
                "several targets: give only one of `upstream`, `spa = true`, `static_dir`".into(),
            );
            None
        }
    };

    let host = match &r.host {
        None => HostMode::StripPort,
        Some(h) => match h.get_ref().as_str() {
            "strip-port" => HostMode::StripPort,
            "preserve" => HostMode::Preserve,
            "upstream" => HostMode::Upstream,
            other => {
                c.err(
                    &format!("{key}.host"),
                    Some(h.span()),
                    format!("unknown host mode {other:?} (known: strip-port, preserve, upstream)"),
                );
                HostMode::StripPort
            }
        },
    };
    let rewrite = r.rewrite.as_ref().and_then(|p| {
        RoutePrefix::parse(p.get_ref())
            .map_err(|m| c.err(&format!("{key}.rewrite"), Some(p.span()), m))
            .ok()
    });
    if let (Some(rw), Some(true)) = (&r.rewrite, r.strip_prefix) {
        c.err(
            &format!("{key}.rewrite"),
            Some(rw.span()),
            "set either `rewrite` or `strip_prefix`, not both".into(),
        );
    }
    let proxy_only = [
        ("host", r.host.as_ref().map(|v| v.span())),
        ("rewrite", r.rewrite.as_ref().map(|v| v.span())),
        ("body_limit", r.body_limit.as_ref().map(|v| v.span())),
        (
            "response_timeout",
            r.response_timeout.as_ref().map(|v| v.span()),
        ),
        ("idle_timeout", r.idle_timeout.as_ref().map(|v| v.span())),
    ];
    if matches!(target, Some(RouteTarget::Spa | RouteTarget::Static(_))) {
        for (name, sp) in proxy_only {
            if let Some(sp) = sp {
                c.err(
                    &format!("{key}.{name}"),
                    Some(sp),
                    "only applies to `upstream` routes".into(),
                );
            }
        }
    }
    let body_limit = c.limit(
        &format!("{key}.body_limit"),
        &r.body_limit,
        match target {
            Some(RouteTarget::Upstream(_)) => defaults::body_limit(c.profile),
            _ => None,
        },
    );
    let response_timeout = c.opt_duration(&format!("{key}.response_timeout"), &r.response_timeout);
    let idle_timeout = c
        .opt_duration(&format!("{key}.idle_timeout"), &r.idle_timeout)
        .filter(|d| !d.is_zero());

    Some(Route {
        prefix: prefix?,
        exact: r.exact.unwrap_or(false),
        target: target?,
        host,
        strip_prefix: r.strip_prefix.unwrap_or(false),
        rewrite,
        body_limit,
        response_timeout,
        upgrades: upgrades(c, key, r),
        idle_timeout,
    })
}

/// `upgrades = [...]`, or `websocket = false` for none (the older spelling
/// of `upgrades = []`); `websocket` by default. `h2c` is refused: a tunnel
/// would carry HTTP/2 past routes, tenant rules, limits and forwarding
/// headers.
fn upgrades(c: &mut Checker, key: &str, r: &RawRoute) -> Vec<String> {
    match (&r.upgrades, r.websocket) {
        (Some(list), Some(_)) => {
            c.err(
                &format!("{key}.websocket"),
                Some(list.span()),
                "set either `upgrades` or `websocket`, not both".into(),
            );
            Vec::new()
        }
        (Some(list), None) => {
            let mut out = Vec::new();
            for p in list.get_ref() {
                let p = p.trim().to_ascii_lowercase();
                if p == "h2c" {
                    c.err(
                        &format!("{key}.upgrades"),
                        Some(list.span()),
                        "h2c is never tunnelled (it would bypass every rule of the route)".into(),
                    );
                } else if p.is_empty() || !p.bytes().all(|b| b.is_ascii_graphic() && b != b',') {
                    c.err(
                        &format!("{key}.upgrades"),
                        Some(list.span()),
                        format!("{p:?} is not a protocol name"),
                    );
                } else {
                    out.push(p);
                }
            }
            out
        }
        (None, Some(false)) => Vec::new(),
        (None, Some(true) | None) => vec![defaults::UPGRADE.into()],
    }
}
