//! The Django settings a config needs, and those it makes unnecessary, as
//! lines of Python to paste into `settings.py`.

use crate::config::{Config, HostMode, HostPattern, Route, RouteTarget};

/// Every host the backend can see in `Host`, as `ALLOWED_HOSTS` entries
/// (a leading dot matches the domain and its subdomains).
fn allowed_hosts(config: &Config) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut add = |h: String| {
        if !out.contains(&h) {
            out.push(h);
        }
    };
    let routes = || {
        config
            .routes
            .iter()
            .chain(config.tenants.overrides.values().flat_map(|o| &o.routes))
    };
    let preserves = routes().any(|r: &Route| r.host == HostMode::Preserve);
    match &config.tenants.base_domain {
        // Tenant hosts and their local aliases arrive as <tenant>.<base>.
        Some(base) => add(format!(".{base}")),
        None => add(".localhost".into()),
    }
    if preserves || config.tenants.base_domain.is_none() {
        for s in &config.tenants.local_suffixes {
            add(format!(".{s}"));
        }
    }
    for p in &config.tenants.allowed_hosts {
        add(match p {
            HostPattern::Exact(h) => h.to_string(),
            HostPattern::Wildcard(s) => format!(".{s}"),
        });
    }
    // Routes with host = "upstream" send the upstream's own name.
    for r in routes().filter(|r| r.host == HostMode::Upstream) {
        if let RouteTarget::Upstream(u) = &r.target {
            if let Some(up) = config.upstreams.get(u) {
                add(up.url.host().to_string());
            }
        }
    }
    // An address typed into the browser is forwarded as it is.
    add("127.0.0.1".into());
    add("[::1]".into());
    out
}

/// The settings, one Python line each (comments included).
pub fn settings(config: &Config) -> Vec<String> {
    let hosts: Vec<String> = allowed_hosts(config)
        .iter()
        .map(|h| format!("\"{h}\""))
        .collect();
    let seen = match &config.tenants.base_domain {
        Some(b) => format!("acme.{b}"),
        None => "acme.localhost".into(),
    };
    let mut out = vec![
        format!("ALLOWED_HOSTS = [{}]", hosts.join(", ")),
        "# CSRF_TRUSTED_ORIGINS: not needed for portero's hosts: portero rewrites a same-origin \
         Origin and Referer to the host Django sees"
            .to_string(),
        format!(
            "# USE_X_FORWARDED_HOST = True  # only if Django should see the browser's host \
             (acme.localhost:8080) instead of {seen}; ALLOWED_HOSTS must then cover it too"
        ),
    ];
    if config.tls.is_some() {
        out.push("SECURE_PROXY_SSL_HEADER = (\"HTTP_X_FORWARDED_PROTO\", \"https\")".into());
    } else {
        out.push(
            "# SECURE_PROXY_SSL_HEADER: not needed without TLS (set it to (\"HTTP_X_FORWARDED_PROTO\", \
             \"https\") once portero serves HTTPS)"
                .into(),
        );
    }
    out.push(
        "# SESSION_COOKIE_DOMAIN: leave it unset (None): browsers refuse a cookie for \
         \".localhost\", and portero drops a Domain covering the backend's host, so on \
         *.localhost each tenant host keeps its own session (and CSRF cookie)"
            .into(),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Source;

    fn config(extra: &str) -> Config {
        let text = format!("[upstreams.backend]\nurl = \"http://127.0.0.1:8000\"\n{extra}");
        Config::from_str(&text, Source::Embedded).unwrap()
    }

    #[test]
    fn allowed_hosts_follow_the_config() {
        assert_eq!(
            settings(&config("[tenants]\nbase_domain = \"chalanpro.net\""))[0],
            "ALLOWED_HOSTS = [\".chalanpro.net\", \"127.0.0.1\", \"[::1]\"]"
        );
        assert_eq!(
            settings(&config(""))[0],
            "ALLOWED_HOSTS = [\".localhost\", \"127.0.0.1\", \"[::1]\"]"
        );
        let c = config(
            "[tenants]\nbase_domain = \"chalanpro.net\"\nallowed_hosts = [\"lan.box\", \"*.corp.test\"]\n\
             [[routes]]\nprefix = \"/api\"\nupstream = \"backend\"\nhost = \"preserve\"\n",
        );
        assert_eq!(
            settings(&c)[0],
            "ALLOWED_HOSTS = [\".chalanpro.net\", \".localhost\", \"lan.box\", \".corp.test\", \
             \"127.0.0.1\", \"[::1]\"]"
        );
    }

    #[test]
    fn the_proxy_ssl_header_only_with_tls() {
        let plain = settings(&config(""));
        assert!(
            plain
                .iter()
                .all(|l| !l.starts_with("SECURE_PROXY_SSL_HEADER"))
        );
        let tls = settings(&config("[tls]\nlisten = \"127.0.0.1:8443\"\n"));
        assert!(
            tls.contains(
                &"SECURE_PROXY_SSL_HEADER = (\"HTTP_X_FORWARDED_PROTO\", \"https\")".into()
            )
        );
    }
}
