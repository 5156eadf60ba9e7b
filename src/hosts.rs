//! `portero hosts`: `/etc/hosts` lines for the tenant names, for systems
//! that do not resolve `*.localhost` by themselves (Safari and curl on
//! macOS, some resolvers), kept in a marked block that is replaced on every
//! write and never touches the lines around it.
//!
//! The names are the configured ones only: each local suffix other than
//! `localhost`, and `<tenant>.<suffix>` for each tenant named in
//! `[tenants.overrides]` or on the command line. portero does not remember
//! the tenants it has seen.

use crate::config::TenantConfig;

pub const BEGIN: &str = "# BEGIN portero";
pub const END: &str = "# END portero";

/// The names to resolve to loopback, in order, without duplicates:
/// each local suffix (but `localhost`, which every system resolves), then
/// `<tenant>.<suffix>` for every tenant (`[tenants.overrides]`, then
/// `tenants`) and suffix, then `extra` as given.
pub fn names(cfg: &TenantConfig, tenants: &[String], extra: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut push = |n: String| {
        if !out.contains(&n) {
            out.push(n);
        }
    };
    let all: Vec<&str> = cfg
        .overrides
        .keys()
        .map(String::as_str)
        .chain(tenants.iter().map(String::as_str))
        .collect();
    for suffix in &cfg.local_suffixes {
        if suffix.as_str() != "localhost" {
            push(suffix.to_string());
        }
        for t in &all {
            push(format!("{t}.{suffix}"));
        }
    }
    for n in extra {
        push(n.to_ascii_lowercase());
    }
    out
}

/// One IPv4 and one IPv6 loopback line per name.
pub fn lines(names: &[String]) -> Vec<String> {
    names
        .iter()
        .flat_map(|n| [format!("127.0.0.1 {n}"), format!("::1 {n}")])
        .collect()
}

/// The marked block, ending with a newline.
pub fn block(lines: &[String]) -> String {
    let mut b =
        format!("{BEGIN}\n# written by `portero hosts --write`: edits inside are replaced\n");
    for l in lines {
        b.push_str(l);
        b.push('\n');
    }
    b.push_str(END);
    b.push('\n');
    b
}

/// `existing` with its marked block replaced by `block` (or `block`
/// appended when there is none); every other line is kept as it is.
pub fn merge(existing: &str, block: &str) -> Result<String, String> {
    let lines: Vec<&str> = existing.split_inclusive('\n').collect();
    let begin = lines.iter().position(|l| l.trim_end() == BEGIN);
    let end = lines.iter().position(|l| l.trim_end() == END);
    match (begin, end) {
        (None, None) => {
            let mut out = existing.to_string();
            if !out.is_empty() && !out.ends_with('\n') {
                out.push('\n');
            }
            out.push_str(block);
            Ok(out)
        }
        (Some(b), Some(e)) if b < e => {
            let mut out: String = lines[..b].concat();
            out.push_str(block);
            out.push_str(&lines[e + 1..].concat());
            Ok(out)
        }
        _ => Err(format!(
            "the file has a broken portero block (\"{BEGIN}\" and \"{END}\" do not pair up): fix it by hand"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, Source};

    #[test]
    fn names_cover_suffixes_and_tenants() {
        let c = Config::from_str(
            "[upstreams.b2]\nurl = \"http://127.0.0.1:8001\"\n\
             [tenants]\nbase_domain = \"chalanpro.net\"\n\
             local_suffixes = [\"localhost\", \"chalanpro.localhost\"]\n\
             [tenants.overrides.acme]\nupstream = \"b2\"\n",
            Source::Embedded,
        )
        .unwrap();
        let n = names(&c.tenants, &["globex".into()], &["Extra.Test".into()]);
        assert_eq!(
            n,
            [
                "acme.localhost",
                "globex.localhost",
                "chalanpro.localhost",
                "acme.chalanpro.localhost",
                "globex.chalanpro.localhost",
                "extra.test"
            ]
        );
        assert_eq!(
            lines(&n[..1]),
            ["127.0.0.1 acme.localhost", "::1 acme.localhost"]
        );
    }

    #[test]
    fn merge_replaces_only_the_block() {
        let b1 = block(&["127.0.0.1 a.localhost".into()]);
        let b2 = block(&["127.0.0.1 b.localhost".into()]);
        let user = "127.0.0.1 localhost\n10.0.0.1 box # mine";
        let once = merge(user, &b1).unwrap();
        assert_eq!(once, format!("{user}\n{b1}"));
        assert_eq!(merge(&once, &b1).unwrap(), once, "idempotent");
        let after = format!("{once}192.168.1.2 nas\n");
        let twice = merge(&after, &b2).unwrap();
        assert_eq!(twice, format!("{user}\n{b2}192.168.1.2 nas\n"));
        assert!(merge(&format!("{BEGIN}\nx\n"), &b1).is_err());
        assert!(merge(&format!("{END}\n{BEGIN}\n"), &b1).is_err());
    }
}
