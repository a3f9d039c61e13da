//! The results as an SVG chart, written by hand: for each profile a panel
//! of grouped bars, one group per scenario and phase, one bar per
//! contender (its median wall time, on a logarithmic axis: reruns take
//! hundredths of a second, cold copies minutes), the limit drawn across
//! its group as a dashed line.

use std::fmt::Write as _;

/// One scenario and phase: a bar per contender and the limit.
#[derive(Debug, Clone)]
pub struct Group {
    /// Two lines under the group: scenario, phase.
    pub label: (String, String),
    /// Contender and seconds.
    pub bars: Vec<(String, f64)>,
    pub limit: Option<f64>,
}

/// One profile's groups.
#[derive(Debug, Clone)]
pub struct Panel {
    pub title: String,
    pub groups: Vec<Group>,
}

const BAR: f64 = 9.0;
const GAP: f64 = 18.0;
const LEFT: f64 = 64.0;
const RIGHT: f64 = 16.0;
const PLOT: f64 = 220.0;
/// Title above a panel's plot, labels below it.
const ABOVE: f64 = 28.0;
const BELOW: f64 = 40.0;
const LEGEND: f64 = 22.0;
const PALETTE: [&str; 10] = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
    "#bcbd22", "#17becf",
];

/// The chart as an SVG document. Contenders are coloured by their order
/// of first appearance, the same in every panel.
pub fn svg(title: &str, panels: &[Panel]) -> String {
    let mut names: Vec<&str> = Vec::new();
    for g in panels.iter().flat_map(|p| &p.groups) {
        for (n, _) in &g.bars {
            if !names.contains(&n.as_str()) {
                names.push(n);
            }
        }
    }
    let colour = |n: &str| {
        let i = names.iter().position(|m| *m == n).unwrap_or(0);
        PALETTE[i % PALETTE.len()]
    };
    let values = panels
        .iter()
        .flat_map(|p| &p.groups)
        .flat_map(|g| g.bars.iter().map(|b| b.1).chain(g.limit))
        .filter(|v| v.is_finite() && *v > 0.0);
    let (lo, hi) = values.fold((f64::MAX, f64::MIN), |(lo, hi), v| (lo.min(v), hi.max(v)));
    let (lo, hi) = if lo > hi { (0.01, 1.0) } else { (lo, hi) };
    let (d0, d1) = (lo.log10().floor() as i32, hi.log10().ceil() as i32);
    let d1 = d1.max(d0 + 1);
    let y = |v: f64| {
        let v = v.max(10f64.powi(d0));
        PLOT - (v.log10() - d0 as f64) / (d1 - d0) as f64 * PLOT
    };
    let group_width = |g: &Group| g.bars.len().max(1) as f64 * BAR + GAP;
    let plot_width = panels
        .iter()
        .map(|p| p.groups.iter().map(group_width).sum::<f64>())
        .fold(0.0, f64::max);
    let legend_width: f64 = names
        .iter()
        .map(|n| 20.0 + 6.0 * n.chars().count() as f64)
        .sum::<f64>()
        + 50.0;
    let width = (LEFT + plot_width.max(legend_width) + RIGHT).max(480.0);
    let panel_height = ABOVE + PLOT + BELOW;
    let height = 30.0 + LEGEND + panel_height * panels.len() as f64;

    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<?xml version="1.0" encoding="UTF-8"?>
<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0}" height="{height:.0}" viewBox="0 0 {width:.0} {height:.0}" font-family="sans-serif" font-size="10">
<rect width="100%" height="100%" fill="white"/>
<text x="{LEFT}" y="18" font-size="13" font-weight="bold">{}</text>"#,
        escape(title)
    );
    // Legend: the contenders, then the limit.
    let mut x = LEFT;
    let ly = 30.0 + LEGEND / 2.0;
    for n in &names {
        let _ = writeln!(
            out,
            r#"<rect x="{x:.1}" y="{:.1}" width="10" height="10" fill="{}"/><text x="{:.1}" y="{:.1}">{}</text>"#,
            ly - 8.0,
            colour(n),
            x + 13.0,
            ly,
            escape(n)
        );
        x += 20.0 + 6.0 * n.chars().count() as f64;
    }
    let _ = writeln!(
        out,
        r#"<line x1="{x:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="black" stroke-width="1.5" stroke-dasharray="4 2"/><text x="{:.1}" y="{ly:.1}">limit</text>"#,
        ly - 3.0,
        x + 16.0,
        ly - 3.0,
        x + 19.0
    );
    for (i, panel) in panels.iter().enumerate() {
        let top = 30.0 + LEGEND + panel_height * i as f64 + ABOVE;
        let _ = writeln!(
            out,
            r#"<g transform="translate(0 {top:.1})">
<text x="{LEFT}" y="-8" font-size="12" font-weight="bold">{}</text>"#,
            escape(&panel.title)
        );
        // One grid line per decade.
        for d in d0..=d1 {
            let gy = y(10f64.powi(d));
            let _ = writeln!(
                out,
                r##"<line x1="{LEFT}" y1="{gy:.1}" x2="{:.1}" y2="{gy:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" text-anchor="end">{} s</text>"##,
                width - RIGHT,
                LEFT - 4.0,
                gy + 3.0,
                decade(d)
            );
        }
        let mut gx = LEFT + GAP / 2.0;
        for g in &panel.groups {
            for (j, (n, v)) in g.bars.iter().enumerate() {
                let bx = gx + j as f64 * BAR;
                let by = y(*v);
                let _ = writeln!(
                    out,
                    r#"<rect x="{bx:.1}" y="{by:.1}" width="{:.1}" height="{:.1}" fill="{}"><title>{}: {} s</title></rect>"#,
                    BAR - 1.0,
                    (PLOT - by).max(0.0),
                    colour(n),
                    escape(n),
                    seconds(*v)
                );
            }
            if let Some(l) = g.limit {
                let ly = y(l);
                let _ = writeln!(
                    out,
                    r#"<line x1="{:.1}" y1="{ly:.1}" x2="{:.1}" y2="{ly:.1}" stroke="black" stroke-width="1.5" stroke-dasharray="4 2"><title>limit: {} s</title></line>"#,
                    gx - 3.0,
                    gx + g.bars.len() as f64 * BAR + 2.0,
                    seconds(l)
                );
            }
            let cx = gx + g.bars.len() as f64 * BAR / 2.0;
            let _ = writeln!(
                out,
                r#"<text x="{cx:.1}" y="{:.1}" text-anchor="middle">{}</text><text x="{cx:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
                PLOT + 14.0,
                escape(&g.label.0),
                PLOT + 26.0,
                escape(&g.label.1)
            );
            gx += group_width(g);
        }
        let _ = writeln!(
            out,
            r#"<line x1="{LEFT}" y1="{PLOT}" x2="{:.1}" y2="{PLOT}" stroke="black"/>
</g>"#,
            width - RIGHT
        );
    }
    out.push_str("</svg>\n");
    out
}

