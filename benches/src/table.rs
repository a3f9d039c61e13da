//! Medians of the samples, and the ratios of mirror against the others,
//! as a Markdown table.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use crate::copier::{Contender, Copier};
use crate::measure::Sample;

/// Samples by (scenario, phase, contender).
#[derive(Default)]
pub struct Results {
    pub samples: BTreeMap<(String, String, Contender), Vec<Sample>>,
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

struct Medians {
    wall: f64,
    cpu: f64,
    rss_mib: f64,
    source_mib: f64,
    requests: f64,
    runs: usize,
}

impl Results {
    pub fn add(&mut self, scenario: &str, phase: &str, contender: &Contender, s: Sample) {
        self.samples
            .entry((scenario.into(), phase.into(), contender.clone()))
            .or_default()
            .push(s);
    }

    fn medians(&self, key: &(String, String, Contender)) -> Option<Medians> {
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

    /// The table: one row per (scenario, phase, copier) with medians, then
    /// the wall time of `mirror copy` and of `mirror sync` divided by this
    /// row's (below 1: mirror is faster).
    pub fn markdown(&self) -> String {
        let mut out = String::new();
        out.push_str("| scenario | phase | copier | runs | wall s | CPU s | peak RSS MiB | source MiB | requests | mirror copy ÷ this | mirror sync ÷ this |\n");
        out.push_str(
            "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n",
        );
        for key in self.samples.keys() {
            let Some(m) = self.medians(key) else { continue };
            let ratio = |mine: Copier| {
                let mine = Contender::plain(mine);
                match self.medians(&(key.0.clone(), key.1.clone(), mine.clone())) {
                    Some(me) if key.2 != mine => format!("{:.2}", me.wall / m.wall),
                    _ => String::new(),
                }
            };
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {:.2} | {:.2} | {:.0} | {:.0} | {:.0} | {} | {} |",
                key.0,
                key.1,
                key.2.name(),
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
}
