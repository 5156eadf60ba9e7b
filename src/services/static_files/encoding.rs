//! Choosing a precompressed representation from `Accept-Encoding`
//! (RFC 9110 §12.5.3).

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Coding {
    Br,
    Gzip,
    Identity,
}

/// Which precompressed variants a file has.
#[derive(Debug, Clone, Copy)]
pub(super) struct Variants {
    pub br: bool,
    pub gzip: bool,
}

/// The best coding the client accepts among those available, by q-value;
/// ties go to the smaller (br, then gzip, then identity). A coding with
/// `q=0` is never chosen. With no header the client gets identity: any
/// coding would be allowed, but old clients that omit it rarely decode.
pub(super) fn preferred(accept: Option<&[u8]>, available: Variants) -> Coding {
    let Some(accept) = accept.and_then(|a| std::str::from_utf8(a).ok()) else {
        return Coding::Identity;
    };
    let (mut br, mut gzip, mut identity, mut star) = (None, None, None, None);
    for item in accept.split(',') {
        let mut parts = item.split(';');
        let name = parts.next().unwrap_or("").trim();
        let q = parts
            .filter_map(|p| {
                let (k, v) = p.split_once('=')?;
                k.trim().eq_ignore_ascii_case("q").then(|| qvalue(v.trim()))
            })
            .next()
            .unwrap_or(Some(1000));
        let Some(q) = q else { continue };
        let slot = if name.eq_ignore_ascii_case("br") {
            &mut br
        } else if name.eq_ignore_ascii_case("gzip") || name.eq_ignore_ascii_case("x-gzip") {
            &mut gzip
        } else if name.eq_ignore_ascii_case("identity") {
            &mut identity
        } else if name == "*" {
            &mut star
        } else {
            continue;
        };
        *slot = Some(q);
    }
    let br = if available.br {
        br.or(star).unwrap_or(0)
    } else {
        0
    };
    let gzip = if available.gzip {
        gzip.or(star).unwrap_or(0)
    } else {
        0
    };
    // Identity is acceptable unless excluded explicitly or by `*;q=0`.
    let identity = identity.or(star).unwrap_or(1);
    if br > 0 && br >= gzip && br >= identity {
        Coding::Br
    } else if gzip > 0 && gzip >= identity {
        Coding::Gzip
    } else {
        Coding::Identity
    }
}

/// A q-value in thousandths: `1`, `0.8`, `0.125` (RFC 9110 §12.4.2).
fn qvalue(v: &str) -> Option<u16> {
    let (int, frac) = v.split_once('.').unwrap_or((v, ""));
    if frac.len() > 3 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let frac_value: u16 = format!("{frac:0<3}").parse().ok()?;
    match int {
        "0" => Some(frac_value),
        "1" if frac_value == 0 => Some(1000),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOTH: Variants = Variants {
        br: true,
        gzip: true,
    };
    const GZIP: Variants = Variants {
        br: false,
        gzip: true,
    };
    use Coding::*;

    fn pick(h: Option<&str>) -> Coding {
        preferred(h.map(str::as_bytes), BOTH)
    }

    #[test]
    fn negotiation() {
        assert_eq!(pick(None), Identity);
        assert_eq!(pick(Some("")), Identity);
        assert_eq!(pick(Some("gzip, deflate, br, zstd")), Br);
        assert_eq!(pick(Some("gzip")), Gzip);
        assert_eq!(pick(Some("GZIP")), Gzip);
        assert_eq!(pick(Some("x-gzip")), Gzip);
        assert_eq!(pick(Some("br;q=0, gzip")), Gzip);
        assert_eq!(pick(Some("br;q=0.5, gzip;q=0.8")), Gzip);
        assert_eq!(pick(Some("br;q=0, gzip;q=0")), Identity);
        assert_eq!(pick(Some("*")), Br);
        assert_eq!(pick(Some("*;q=0")), Identity);
        assert_eq!(pick(Some("gzip;q=0.5, identity")), Identity);
        assert_eq!(pick(Some("gzip;q=0.5, identity;q=0")), Gzip);
        assert_eq!(pick(Some("br;q=bogus, gzip")), Gzip);
        assert_eq!(pick(Some("deflate")), Identity);
        assert_eq!(preferred(Some(b"br, gzip"), GZIP), Gzip);
        assert_eq!(preferred(Some(b"br"), GZIP), Identity);
        assert_eq!(
            preferred(
                Some(b"br, gzip"),
                Variants {
                    br: false,
                    gzip: false
                }
            ),
            Identity
        );
    }

    #[test]
    fn qvalues() {
        assert_eq!(qvalue("1"), Some(1000));
        assert_eq!(qvalue("1.000"), Some(1000));
        assert_eq!(qvalue("0"), Some(0));
        assert_eq!(qvalue("0.8"), Some(800));
        assert_eq!(qvalue("0.125"), Some(125));
        assert_eq!(qvalue("0.1255"), None);
        assert_eq!(qvalue("1.5"), None);
        assert_eq!(qvalue("2"), None);
        assert_eq!(qvalue("x"), None);
    }
}