/// 0.01, 0.1, 1, 10, 100; 4.53; 0.062.
fn seconds(v: f64) -> String {
    if v >= 10.0 || v == v.round() {
        format!("{v:.0}")
    } else if v >= 0.1 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

/// 10^d as a grid label: 0.01, 1, 100.
fn decade(d: i32) -> String {
    format!("{:.*}", (-d).max(0) as usize, 10f64.powi(d))
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&apos;")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small well-formedness check: declarations, comments, start, end
    /// and empty tags with quoted attributes, entities in text; every tag
    /// closed in order under one root. Returns the element names in order.
    fn well_formed(doc: &str) -> Result<Vec<String>, String> {
        let mut stack: Vec<String> = Vec::new();
        let mut seen = Vec::new();
        let mut roots = 0;
        let mut rest = doc;
        let entity = |text: &str| -> Result<(), String> {
            let mut t = text;
            while let Some(i) = t.find('&') {
                let end = t[i..].find(';').ok_or("an unterminated entity")?;
                let name = &t[i + 1..i + end];
                let known = ["amp", "lt", "gt", "quot", "apos"].contains(&name)
                    || (name.starts_with('#') && name[1..].chars().all(|c| c.is_ascii_digit()));
                if !known {
                    return Err(format!("unknown entity &{name};"));
                }
                t = &t[i + end + 1..];
            }
            if t.contains('<') || t.contains('>') {
                return Err("a bare < or >".into());
            }
            Ok(())
        };
        while let Some(i) = rest.find('<') {
            entity(&rest[..i])?;
            if !stack.is_empty() || rest[..i].trim().is_empty() {
            } else {
                return Err(format!("text outside the root: {:?}", &rest[..i]));
            }
            rest = &rest[i..];
            if let Some(r) = rest.strip_prefix("<?") {
                let end = r.find("?>").ok_or("an unterminated declaration")?;
                rest = &r[end + 2..];
                continue;
            }
            if let Some(r) = rest.strip_prefix("<!--") {
                let end = r.find("-->").ok_or("an unterminated comment")?;
                rest = &r[end + 3..];
                continue;
            }
            let end = rest.find('>').ok_or("an unterminated tag")?;
            let tag = &rest[1..end];
            rest = &rest[end + 1..];
            if let Some(name) = tag.strip_prefix('/') {
                let open = stack.pop().ok_or(format!("</{name}> closes nothing"))?;
                if open != name.trim() {
                    return Err(format!("<{open}> closed by </{name}>"));
                }
                continue;
            }
            let empty = tag.ends_with('/');
            let body = tag.trim_end_matches('/');
            let name_end = body.find(char::is_whitespace).unwrap_or(body.len());
            let name = &body[..name_end];
            if name.is_empty()
                || !name
                    .chars()
                    .all(|c| c.is_alphanumeric() || c == '-' || c == ':')
            {
                return Err(format!("a bad element name {name:?}"));
            }
            // Attributes: name="value", values without < or a bare &.
            let mut attrs = body[name_end..].trim();
            while !attrs.is_empty() {
                let eq = attrs
                    .find('=')
                    .ok_or(format!("an attribute without a value in <{name}>"))?;
                let q = attrs[eq + 1..].chars().next().ok_or("a missing quote")?;
                if q != '"' && q != '\'' {
                    return Err(format!("an unquoted attribute in <{name}>"));
                }
                let value_start = eq + 2;
                let close = attrs[value_start..]
                    .find(q)
                    .ok_or("an unterminated attribute")?;
                entity(&attrs[value_start..value_start + close])?;
                attrs = attrs[value_start + close + 1..].trim_start();
            }
            if stack.is_empty() {
                roots += 1;
            }
            seen.push(name.to_string());
            if !empty {
                stack.push(name.to_string());
            }
        }
        entity(rest)?;
        if !rest.trim().is_empty() {
            return Err("text after the root".into());
        }
        if let Some(open) = stack.pop() {
            return Err(format!("<{open}> never closed"));
        }
        if roots != 1 {
            return Err(format!("{roots} root elements"));
        }
        Ok(seen)
    }

    #[test]
    fn the_checker_refuses_what_is_not_xml() {
        assert!(well_formed("<a><b/></a>").is_ok());
        for bad in [
            "<a><b></a></b>",
            "<a>",
            "<a x=1/>",
            "<a>&nope;</a>",
            "<a/><b/>",
            "<a>1 < 2</a>",
        ] {
            assert!(well_formed(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_chart_is_well_formed_with_a_bar_per_contender_and_the_limit_marked() {
        let group = |scenario: &str, limit| Group {
            label: (scenario.into(), "cold <&> \"phase\"".into()),
            bars: vec![
                ("mirror".into(), 4.53),
                ("mirror sync".into(), 0.06),
                ("skopeo copy".into(), 120.0),
            ],
            limit,
        };
        let panels = [
            Panel {
                title: "loopback".into(),
                groups: vec![group("azureml", Some(3.81)), group("many", None)],
            },
            Panel {
                title: "40ms,1gbit".into(),
                groups: vec![group("big", Some(21.5))],
            },
        ];
        let doc = svg("mirror & peers", &panels);
        let elements = well_formed(&doc).unwrap_or_else(|e| panic!("{e}\n{doc}"));
        assert_eq!(elements[0], "svg");
        // The background, a legend square per contender, and the bars.
        assert_eq!(
            elements.iter().filter(|e| *e == "rect").count(),
            1 + 3 + 3 * 3
        );
        assert_eq!(doc.matches("<title>limit: ").count(), 2);
        assert!(doc.contains("<title>skopeo copy: 120 s</title>"));
        // The axis spans the decades of the data: 0.01 s to 1000 s.
        assert!(doc.contains(">0.01 s<"), "{doc}");
        assert!(doc.contains(">1000 s<"));
        // An empty chart is still a document.
        well_formed(&svg("nothing", &[])).unwrap();
    }
}
