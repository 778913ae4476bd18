//! `drill … --report DIR`: one SVG timeline per configuration (every trial overlaid on a time axis
//! relative to its fault: each request a point at its send time by latency, failures marked by kind;
//! the fault, the elections, the old node back as a voter and the LB's server state changes as vertical
//! marks) and one offline `index.html` with the summary table side by side for each configuration and
//! the SVGs inline. Drawn with plotters' SVG backend: text is SVG `<text>`, no font is read at
//! generation time and the page loads nothing from the network.

use super::measure::{Kind, TimelineRecord};
use super::report::DrillReport;
use super::run::{ConfigReport, Scenario};
use anyhow::{anyhow, Context, Result};
use plotters::prelude::*;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::{Path, PathBuf};

const WIDTH: u32 = 900;
const HEIGHT: u32 = 540;
/// Latencies are drawn on a log axis; anything faster is drawn at this floor (ms).
const Y_FLOOR_MS: f64 = 0.1;
/// Radius of a successful request's point and of a failed one's (failures stand out).
pub const OK_RADIUS: u32 = 2;
pub const FAILED_RADIUS: u32 = 4;

const OK_COLOR: RGBColor = RGBColor(70, 110, 170);
const FAULT_COLOR: RGBColor = RGBColor(200, 0, 0);
const ELECTED_COLOR: RGBColor = RGBColor(0, 150, 60);
const VOTER_COLOR: RGBColor = RGBColor(120, 120, 120);
const LB_DOWN_COLOR: RGBColor = RGBColor(230, 120, 0);
const LB_UP_COLOR: RGBColor = RGBColor(0, 150, 200);
const LB_OTHER_COLOR: RGBColor = RGBColor(150, 60, 180);

/// A failure kind's color (distinct per kind; HTTP statuses share one hue family).
fn kind_color(k: Kind) -> RGBColor {
    match k {
        Kind::Ok => OK_COLOR,
        Kind::Http(307) => RGBColor(255, 0, 160),
        Kind::Http(c) if c >= 500 => RGBColor(220, 30, 30),
        Kind::Http(_) => RGBColor(160, 0, 0),
        Kind::Refused => RGBColor(240, 170, 0),
        Kind::Timeout => RGBColor(0, 0, 0),
        Kind::Transport => RGBColor(130, 70, 20),
    }
}

/// A vertical mark: where (s from the fault), its label, its color.
struct Mark {
    x: f64,
    label: String,
    color: RGBColor,
    legend: &'static str,
}

fn marks(trials: &[(usize, &TimelineRecord)]) -> Vec<Mark> {
    let mut m = vec![Mark { x: 0.0, label: "fault".into(), color: FAULT_COLOR, legend: "fault (t = 0)" }];
    for (i, t) in trials {
        let rel = |ms: f64| (ms - t.fault_ms) / 1000.0;
        if let Some(e) = t.new_leader_ms {
            m.push(Mark {
                x: rel(e),
                label: format!("elected #{i}"),
                color: ELECTED_COLOR,
                legend: "new active node seen",
            });
        }
        if let Some(v) = t.old_node_healthy_ms {
            m.push(Mark {
                x: rel(v),
                label: format!("voter #{i}"),
                color: VOTER_COLOR,
                legend: "faulted node a voter again",
            });
        }
        for e in t.lb_events.iter().filter(|e| e.from.is_some()) {
            let (color, legend) = match e.to.as_str() {
                "DOWN" => (LB_DOWN_COLOR, "LB: server DOWN"),
                "UP" => (LB_UP_COLOR, "LB: server UP"),
                _ => (LB_OTHER_COLOR, "LB: server DRAIN/MAINT/other"),
            };
            m.push(Mark {
                x: rel(e.at.as_secs_f64() * 1000.0),
                label: format!("{} {} #{i}", e.server, e.to),
                color,
                legend,
            });
        }
    }
    m
}

