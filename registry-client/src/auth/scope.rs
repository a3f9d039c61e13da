//! Token scopes (`repository:<name>:pull,push`), merged into sets so one
//! token can cover a mount's pull on the source and push on the target.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// A set of scopes; `repository:a:pull` and `repository:a:push` merge into
/// `repository:a:pull,push`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Scopes(BTreeMap<(String, String), BTreeSet<String>>);

impl Scopes {
    pub fn new() -> Self {
        Scopes::default()
    }

    pub fn pull(repository: &str) -> Self {
        Scopes::new().with("repository", repository, &["pull"])
    }

    pub fn push(repository: &str) -> Self {
        Scopes::new().with("repository", repository, &["pull", "push"])
    }

    pub fn with(mut self, kind: &str, name: &str, actions: &[&str]) -> Self {
        self.0
            .entry((kind.to_string(), name.to_string()))
            .or_default()
            .extend(actions.iter().map(|a| a.to_string()));
        self
    }

    pub fn merge(mut self, other: &Scopes) -> Self {
        for (k, v) in &other.0 {
            self.0
                .entry(k.clone())
                .or_default()
                .extend(v.iter().cloned());
        }
        self
    }

    /// Parse one or more space-separated scopes as a registry writes them.
    pub fn parse(s: &str) -> Self {
        let mut out = Scopes::new();
        for item in s.split_whitespace() {
            // The name may contain ':' (a registry port), so split at both ends.
            let Some((kind, rest)) = item.split_once(':') else {
                continue;
            };
            let Some((name, actions)) = rest.rsplit_once(':') else {
                continue;
            };
            let actions: Vec<&str> = actions.split(',').filter(|a| !a.is_empty()).collect();
            out = out.with(kind, name, &actions);
        }
        out
    }

    /// Each scope as its own string, for repeated `scope=` query parameters.
    pub fn items(&self) -> Vec<String> {
        self.0
            .iter()
            .map(|((kind, name), actions)| {
                let actions: Vec<&str> = actions.iter().map(String::as_str).collect();
                format!("{kind}:{name}:{}", actions.join(","))
            })
            .collect()
    }

    /// True when every action in `other` is already in `self`.
    pub fn covers(&self, other: &Scopes) -> bool {
        other.0.iter().all(|(k, acts)| {
            self.0
                .get(k)
                .is_some_and(|mine| acts.iter().all(|a| mine.contains(a) || mine.contains("*")))
        })
    }
}

impl fmt::Display for Scopes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.items().join(" "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merges_actions_and_repositories() {
        let s = Scopes::push("target/repo").merge(&Scopes::pull("source/repo"));
        assert_eq!(
            s.items(),
            vec![
                "repository:source/repo:pull",
                "repository:target/repo:pull,push"
            ]
        );
        assert!(s.covers(&Scopes::pull("target/repo")));
        assert!(!Scopes::pull("a").covers(&Scopes::push("a")));
    }

    #[test]
    fn parses_registry_scopes() {
        let s = Scopes::parse("repository:a/b:pull,push registry:catalog:*");
        assert_eq!(
            s.items(),
            vec!["registry:catalog:*", "repository:a/b:pull,push"]
        );
        assert_eq!(
            Scopes::parse("repository:host:5000/a:pull").items(),
            vec!["repository:host:5000/a:pull"]
        );
    }
}
