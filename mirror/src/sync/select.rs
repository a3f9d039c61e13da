//! Which tags of a repository a sync entry takes: an explicit list,
//! regular-expression include and exclude, a semver range, the latest N by
//! semver — and the named captures of the include pattern that matched, for
//! the target tag template.

use std::collections::{BTreeMap, BTreeSet};

use regex::Regex;

/// A tag chosen, with the values its target tag template may use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selected {
    pub tag: String,
    /// Named captures of the include regex that matched.
    pub captures: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default)]
pub struct TagSelector {
    /// Tags taken as they are (variables already filled in).
    pub explicit: Vec<String>,
    pub include: Vec<Regex>,
    pub exclude: Vec<Regex>,
    pub semver: Option<semver::VersionReq>,
    pub latest: Option<usize>,
}

impl TagSelector {
    /// Whether the repository's tags must be listed: anything beyond an
    /// explicit list filters what is there. An explicit list alone costs no
    /// listing: its tags are asked for directly.
    pub fn needs_listing(&self) -> bool {
        self.explicit.is_empty()
            || !self.include.is_empty()
            || !self.exclude.is_empty()
            || self.semver.is_some()
            || self.latest.is_some()
    }

    fn filters(&self) -> bool {
        !self.include.is_empty()
            || !self.exclude.is_empty()
            || self.semver.is_some()
            || self.latest.is_some()
    }

    /// The tags to sync, sorted, from the repository's tags (`None` when
    /// not listed). Explicit tags are always taken; filters pick from the
    /// listed ones. With neither, every listed tag.
    pub fn select(&self, listed: Option<&[String]>) -> Vec<Selected> {
        let mut out: BTreeMap<String, Selected> = BTreeMap::new();
        for tag in &self.explicit {
            out.insert(
                tag.clone(),
                Selected {
                    tag: tag.clone(),
                    captures: self.captures(tag).unwrap_or_default(),
                },
            );
        }
        let listed = listed.unwrap_or_default();
        if self.explicit.is_empty() || self.filters() {
            let mut picked: Vec<(Selected, Option<semver::Version>)> = Vec::new();
            for tag in listed {
                let Some(captures) = self.captures(tag) else {
                    continue;
                };
                if self.exclude.iter().any(|r| r.is_match(tag)) {
                    continue;
                }
                let version = parse_version(tag);
                if let Some(req) = &self.semver {
                    match &version {
                        Some(v) if req.matches(v) => {}
                        _ => continue,
                    }
                }
                if self.latest.is_some() && version.is_none() {
                    continue;
                }
                picked.push((
                    Selected {
                        tag: tag.clone(),
                        captures,
                    },
                    version,
                ));
            }
            if let Some(n) = self.latest {
                // Highest versions first; equal versions (`1.2` and `v1.2`)
                // by tag, so the choice never depends on listing order.
                picked.sort_by(|(a, va), (b, vb)| vb.cmp(va).then_with(|| a.tag.cmp(&b.tag)));
                picked.truncate(n);
            }
            for (s, _) in picked {
                out.insert(s.tag.clone(), s);
            }
        }
        out.into_values().collect()
    }

    /// The include pattern's named captures for `tag`, or `None` when
    /// include patterns are given and none matches.
    fn captures(&self, tag: &str) -> Option<BTreeMap<String, String>> {
        if self.include.is_empty() {
            return Some(BTreeMap::new());
        }
        self.include.iter().find_map(|r| {
            r.captures(tag).map(|c| {
                r.capture_names()
                    .flatten()
                    .filter_map(|n| c.name(n).map(|m| (n.to_string(), m.as_str().to_string())))
                    .collect()
            })
        })
    }

    /// The filters as written, for a message: `include ['^v9\.'], latest 3`.
    pub fn describe(&self) -> String {
        let patterns = |rs: &[Regex]| {
            let quoted: Vec<String> = rs.iter().map(|r| format!("'{}'", r.as_str())).collect();
            format!("[{}]", quoted.join(", "))
        };
        let mut parts = Vec::new();
        if !self.include.is_empty() {
            parts.push(format!("include {}", patterns(&self.include)));
        }
        if !self.exclude.is_empty() {
            parts.push(format!("exclude {}", patterns(&self.exclude)));
        }
        if let Some(req) = &self.semver {
            parts.push(format!("semver '{req}'"));
        }
        if let Some(n) = self.latest {
            parts.push(format!("latest {n}"));
        }
        if parts.is_empty() {
            "no filter".into()
        } else {
            parts.join(", ")
        }
    }