/// The SVG timeline of one configuration: every trial overlaid, time relative to each trial's fault.
pub fn svg(scenario: Scenario, c: &ConfigReport) -> Result<String> {
    let trials: Vec<(usize, &TimelineRecord)> = c.trials.iter().map(|t| (t.trial, &t.timeline)).collect();
    // Points by kind: (x = send time from the fault in s, y = latency in ms).
    let mut points: BTreeMap<Kind, Vec<(f64, f64)>> = BTreeMap::new();
    let (mut x0, mut x1, mut y1) = (-1.0f64, 1.0f64, 10.0f64);
    for (_, t) in &trials {
        for r in &t.requests {
            let x = (r.sent_ms - t.fault_ms) / 1000.0;
            let y = r.latency_ms.max(Y_FLOOR_MS);
            x0 = x0.min(x);
            x1 = x1.max(x + r.latency_ms / 1000.0);
            y1 = y1.max(y);
            points.entry(r.outcome).or_default().push((x, y));
        }
    }
    let mut marks = marks(&trials);
    // In time order, so that neighbouring marks get different label rows.
    marks.sort_by(|a, b| a.x.total_cmp(&b.x));
    for m in &marks {
        x0 = x0.min(m.x);
        x1 = x1.max(m.x);
    }
    let (x0, x1, y0, y1) = (x0 - 0.5, x1 + 0.5, Y_FLOOR_MS * 0.8, y1 * 60.0);
    let err = |e: &dyn std::fmt::Display| anyhow!("drawing the {} timeline: {e}", c.name);
    let mut buf = String::new();
    {
        let root = SVGBackend::with_string(&mut buf, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| err(&e))?;
        let n = trials.len();
        let caption =
            format!("{} · {} · {} trial{} overlaid", scenario.as_str(), c.name, n, if n == 1 { "" } else { "s" });
        let mut chart = ChartBuilder::on(&root)
            .caption(caption, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(x0..x1, (y0..y1).log_scale())
            .map_err(|e| err(&e))?;
        chart
            .configure_mesh()
            .x_desc("request sent, s from the fault")
            .y_desc("latency, ms (log)")
            .light_line_style(WHITE.mix(0.0))
            .draw()
            .map_err(|e| err(&e))?;
        let mut legends: Vec<&'static str> = Vec::new();
        for (row, m) in marks.iter().enumerate() {
            let style = m.color.stroke_width(if m.label == "fault" { 2 } else { 1 });
            let s = chart.draw_series(LineSeries::new([(m.x, y0), (m.x, y1)], style)).map_err(|e| err(&e))?;
            if !legends.contains(&m.legend) {
                legends.push(m.legend);
                let color = m.color;
                s.label(m.legend).legend(move |(x, y)| Rectangle::new([(x, y - 1), (x + 12, y + 1)], color.filled()));
            }
            // Labels staggered over five rows in the headroom above the points (the y axis reaches
            // 60x the slowest request) so neighbouring marks stay readable.
            let y = y1 / 1.5f64.powi((row % 5) as i32 + 1);
            let font = ("sans-serif", 11).into_font().color(&m.color);
            chart.draw_series(std::iter::once(Text::new(m.label.clone(), (m.x, y), font))).map_err(|e| err(&e))?;
        }
        for (kind, pts) in &points {
            let (r, color) = if *kind == Kind::Ok { (OK_RADIUS, OK_COLOR) } else { (FAILED_RADIUS, kind_color(*kind)) };
            let s = chart.draw_series(pts.iter().map(|&p| Circle::new(p, r, color.filled()))).map_err(|e| err(&e))?;
            let label = format!("{} ({})", kind.describe(), pts.len());
            s.label(label).legend(move |(x, y)| Rectangle::new([(x, y - 4), (x + 8, y + 4)], color.filled()));
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .label_font(("sans-serif", 11))
            .draw()
            .map_err(|e| err(&e))?;
        root.present().map_err(|e| err(&e))?;
    }
    Ok(buf)
}

/// The SVG file name of one configuration's timeline.
pub fn svg_name(scenario: Scenario, config: &str) -> String {
    let safe: String =
        config.chars().map(|ch| if ch.is_ascii_alphanumeric() || ch == '-' { ch } else { '_' }).collect();
    format!("{}-{safe}.svg", scenario.as_str())
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

fn opt_ms(x: Option<f64>) -> String {
    x.map(|v| format!("{v:.0} ms")).unwrap_or_else(|| "-".into())
}

/// The summary rows, one per figure, one column per configuration (side by side).
fn summary_rows(r: &DrillReport) -> Vec<(&'static str, Vec<String>)> {
    let col = |f: &dyn Fn(&ConfigReport) -> String| r.configs.iter().map(f).collect::<Vec<_>>();
    let kinds = |c: &ConfigReport| {
        let mut by: BTreeMap<&str, usize> = BTreeMap::new();
        for t in &c.trials {
            for (k, n) in &t.errors {
                *by.entry(k.as_str()).or_default() += n;
            }
        }
        if by.is_empty() {
            "-".to_string()
        } else {
            by.iter().map(|(k, n)| format!("{k}: {n}")).collect::<Vec<_>>().join(", ")
        }
    };
    vec![
        ("LB profile", col(&|c| c.haproxy_profile.clone())),
        ("raft multiplier", col(&|c| c.performance_multiplier.to_string())),
        ("trials", col(&|c| c.summary.trials.to_string())),
        ("requests", col(&|c| c.summary.requests_total.to_string())),
        ("failed (sent after the fault)", col(&|c| c.summary.failed_total.to_string())),
        ("failures by kind (whole trial)", col(&kinds)),
        ("lost", col(&|c| c.lost.to_string())),
        ("duplicated", col(&|c| c.verdict.duplicates.len().to_string())),
        ("ambiguous (committed)", col(&|c| format!("{} ({})", c.verdict.ambiguous, c.verdict.ambiguous_committed))),
        ("latency p50 after the fault", col(&|c| opt_ms(c.summary.latency_p50_ms))),
        ("latency p99 after the fault", col(&|c| opt_ms(c.summary.latency_p99_ms))),
        (
            "baseline p50 / p99",
            col(&|c| format!("{} / {}", opt_ms(c.summary.baseline_p50_ms), opt_ms(c.summary.baseline_p99_ms))),
        ),
        ("disruption median (max)", col(&|c| c.summary.disruption.human())),
        ("outage median (max)", col(&|c| c.summary.outage.human())),
        ("new leader median (max)", col(&|c| c.summary.new_leader.human())),
        ("verdict", col(&|c| if c.verdict.ok() { "ok".into() } else { "VIOLATED".into() })),
    ]
}

/// The offline page: summary table (configurations side by side), each configuration's SVG inline
/// (and linked), per-trial lines and the goals.
pub fn html(r: &DrillReport, svgs: &[(String, String)]) -> String {
    let mut s = String::new();
    let title = format!("vaultnix drill {}{}", r.scenario.as_str(), if r.drain { " (drained at the LB)" } else { "" });
    let _ = write!(
        s,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>{t}</title>\n<style>\n\
         body {{ font-family: sans-serif; margin: 1.5em; color: #222; }}\n\
         table {{ border-collapse: collapse; margin: 1em 0; }}\n\
         th, td {{ border: 1px solid #bbb; padding: 3px 8px; text-align: left; }}\n\
         thead th {{ background: #eee; }}\n\
         .configs {{ display: flex; flex-wrap: wrap; gap: 1.5em; }}\n\
         .config {{ flex: 1 1 600px; min-width: 0; }}\n\
         .config svg {{ width: 100%; height: auto; border: 1px solid #ddd; }}\n\
         .missed {{ color: #b00; font-weight: bold; }}\n\
         </style>\n</head>\n<body>\n<h1>{t}</h1>\n<p>{n} trial(s) per configuration, {rate} writes/s through the load \
         balancer, a client that does not retry. Each plot overlays every trial on a time axis relative to its \
         fault: one point per request at its send time, by latency; failures are the larger points, colored by \
         kind; vertical marks: the fault, the new active node seen, the faulted node a voter again, and the \
         LB's server state changes (HAProxy <code>show stat</code>, sampled every 100 ms).</p>\n",
        t = esc(&title),
        n = r.trials,
        rate = r.rate_hz
    );
    s.push_str("<table class=\"summary\">\n<thead><tr><th></th>");
    for c in &r.configs {
        let _ = write!(s, "<th>{}</th>", esc(&c.name));
    }
    s.push_str("</tr></thead>\n<tbody>\n");
    for (name, cols) in summary_rows(r) {
        let _ = write!(s, "<tr><th>{}</th>", esc(name));
        for v in cols {
            let _ = write!(s, "<td>{}</td>", esc(&v));
        }
        s.push_str("</tr>\n");
    }
    s.push_str("</tbody>\n</table>\n<div class=\"configs\">\n");
    for (c, (file, svg)) in r.configs.iter().zip(svgs) {
        let _ = write!(s, "<div class=\"config\">\n<h2>{}</h2>\n", esc(&c.name));
        s.push_str(svg.trim());
        let _ = write!(s, "\n<p><a href=\"{f}\">{f}</a></p>\n<ul>\n", f = esc(file));
        for t in &c.trials {
            let _ = writeln!(
                s,
                "<li>#{} {} → {}: {} of {} failed, disruption {} ms, {} acked{}</li>",
                t.trial,
                esc(&t.leader_before),
                esc(t.leader_after.as_deref().unwrap_or("-")),
                t.figures.failed,
                t.figures.requests,
                t.figures.disruption.as_millis(),
                t.acked,
                if t.notes.is_empty() { String::new() } else { format!("; {}", esc(&t.notes.join("; "))) }
            );
        }
        s.push_str("</ul>\n</div>\n");
    }
    s.push_str("</div>\n<h2>Goals</h2>\n<ul>\n");
    for g in &r.goals {
        let _ = writeln!(
            s,
            "<li><span class=\"{}\">[{}]</span> {} ({})</li>",
            if g.met { "met" } else { "missed" },
            if g.met { "ok" } else { "MISSED" },
            esc(&g.name),
            esc(&g.detail)
        );
    }
    s.push_str("</ul>\n</body>\n</html>\n");
    s
}

/// Writes one SVG per configuration and `index.html` into `dir` (created if missing). Returns the
/// files written.
pub fn write(r: &DrillReport, dir: &Path) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create the report directory {}", dir.display()))?;
    let mut svgs = Vec::new();
    for c in &r.configs {
        svgs.push((svg_name(r.scenario, &c.name), svg(r.scenario, c)?));
    }
    let mut files = Vec::new();
    for (name, text) in &svgs {
        let p = dir.join(name);
        crate::output::write_file_atomic(&p, text.as_bytes(), false)?;
        files.push(p);
    }
    let index = dir.join("index.html");
    crate::output::write_file_atomic(&index, html(r, &svgs).as_bytes(), false)?;
    files.push(index);
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::drill::checker::Verdict;
    use crate::drill::measure::{self, LbEvent, Request, Timeline};
    use crate::drill::run::TrialReport;
    use std::time::Duration;

    fn ms(x: u64) -> Duration {
        Duration::from_millis(x)
    }

    /// 40 requests at 10/s, the fault at 1 s; four fail (standby 307, refused, two timeouts), the LB
    /// sees node-a DOWN then node-b UP, the new leader at 1.8 s.
    fn trial(n: usize) -> TrialReport {
        let mut requests = Vec::new();
        for i in 0..40u64 {
            let sent = i * 100;
            let (ok, kind, took) = match i {
                11 => (false, Kind::Http(307), 3),
                12 => (false, Kind::Refused, 1),
                13 | 14 => (false, Kind::Timeout, 2000),
                _ => (true, Kind::Ok, 5 + i % 3),
            };
            requests.push(Request { sent: ms(sent), finished: ms(sent + took), ok, kind });
        }
        let ev = |at, server: &str, from: Option<&str>, to: &str| LbEvent {
            at: ms(at),
            server: server.into(),
            from: from.map(Into::into),
            to: to.into(),
        };
        let tl = Timeline {
            fault_at: ms(1000),
            requests,
            new_leader_at: Some(ms(1800)),
            old_node_healthy_at: Some(ms(3200)),
            lb_events: vec![
                ev(10, "node-a", None, "UP"),
                ev(10, "node-b", None, "DOWN"),
                ev(1300, "node-a", Some("UP"), "DOWN"),
                ev(2100, "node-b", Some("DOWN"), "UP"),
            ],
        };
        let mut errors = BTreeMap::new();
        for r in tl.requests.iter().filter(|r| !r.ok) {
            *errors.entry(r.kind.label()).or_default() += 1;
        }
        TrialReport {
            trial: n,
            leader_before: "node-a".into(),
            leader_after: Some("node-b".into()),
            figures: measure::figures(&tl),
            acked: 36,
            lost: 0,
            ambiguous: 2,
            ambiguous_committed: 1,
            skipped_sends: 0,
            errors,
            stepdown_ignored: 0,
            notes: vec![],
            timeline: TimelineRecord::from(&tl),
        }
    }

    fn config(name: &str, trials: usize) -> ConfigReport {
        let trials: Vec<TrialReport> = (1..=trials).map(trial).collect();
        let figures: Vec<_> = trials.iter().map(|t| t.figures.clone()).collect();
        ConfigReport {
            name: name.into(),
            performance_multiplier: 1,
            haproxy_profile: format!("tuned/{name}"),
            summary: measure::summarize(&figures),
            trials,
            lost: 0,
            stepdown_ignored: 0,
            verdict: Verdict::default(),
        }
    }

    fn texts(doc: &roxmltree::Document) -> Vec<String> {
        doc.descendants()
            .filter(|n| n.has_tag_name("text"))
            .filter_map(|n| n.text().map(|t| t.trim().to_string()))
            .collect()
    }

    #[test]
    fn svg_has_one_point_per_request_and_every_mark() {
        let c = config("passthrough", 2);
        let text = svg(Scenario::LeaderStepdown, &c).unwrap();
        let doc = roxmltree::Document::parse(&text).expect("the SVG is well-formed XML");
        assert_eq!(doc.root_element().tag_name().name(), "svg");
        let circles: Vec<_> = doc.descendants().filter(|n| n.has_tag_name("circle")).collect();
        assert_eq!(circles.len(), 80, "one point per request over both trials");
        let failed = circles.iter().filter(|n| n.attribute("r") == Some(&FAILED_RADIUS.to_string()[..])).count();
        assert_eq!(failed, 8, "4 failures per trial, drawn large");
        let t = texts(&doc);
        for want in [
            "fault",
            "elected #1",
            "elected #2",
            "voter #1",
            "node-a DOWN #1",
            "node-b UP #2",
            "HTTP 307 (standby refusal) (2)",
            "connection refused (2)",
            "timeout (4)",
            "ok (72)",
            "LB: server DOWN",
            "LB: server UP",
            "new active node seen",
        ] {
            assert!(t.iter().any(|x| x == want), "no text {want:?} in {t:?}");
        }
        // The first sample of a server is its state, not a change: no mark.
        assert!(!t.iter().any(|x| x == "node-a UP #1"), "{t:?}");
        // The fault line: a vertical red path (plotters draws line series as polylines).
        let red = doc
            .descendants()
            .filter(|n| n.has_tag_name("polyline") && n.attribute("stroke") == Some("#C80000"))
            .count();
        assert_eq!(red, 1, "one fault line");
        assert!(!text.contains("<image") && !text.contains("href"), "nothing external in the SVG");
    }

    #[test]
    fn html_puts_the_configs_side_by_side_and_loads_nothing() {
        let r = DrillReport::new(
            Scenario::LeaderStepdown,
            1,
            10.0,
            true,
            vec![config("passthrough", 1), config("terminate", 1)],
        );
        let dir = tempfile::tempdir().unwrap();
        let files = write(&r, dir.path()).unwrap();
        let names: Vec<String> = files.iter().map(|p| p.file_name().unwrap().to_string_lossy().into_owned()).collect();
        assert_eq!(names, ["leader-stepdown-passthrough.svg", "leader-stepdown-terminate.svg", "index.html"]);
        let page = std::fs::read_to_string(dir.path().join("index.html")).unwrap();
        assert!(page.contains("<thead><tr><th></th><th>passthrough</th><th>terminate</th></tr></thead>"), "{page}");
        for row in [
            "<tr><th>failed (sent after the fault)</th><td>4</td><td>4</td></tr>",
            "<tr><th>lost</th><td>0</td><td>0</td></tr>",
            "<tr><th>duplicated</th><td>0</td><td>0</td></tr>",
            "<tr><th>failures by kind (whole trial)</th><td>HTTP 307: 1, refused: 1, timeout: 2</td>",
            "<tr><th>latency p50 after the fault</th>",
            "<tr><th>latency p99 after the fault</th>",
            "<tr><th>disruption median (max)</th><td>2.40 s (max 2.40)</td>",
        ] {
            assert!(page.contains(row), "no row {row:?} in {page}");
        }
        // Both SVGs inline, each also linked; nothing fetched from anywhere.
        assert_eq!(page.matches("<svg ").count(), 2);
        assert!(page.contains("<a href=\"leader-stepdown-terminate.svg\">"));
        for bad in ["<script", "<link", "src=", "@import", "url(", "https://"] {
            assert!(!page.contains(bad), "{bad} in the page");
        }
        // The inline SVGs are the files' content.
        let svg_file = std::fs::read_to_string(dir.path().join("leader-stepdown-passthrough.svg")).unwrap();
        assert!(page.contains(svg_file.trim()));
    }

    #[test]
    fn timeline_goes_into_the_json_report() {
        let t = trial(1);
        let j = serde_json::to_value(&t).unwrap();
        assert_eq!(j["timeline"]["fault_ms"], 1000.0);
        assert_eq!(j["timeline"]["new_leader_ms"], 1800.0);
        assert_eq!(j["timeline"]["requests"].as_array().unwrap().len(), 40);
        assert_eq!(j["timeline"]["requests"][11]["outcome"], "HTTP 307");
        assert_eq!(j["timeline"]["requests"][13]["latency_ms"], 2000.0);
        assert_eq!(
            j["timeline"]["lb_events"][2],
            serde_json::json!({"at_ms": 1300, "server": "node-a", "from": "UP", "to": "DOWN"})
        );
        // The flattened figures are still there.
        assert_eq!(j["failed"], 4);
    }
}
