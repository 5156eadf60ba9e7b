//! The rules TLS adds to request handling: the request's host must agree
//! with the connection's SNI name, plain HTTP may be redirected to HTTPS,
//! and HTTPS responses may carry HSTS.

use http::header::{self, HeaderValue};
use http::{Response, StatusCode, Uri};

use crate::config::TlsConfig;
use crate::error::Error;
use crate::host::{HostName, RequestHost};
use crate::http::body::{self, Body};

/// A request on a TLS connection must be for the name the connection was
/// opened for (RFC 9110 §7.4: a server must not answer for an authority the
/// connection is not authoritative for). Connections without SNI (clients
/// connecting to an IP literal) have nothing to compare and pass.
pub(crate) fn check_sni(sni: Option<&str>, host: &HostName) -> Result<(), Error> {
    let Some(sni) = sni else { return Ok(()) };
    // Compare normalised forms: SNI may differ from the Host header in case
    // or a trailing dot without naming another server.
    let agrees = match HostName::parse(sni) {
        Ok(name) => &name == host,
        Err(_) => false,
    };
    if agrees {
        Ok(())
    } else {
        Err(Error::SniMismatch {
            sni: sni.to_string(),
            host: host.to_string(),
        })
    }
}

/// With `tls.redirect_http`, a plain-HTTP request is answered with a 308 to
/// the same URL on HTTPS:
/// 1. only plain connections, only when redirecting is configured;
/// 2. never for `/__portero/` (health checks and live reload stay on HTTP);
/// 3. the port is the first TLS listener's, left out when it is 443;
/// 4. the path and query are kept as the client sent them.
///
/// The caller has already checked that the host is one portero serves, so
/// the redirect cannot be used to send browsers elsewhere.
pub(crate) fn https_redirect(
    tls_conn: bool,
    host: &RequestHost,
    uri: &Uri,
    tls: Option<&TlsConfig>,
) -> Option<Response<Body>> {
    let tls = tls.filter(|t| t.redirect_http && !tls_conn)?;
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    if super::reserved::is_reserved(path) {
        return None;
    }
    let port = match tls.listen.first().map(|a| a.port()) {
        Some(443) | None => String::new(),
        Some(p) => format!(":{p}"),
    };
    let location = format!("https://{}{port}{path}", host.name);
    let location = HeaderValue::from_str(&location).ok()?;
    let mut resp = Response::new(body::empty());
    *resp.status_mut() = StatusCode::PERMANENT_REDIRECT;
    resp.headers_mut().insert(header::LOCATION, location);
    // A cached permanent redirect would outlive turning the option off,
    // which in a dev setup is a trap.
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Some(resp)
}

/// The `Strict-Transport-Security` value for an HTTPS response, when
/// `tls.hsts_max_age` is set. Never for `localhost`, `*.localhost` or IP
/// hosts: browsers would pin HTTPS for every local port and project.
pub(crate) fn hsts(host: &HostName, tls: Option<&TlsConfig>) -> Option<HeaderValue> {
    let max_age = tls?.hsts_max_age?;
    if host.ip().is_some() || host.is_loopback() {
        return None;
    }
    HeaderValue::from_str(&format!("max-age={}", max_age.as_secs())).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn tls(redirect_http: bool, port: u16, hsts: Option<u64>) -> TlsConfig {
        TlsConfig {
            listen: vec![([127, 0, 0, 1], port).into()],
            certs: vec![],
            ca_dir: "certs".into(),
            redirect_http,
            hsts_max_age: hsts.map(Duration::from_secs),
        }
    }

    fn name(s: &str) -> HostName {
        HostName::parse(s).unwrap()
    }

    #[test]
    fn sni_must_agree_with_the_host() {
        assert!(check_sni(None, &name("a.localhost")).is_ok());
        assert!(check_sni(Some("a.localhost"), &name("a.localhost")).is_ok());
        assert!(check_sni(Some("A.localhost."), &name("a.localhost")).is_ok());
        let e = check_sni(Some("a.localhost"), &name("b.localhost")).unwrap_err();
        assert_eq!(e.status(), StatusCode::MISDIRECTED_REQUEST);
    }

    #[test]
    fn redirects_plain_http_to_the_tls_port() {
        let host = RequestHost::parse("acme.localhost:8080").unwrap();
        let uri: Uri = "/a/b?c=d".parse().unwrap();
        let loc = |r: Response<Body>| {
            assert_eq!(r.status(), StatusCode::PERMANENT_REDIRECT);
            r.headers()[header::LOCATION].to_str().unwrap().to_string()
        };
        let r = https_redirect(false, &host, &uri, Some(&tls(true, 8443, None))).unwrap();
        assert_eq!(loc(r), "https://acme.localhost:8443/a/b?c=d");
        let r = https_redirect(false, &host, &uri, Some(&tls(true, 443, None))).unwrap();
        assert_eq!(loc(r), "https://acme.localhost/a/b?c=d");
        let v6 = RequestHost::parse("[::1]:8080").unwrap();
        let r = https_redirect(false, &v6, &uri, Some(&tls(true, 8443, None))).unwrap();
        assert_eq!(loc(r), "https://[::1]:8443/a/b?c=d");
        // Off, already TLS, or portero's own endpoints: no redirect.
        assert!(https_redirect(false, &host, &uri, Some(&tls(false, 8443, None))).is_none());
        assert!(https_redirect(false, &host, &uri, None).is_none());
        assert!(https_redirect(true, &host, &uri, Some(&tls(true, 8443, None))).is_none());
        let admin: Uri = "/__portero/health".parse().unwrap();
        assert!(https_redirect(false, &host, &admin, Some(&tls(true, 8443, None))).is_none());
    }

    #[test]
    fn hsts_only_for_real_names_when_configured() {
        let on = tls(false, 443, Some(31_536_000));
        assert_eq!(
            hsts(&name("app.example.com"), Some(&on)).unwrap(),
            "max-age=31536000"
        );
        assert!(hsts(&name("localhost"), Some(&on)).is_none());
        assert!(hsts(&name("acme.localhost"), Some(&on)).is_none());
        assert!(hsts(&name("10.0.0.5"), Some(&on)).is_none());
        assert!(hsts(&name("[::1]"), Some(&on)).is_none());
        assert!(hsts(&name("app.example.com"), Some(&tls(false, 443, None))).is_none());
        assert!(hsts(&name("app.example.com"), None).is_none());
    }
}
