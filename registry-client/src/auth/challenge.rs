//! `WWW-Authenticate` challenges (RFC 7235): `Basic realm="…"` and
//! `Bearer realm="…",service="…",scope="…",error="insufficient_scope"`.

use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    Basic {
        realm: Option<String>,
    },
    Bearer {
        realm: String,
        service: Option<String>,
        /// The scope the registry asked for, space separated if several.
        scope: Option<String>,
        /// `insufficient_scope`, `invalid_token`, … when the registry says why.
        error: Option<String>,
    },
}

impl Challenge {
    /// The first challenge in a header we can answer (Bearer preferred).
    pub fn parse(header: &str) -> Option<Challenge> {
        let mut basic = None;
        for (scheme, params) in split_challenges(header) {
            match scheme.to_ascii_lowercase().as_str() {
                "bearer" => {
                    let realm = params.get("realm")?.clone();
                    return Some(Challenge::Bearer {
                        realm,
                        service: params.get("service").cloned(),
                        scope: params.get("scope").cloned(),
                        error: params.get("error").cloned(),
                    });
                }
                "basic" if basic.is_none() => {
                    basic = Some(Challenge::Basic {
                        realm: params.get("realm").cloned(),
                    })
                }
                _ => {}
            }
        }
        basic
    }
}

/// Split a header into (scheme, params) pairs. Params are `key=token` or
/// `key="quoted, string"`; a new scheme starts at a bare token.
fn split_challenges(header: &str) -> Vec<(String, BTreeMap<String, String>)> {
    let mut out: Vec<(String, BTreeMap<String, String>)> = Vec::new();
    let chars: Vec<char> = header.chars().collect();
    let mut i = 0;
    let skip = |i: &mut usize, pred: &dyn Fn(char) -> bool| {
        while *i < chars.len() && pred(chars[*i]) {
            *i += 1;
        }
    };
    while i < chars.len() {
        skip(&mut i, &|c| c == ' ' || c == ',' || c == '\t');
        let start = i;
        skip(&mut i, &|c| c != ' ' && c != ',' && c != '=' && c != '\t');
        let token: String = chars[start..i].iter().collect();
        if token.is_empty() {
            break;
        }
        skip(&mut i, &|c| c == ' ' || c == '\t');
        if i < chars.len() && chars[i] == '=' {
            i += 1;
            skip(&mut i, &|c| c == ' ' || c == '\t');
            let mut value = String::new();
            if i < chars.len() && chars[i] == '"' {
                i += 1;
                while i < chars.len() && chars[i] != '"' {
                    if chars[i] == '\\' && i + 1 < chars.len() {
                        i += 1;
                    }
                    value.push(chars[i]);
                    i += 1;
                }
                i += 1;
            } else {
                let s = i;
                skip(&mut i, &|c| c != ',' && c != ' ');
                value = chars[s..i].iter().collect();
            }
            if let Some((_, params)) = out.last_mut() {
                params.insert(token.to_ascii_lowercase(), value);
            }
        } else {
            out.push((token, BTreeMap::new()));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_distribution_bearer_challenge() {
        let c = Challenge::parse(
            r#"Bearer realm="http://127.0.0.1:5001/token",service="registry",scope="repository:a/b:pull,push",error="insufficient_scope""#,
        )
        .unwrap();
        assert_eq!(
            c,
            Challenge::Bearer {
                realm: "http://127.0.0.1:5001/token".into(),
                service: Some("registry".into()),
                scope: Some("repository:a/b:pull,push".into()),
                error: Some("insufficient_scope".into()),
            }
        );
    }

    #[test]
    fn parses_basic_and_prefers_bearer() {
        assert_eq!(
            Challenge::parse(r#"Basic realm="Registry Realm""#),
            Some(Challenge::Basic {
                realm: Some("Registry Realm".into())
            })
        );
        let c = Challenge::parse(r#"Basic realm="x", Bearer realm="https://t/token""#).unwrap();
        assert!(matches!(c, Challenge::Bearer { .. }));
        assert_eq!(Challenge::parse("Negotiate"), None);
        assert_eq!(Challenge::parse(""), None);
    }
}