    /// Names of the include patterns' named groups.
    pub fn capture_names(&self) -> BTreeSet<String> {
        self.include
            .iter()
            .flat_map(|r| r.capture_names().flatten().map(str::to_string))
            .collect()
    }
}

/// A tag as a semantic version: `1.2.3`, `v1.2.3`, `1.2.3-rc.1`, and the
/// short forms `1.2` and `1` (as `1.2.0`, `1.0.0`) that images often use.
pub fn parse_version(tag: &str) -> Option<semver::Version> {
    let t = tag.strip_prefix('v').unwrap_or(tag);
    if let Ok(v) = semver::Version::parse(t) {
        return Some(v);
    }
    let (core, pre) = match t.split_once('-') {
        Some((c, p)) => (c, Some(p)),
        None => (t, None),
    };
    let nums: Vec<&str> = core.split('.').collect();
    if nums.is_empty()
        || nums.len() > 2
        || nums
            .iter()
            .any(|n| n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()))
    {
        return None;
    }
    let mut full = nums.join(".");
    for _ in nums.len()..3 {
        full.push_str(".0");
    }
    if let Some(p) = pre {
        full.push('-');
        full.push_str(p);
    }
    semver::Version::parse(&full).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    fn names(s: &[Selected]) -> Vec<&str> {
        s.iter().map(|x| x.tag.as_str()).collect()
    }

    const LISTED: &[&str] = &[
        "1.0.0",
        "1.1.0",
        "1.2.0",
        "1.10.0",
        "2.0.0",
        "2.1.0-rc.1",
        "v2.1.0",
        "latest",
        "1.2-alpine",
        "3.0",
    ];

    #[test]
    fn explicit_tags_need_no_listing() {
        let s = TagSelector {
            explicit: tags(&["b", "a"]),
            ..Default::default()
        };
        assert!(!s.needs_listing());
        assert_eq!(names(&s.select(None)), vec!["a", "b"]);
    }

    #[test]
    fn include_and_exclude_regexes() {
        let s = TagSelector {
            include: vec![Regex::new(r"^1\.").unwrap()],
            exclude: vec![Regex::new("alpine").unwrap()],
            ..Default::default()
        };
        assert!(s.needs_listing());
        assert_eq!(
            names(&s.select(Some(&tags(LISTED)))),
            vec!["1.0.0", "1.1.0", "1.10.0", "1.2.0"]
        );
    }

    #[test]
    fn semver_ranges_and_latest_n() {
        let s = TagSelector {
            semver: Some(semver::VersionReq::parse(">=1.2, <3").unwrap()),
            ..Default::default()
        };
        // Pre-releases match only a range that names one; `1.2-alpine` is a
        // pre-release of 1.2.0.
        assert_eq!(
            names(&s.select(Some(&tags(LISTED)))),
            vec!["1.10.0", "1.2.0", "2.0.0", "v2.1.0"]
        );
        let s = TagSelector {
            latest: Some(3),
            exclude: vec![Regex::new("-").unwrap()],
            ..Default::default()
        };
        assert_eq!(
            names(&s.select(Some(&tags(LISTED)))),
            vec!["2.0.0", "3.0", "v2.1.0"]
        );
    }

    #[test]
    fn named_captures_come_with_the_tag() {
        let s = TagSelector {
            include: vec![Regex::new(r"^(?P<region>[a-z]+)-stable$").unwrap()],
            ..Default::default()
        };
        let picked = s.select(Some(&tags(&["eastus-stable", "westus-stable", "beta"])));
        assert_eq!(names(&picked), vec!["eastus-stable", "westus-stable"]);
        assert_eq!(picked[0].captures["region"], "eastus");
        assert_eq!(
            s.capture_names().into_iter().collect::<Vec<_>>(),
            vec!["region"]
        );
    }

    #[test]
    fn short_versions_parse() {
        assert_eq!(parse_version("v1.2").unwrap().to_string(), "1.2.0");
        assert_eq!(parse_version("3").unwrap().to_string(), "3.0.0");
        assert_eq!(
            parse_version("1.2-alpine").unwrap().to_string(),
            "1.2.0-alpine"
        );
        assert!(parse_version("latest").is_none());
        assert!(parse_version("1.2.3.4").is_none());
    }
}
