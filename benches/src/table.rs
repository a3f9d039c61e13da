//! Medians of the samples, and the ratios of mirror against the others,
//! as Markdown tables and as the chart's panels.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use crate::chart::{Group, Panel};
use crate::copier::{Contender, Copier};
use crate::measure::Sample;

/// Where a sample belongs. Scenarios and profiles sort in the order they
/// ran (the number), then by name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Key {
    pub scenario: (usize, String),
    pub profile: (usize, String),
    pub phase: String,
    pub contender: Contender,
}

#[derive(Default)]
pub struct Results {
    pub samples: BTreeMap<Key, Vec<Sample>>,
    /// Tags of each scenario, for the scale table.
    pub tags: BTreeMap<String, usize>,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

pub struct Medians {
    pub wall: f64,
    pub cpu: f64,
    pub rss_mib: f64,
    pub source_mib: f64,
    pub requests: f64,
    pub runs: usize,
}

/// Scenarios from this many tags on get the scale table.
const SCALE_TAGS: usize = 1000;

impl Results {
    pub fn add(&mut self, key: Key, s: Sample) {
        self.samples.entry(key).or_default().push(s);
    }

    pub fn medians(&self, key: &Key) -> Option<Medians> {
        let v = self.samples.get(key)?;
        let secs =
            |f: fn(&Sample) -> Duration| median(v.iter().map(|s| f(s).as_secs_f64()).collect());
        Some(Medians {
            wall: secs(|s| s.wall),
            cpu: secs(|s| s.cpu),
            rss_mib: median(v.iter().map(|s| s.max_rss_kib as f64 / 1024.0).collect()),
            source_mib: median(
                v.iter()
                    .map(|s| s.source_bytes as f64 / 1048576.0)
                    .collect(),
            ),
            requests: median(v.iter().map(|s| s.requests as f64).collect()),
            runs: v.len(),
        })
    }

    fn with(key: &Key, copier: Copier) -> Key {
        Key {
            contender: Contender::plain(copier),
            ..key.clone()
        }
    }

    /// The table: one row per (scenario, profile, phase, contender) with
    /// medians, then the wall time of `mirror copy` and of `mirror sync`
    /// divided by this row's (below 1: mirror is faster).
    pub fn markdown(&self) -> String {
        let mut out = String::new();
        out.push_str("| scenario | profile | phase | copier | runs | wall s | CPU s | peak RSS MiB | source MiB | requests | mirror copy ÷ this | mirror sync ÷ this |\n");
        out.push_str(
            "| --- | --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n",
        );
        for key in self.samples.keys() {
            let Some(m) = self.medians(key) else { continue };
            let ratio = |mine: Copier| {
                let mine = Self::with(key, mine);
                match self.medians(&mine) {
                    Some(me) if *key != mine => format!("{:.2}", me.wall / m.wall),
                    _ => String::new(),
                }
            };
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {:.2} | {:.2} | {:.0} | {:.0} | {:.0} | {} | {} |",
                key.scenario.1,
                key.profile.1,
                key.phase,
                key.contender.name(),
                m.runs,
                m.wall,
                m.cpu,
                m.rss_mib,
                m.source_mib,
                m.requests,
                ratio(Copier::Mirror),
                ratio(Copier::MirrorSync),
            );
        }
        out
    }

    /// For scenarios of many tags: tags per second and requests per tag
    /// (both registries, listings included). Empty when there are none.
    pub fn scale_markdown(&self) -> String {
        let mut out = String::new();
        for key in self.samples.keys() {
            let Some(&tags) = self.tags.get(&key.scenario.1) else {
                continue;
            };
            if tags < SCALE_TAGS {
                continue;
            }
            let Some(m) = self.medians(key) else { continue };
            if out.is_empty() {
                out.push_str("| scenario | tags | profile | phase | copier | wall s | tags/s | requests | requests/tag | peak RSS MiB |\n");
                out.push_str(
                    "| --- | ---: | --- | --- | --- | ---: | ---: | ---: | ---: | ---: |\n",
                );
            }
            let _ = writeln!(
                out,
                "| {} | {tags} | {} | {} | {} | {:.2} | {:.0} | {:.0} | {:.2} | {:.0} |",
                key.scenario.1,
                key.profile.1,
                key.phase,
                key.contender.name(),
                m.wall,
                tags as f64 / m.wall,
                m.requests,
                m.requests / tags as f64,
                m.rss_mib,
            );
        }
        out
    }

    /// The chart's panels: one per profile, a group per scenario and
    /// phase, the limit as its line.
    pub fn panels(&self) -> Vec<Panel> {
        type Groups<'a> = BTreeMap<(&'a (usize, String), &'a str), Group>;
        let mut panels: BTreeMap<(usize, String), Groups> = BTreeMap::new();
        for key in self.samples.keys() {
            let Some(m) = self.medians(key) else { continue };
            let group = panels
                .entry(key.profile.clone())
                .or_default()
                .entry((&key.scenario, &key.phase))
                .or_insert_with(|| Group {
                    label: (key.scenario.1.clone(), key.phase.clone()),
                    bars: Vec::new(),
                    limit: None,
                });
            if key.contender.copier == Copier::Limit {
                group.limit = Some(m.wall);
            } else {
                group.bars.push((key.contender.name(), m.wall));
            }
        }
        panels
            .into_iter()
            .map(|((_, title), groups)| Panel {
                title,
                groups: groups.into_values().collect(),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(secs: f64, requests: u64) -> Sample {
        Sample {
            wall: Duration::from_secs_f64(secs),
            requests,
            ..Default::default()
        }
    }

    fn key(scenario: &str, profile: (usize, &str), copier: Copier) -> Key {
        Key {
            scenario: (0, scenario.into()),
            profile: (profile.0, profile.1.into()),
            phase: "rerun".into(),
            contender: Contender::plain(copier),
        }
    }

    #[test]
    fn tables_and_panels_follow_the_samples() {
        let mut r = Results::default();
        let wan = (1, "40ms,1gbit");
        let lo = (0, "loopback");
        r.add(key("huge 1000", wan, Copier::Mirror), sample(4.0, 2500));
        r.add(key("huge 1000", wan, Copier::Mirror), sample(2.0, 2500));
        r.add(key("huge 1000", wan, Copier::Mirror), sample(3.0, 2500));
        r.add(key("huge 1000", wan, Copier::Limit), sample(1.5, 2000));
        r.add(key("huge 1000", lo, Copier::Regsync), sample(1.0, 3000));
        r.tags.insert("huge 1000".into(), 1000);
        let table = r.markdown();
        // The median of three, and mirror's ratio to the limit.
        assert!(
            table.contains("| huge 1000 | 40ms,1gbit | rerun | mirror | 3 | 3.00 |"),
            "{table}"
        );
        assert!(
            table.contains("| limit | 1 | 1.50 | 0.00 | 0 | 0 | 2000 | 2.00 |"),
            "{table}"
        );
        let scale = r.scale_markdown();
        assert!(
            scale.contains(
                "| huge 1000 | 1000 | 40ms,1gbit | rerun | mirror | 3.00 | 333 | 2500 | 2.50 |"
            ),
            "{scale}"
        );
        // Loopback first (it ran first), then the WAN profile.
        let panels = r.panels();
        assert_eq!(
            panels.iter().map(|p| p.title.as_str()).collect::<Vec<_>>(),
            ["loopback", "40ms,1gbit"]
        );
        assert_eq!(panels[1].groups[0].limit, Some(1.5));
        assert_eq!(panels[1].groups[0].bars, [("mirror".to_string(), 3.0)]);
    }
}
