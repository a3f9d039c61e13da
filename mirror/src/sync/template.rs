//! Templates with `{name}` placeholders, for target repositories and tags:
//! `stable` (no placeholder), `{tag}`, `{version}-slim` (a named capture of
//! an include regex), `myacr.azurecr.io/mirror/{repo}`, `{region}-stable`
//! (a variable from `vars:`).
//!
//! `{region}-stable → stable` is written as a source tag template and a
//! target tag template: `tags: ["{region}-stable"]` with `vars: {region:
//! eastus}` selects `eastus-stable`, and `target_tag: stable` names it at
//! the target.

use std::collections::BTreeMap;
use std::fmt;

/// A parsed template: literal text and placeholders, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    text: String,
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(String),
    Placeholder(String),
}

impl Template {
    /// Parse `text`; errors say what is wrong (the caller adds where).
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut rest = text;
        while let Some(i) = rest.find(['{', '}']) {
            literal.push_str(&rest[..i]);
            if rest[i..].starts_with('}') {
                return Err(format!(
                    "template {text:?} has a '}}' without a matching '{{'"
                ));
            }
            let after = &rest[i + 1..];
            let Some(end) = after.find('}') else {
                return Err(format!("template {text:?} has a '{{' that is never closed"));
            };
            let name = &after[..end];
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(format!(
                    "template {text:?} has a bad placeholder {{{name}}} (use letters, digits and _)"
                ));
            }
            if !literal.is_empty() {
                parts.push(Part::Literal(std::mem::take(&mut literal)));
            }
            parts.push(Part::Placeholder(name.to_string()));
            rest = &after[end + 1..];
        }
        literal.push_str(rest);
        if !literal.is_empty() {
            parts.push(Part::Literal(literal));
        }
        Ok(Template {
            text: text.to_string(),
            parts,
        })
    }

    /// The placeholder names it uses.
    pub fn placeholders(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|p| match p {
            Part::Placeholder(n) => Some(n.as_str()),
            Part::Literal(_) => None,
        })
    }

    pub fn has_placeholders(&self) -> bool {
        self.placeholders().next().is_some()
    }

    /// Every placeholder must be one of `known`; the error names the first
    /// that is not, and what is allowed.
    pub fn check(&self, known: &[&str]) -> Result<(), String> {
        for name in self.placeholders() {
            if !known.contains(&name) {
                let mut allowed: Vec<String> = known.iter().map(|k| format!("{{{k}}}")).collect();
                allowed.sort();
                allowed.dedup();
                return Err(format!(
                    "template {:?} uses {{{name}}}, which is not defined here (allowed: {}; define variables under vars:)",
                    self.text,
                    allowed.join(", ")
                ));
            }
        }
        Ok(())
    }

    /// Fill in the placeholders; an unknown one is an error naming it.
    pub fn render(&self, values: &BTreeMap<String, String>) -> Result<String, String> {
        let mut out = String::new();
        for p in &self.parts {
            match p {
                Part::Literal(s) => out.push_str(s),
                Part::Placeholder(n) => match values.get(n) {
                    Some(v) => out.push_str(v),
                    None => {
                        return Err(format!(
                            "template {:?}: {{{n}}} has no value here",
                            self.text
                        ))
                    }
                },
            }
        }
        Ok(out)
    }

    /// A tag pattern as an anchored regular expression: placeholders with a
    /// value in `fixed` match that value; the others match a run of tag
    /// characters and capture it under their name (`{region}-stable` →
    /// `^(?P<region>[A-Za-z0-9_.-]+?)-stable$`).
    pub fn to_regex(&self, fixed: &BTreeMap<String, String>) -> String {
        let mut out = String::from("^");
        let mut seen = std::collections::BTreeSet::new();
        for p in &self.parts {
            match p {
                Part::Literal(s) => out.push_str(&regex::escape(s)),
                Part::Placeholder(n) => match fixed.get(n) {
                    Some(v) => out.push_str(&regex::escape(v)),
                    // A name used twice must match the same text both times;
                    // the regex crate has no backreferences, so the second
                    // use only has to look like a tag.
                    None if !seen.insert(n.clone()) => out.push_str("[A-Za-z0-9_.-]+?"),
                    None => out.push_str(&format!("(?P<{n}>[A-Za-z0-9_.-]+?)")),
                },
            }
        }
        out.push('$');
        out
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl fmt::Display for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn placeholders_are_filled_in_and_literals_kept() {
        let t = Template::parse("{region}-stable").unwrap();
        assert_eq!(
            t.render(&values(&[("region", "eastus")])).unwrap(),
            "eastus-stable"
        );
        let t = Template::parse("stable").unwrap();
        assert!(!t.has_placeholders());
        assert_eq!(t.render(&values(&[])).unwrap(), "stable");
        let t = Template::parse("reg.io/mirror/{repo}:x{tag}y").unwrap();
        assert_eq!(t.placeholders().collect::<Vec<_>>(), vec!["repo", "tag"]);
        assert_eq!(
            t.render(&values(&[("repo", "a/b"), ("tag", "1")])).unwrap(),
            "reg.io/mirror/a/b:x1y"
        );
    }

    #[test]
    fn a_tag_pattern_captures_its_free_placeholders() {
        let t = Template::parse("{region}-stable.{n}").unwrap();
        let r = regex::Regex::new(&t.to_regex(&values(&[("n", "1")]))).unwrap();
        let c = r.captures("eastus-stable.1").unwrap();
        assert_eq!(&c["region"], "eastus");
        assert!(!r.is_match("eastus-stable.2"));
        assert!(!r.is_match("x-eastus-stablex1"));
    }

    #[test]
    fn bad_templates_say_what_is_wrong() {
        assert!(Template::parse("{region")
            .unwrap_err()
            .contains("never closed"));
        assert!(Template::parse("a}").unwrap_err().contains("'}'"));
        assert!(Template::parse("{}")
            .unwrap_err()
            .contains("bad placeholder"));
        assert!(Template::parse("{a-b}").unwrap_err().contains("{a-b}"));
        let t = Template::parse("{regoin}-stable").unwrap();
        let err = t.check(&["tag", "region"]).unwrap_err();
        assert!(
            err.contains("{regoin}") && err.contains("{region}"),
            "{err}"
        );
        assert!(t.render(&values(&[])).unwrap_err().contains("{regoin}"));
    }
}
