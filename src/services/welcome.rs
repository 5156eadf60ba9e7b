//! The built-in welcome page, served for the SPA route when the configured
//! SPA folder does not exist, saying what to configure.

use http::{Method, Response, StatusCode};

use crate::config::Config;
use crate::error::Error;
use crate::http::body::{Body, html_page};
use crate::http::error_page::escape;

pub(crate) fn serve(
    method: &Method,
    path: &str,
    cfg: &Config,
    spa_root: &str,
) -> Result<Response<Body>, Error> {
    crate::http::get_or_head(method)?;
    if path != "/" {
        return Err(Error::NotFound { path: path.into() });
    }
    let backend = cfg
        .upstreams
        .get("backend")
        .map(|u| u.url.to_string())
        .unwrap_or_else(|| "(none)".into());
    let routes: String = cfg
        .routes
        .iter()
        .map(|r| format!("<li><code>{}</code></li>", escape(&r.label())))
        .collect();
    let page = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>portero is running</title>\
<style>body{{font:16px/1.5 system-ui,sans-serif;max-width:46em;margin:3em auto;padding:0 1em;color:#222}}\
code{{background:#f3f3f3;padding:.1em .3em}}</style></head><body>\
<h1>portero is running</h1>\
<p>There is no single-page app to serve yet: the folder <code>{root}</code> does not exist.</p>\
<ul><li>Build your app into <code>{root}</code> (for Vue/Vite: <code>npm run build</code>), \
or start portero with <code>--spa path/to/dist</code>, \
or front a dev server with <code>--spa http://127.0.0.1:5173</code>.</li>\
<li>API, admin, static, media and WebSocket paths go to the backend at <code>{backend}</code> \
(change it with <code>--backend URL</code>).</li>\
<li>For tenants, set <code>--base-domain example.net</code> and open <code>http://&lt;tenant&gt;.localhost:&lt;port&gt;</code>.</li>\
<li>Write a <code>portero.toml</code> (start from <code>config/portero.toml</code>) and check it with <code>portero check</code>.</li></ul>\
<p>Routes:</p><ul>{routes}</ul></body></html>\n",
        root = escape(spa_root),
        backend = escape(&backend),
    );
    Ok(html_page(method, StatusCode::OK, page, "no-cache"))
}
