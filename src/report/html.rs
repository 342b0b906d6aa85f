//! `report.html`: one self-contained page (no scripts, no CDN) with the verdict on top,
//! the invariant table and charts drawn as inline SVG.

use super::Summary;
use crate::metrics::Sample;

const W: f64 = 760.0;
const H: f64 = 220.0;
const PAD: f64 = 40.0;

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A fault window on a chart: from and to, in seconds since the start, and its label.
pub struct Shade {
    pub from_s: f64,
    pub to_s: f64,
    pub label: String,
}

/// A line chart of `lines` over seconds, with fault windows shaded and labelled. The
/// x axis is time: the value of second k (the interval (k-1, k]) is drawn at k - 0.5,
/// and a fault from t0 to t1 covers exactly [t0, t1].
fn line_chart(
    title: &str,
    unit: &str,
    seconds: usize,
    lines: &[(&str, &str, Vec<f64>)],
    shades: &[Shade],
) -> String {
    let n = seconds.max(1) as f64;
    let ymax = lines
        .iter()
        .flat_map(|(_, _, v)| v.iter().copied())
        .fold(0.0f64, f64::max)
        .max(1e-9)
        * 1.1;
    // Seconds since the start, on [0, n].
    let x = |t: f64| PAD + (W - 2.0 * PAD) * t / n;
    let y = |v: f64| H - PAD + -(H - 2.0 * PAD) * v / ymax;
    let mut svg = format!(
        "<figure><figcaption>{}</figcaption><svg viewBox=\"0 0 {W} {H}\" width=\"{W}\" height=\"{H}\" role=\"img\" aria-label=\"{}\">",
        esc(title),
        esc(title)
    );
    for (i, shade) in shades.iter().enumerate() {
        let (x0, x1) = (
            x(shade.from_s).clamp(PAD, W - PAD),
            x(shade.to_s).clamp(PAD, W - PAD),
        );
        svg.push_str(&format!(
            "<rect class=\"fault\" data-from-s=\"{:.3}\" data-to-s=\"{:.3}\" x=\"{x0:.1}\" y=\"{PAD}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"#f5c6cb\" opacity=\"0.6\"><title>{}</title></rect>",
            shade.from_s,
            shade.to_s,
            (x1 - x0).max(2.0),
            H - 2.0 * PAD,
            esc(&shade.label)
        ));
        // Labels step down so neighbouring windows do not print over each other.
        svg.push_str(&format!(
            "<text class=\"fault-label\" x=\"{:.1}\" y=\"{:.1}\" font-size=\"9\" fill=\"#8a1c2b\">{}</text>",
            x0 + 2.0,
            PAD + 10.0 + 10.0 * (i % 4) as f64,
            esc(&shade.label)
        ));
    }
    svg.push_str(&format!(
        "<line x1=\"{PAD}\" y1=\"{b}\" x2=\"{r}\" y2=\"{b}\" stroke=\"#888\"/><line x1=\"{PAD}\" y1=\"{PAD}\" x2=\"{PAD}\" y2=\"{b}\" stroke=\"#888\"/>",
        b = H - PAD,
        r = W - PAD
    ));
    svg.push_str(&format!(
        "<text x=\"4\" y=\"{:.1}\" font-size=\"10\">{:.0} {}</text><text x=\"4\" y=\"{:.1}\" font-size=\"10\">0</text><text x=\"{:.1}\" y=\"{:.1}\" font-size=\"10\">{} s</text>",
        PAD,
        ymax,
        esc(unit),
        H - PAD,
        W - PAD - 20.0,
        H - PAD + 14.0,
        seconds
    ));
    for (k, (name, color, values)) in lines.iter().enumerate() {
        let mut d = String::new();
        for (i, v) in values.iter().enumerate() {
            d.push_str(&format!(
                "{}{:.1},{:.1} ",
                if i == 0 { "M" } else { "L" },
                x(i as f64 + 0.5),
                y(*v)
            ));
        }
        if values.len() == 1 {
            d.push_str(&format!("L{:.1},{:.1}", x(1.0), y(values[0])));
        }
        svg.push_str(&format!(
            "<path d=\"{}\" fill=\"none\" stroke=\"{color}\" stroke-width=\"2\"/>",
            d.trim_end()
        ));
        svg.push_str(&format!(
            "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"11\" fill=\"{color}\">{}</text>",
            PAD + 10.0 + 130.0 * k as f64,
            PAD - 8.0,
            esc(name)
        ));
    }
    svg.push_str("</svg></figure>");
    svg
}

fn bar_chart(title: &str, bars: &[(String, u64)]) -> String {
    let max = bars.iter().map(|b| b.1).max().unwrap_or(0).max(1) as f64;
    let row = 18.0;
    let height = PAD + row * bars.len() as f64 + 10.0;
    let mut svg = format!(
        "<figure><figcaption>{}</figcaption><svg viewBox=\"0 0 {W} {height}\" width=\"{W}\" height=\"{height}\" role=\"img\" aria-label=\"{}\">",
        esc(title),
        esc(title)
    );
    for (i, (label, v)) in bars.iter().enumerate() {
        let y = PAD / 2.0 + row * i as f64;
        let w = (W - 260.0) * (*v as f64) / max;
        svg.push_str(&format!(
            "<text x=\"4\" y=\"{:.1}\" font-size=\"11\">{}</text><path d=\"M180,{:.1} h{:.1} v12 h{:.1} z\" fill=\"#4a7bd0\"/><text x=\"{:.1}\" y=\"{:.1}\" font-size=\"11\">{v}</text>",
            y + 10.0,
            esc(label),
            y,
            w.max(1.0),
            -w.max(1.0),
            186.0 + w,
            y + 10.0
        ));
    }
    svg.push_str("</svg></figure>");
    svg
}

/// The verdict in the colour of its exit code: green only when the run exits 0.
fn verdict(s: &Summary) -> (&'static str, String) {
    let name = s.validity.name().to_uppercase();
    match s.exit_code {
        0 => ("#1e7b34", format!("Verdict: {name} (exit 0)")),
        1 => (
            "#b0182a",
            format!("Verdict: {name}: an invariant was violated (exit 1)"),
        ),
        2 => (
            "#b0182a",
            format!("Verdict: {name} invariants, but a threshold FAILED (exit 2)"),
        ),
        3 => (
            "#9a6b00",
            format!("Verdict: {name}: something could not be decided (exit 3)"),
        ),
        4 => (
            "#9a6b00",
            format!(
                "Verdict: STOPPED EARLY after {} of {} agents{}: {name} for what ran (exit 4)",
                s.agents_done,
                s.agents_total,
                if s.aborted { " (aborted)" } else { "" }
            ),
        ),
        code => ("#9a6b00", format!("Verdict: {name} (exit {code})")),
    }
}

pub fn render(s: &Summary, series: &[Sample]) -> String {
    let (verdict_color, verdict_text) = verdict(s);
    let shades: Vec<Shade> = s
        .faults
        .iter()
        .filter_map(|f| {
            let from_s = f.started_ms? as f64 / 1000.0;
            let to_s = f
                .healed_ms
                .map_or(s.elapsed_ms as f64 / 1000.0, |h| h as f64 / 1000.0);
            let label = if f.region.is_empty() {
                f.mode.clone()
            } else {
                format!("{} {}", f.region, f.mode)
            };
            Some(Shade {
                from_s,
                to_s,
                label,
            })
        })
        .collect();
    let col = |f: fn(&Sample) -> f64| series.iter().map(f).collect::<Vec<f64>>();
    let mut page = String::from(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>swarm report</title>\
         <style>body{font:14px system-ui,sans-serif;margin:24px;color:#222}table{border-collapse:collapse}\
         td,th{border:1px solid #ccc;padding:3px 8px;text-align:left}td.n{text-align:right}\
         .valid{color:#1e7b34}.invalid{color:#b0182a;font-weight:bold}.unknown{color:#9a6b00}\
         figure{margin:16px 0}figcaption{font-weight:bold}</style></head><body>",
    );
    page.push_str(&format!(
        "<h1 id=\"verdict\" class=\"exit-{}\" style=\"color:{verdict_color}\">{}</h1>",
        s.exit_code,
        esc(&verdict_text)
    ));
    page.push_str(&format!(
        "<p id=\"headline\"><b>{}</b></p>",
        esc(&s.headline.line())
    ));
    page.push_str(&format!(
        "<p>Scenario <b>{}</b> · seed {} · run {} · {} of {} agents in {:.1} s · {:.0} purchases/s · swarm {}</p>\
         <p>Target: {} · database: {}</p>",
        esc(&s.scenario),
        s.seed,
        esc(&s.run_id),
        s.agents_done,
        s.agents_total,
        s.elapsed_ms as f64 / 1000.0,
        s.rates.get("purchases_per_s").copied().unwrap_or(0.0),
        esc(&s.swarm_version),
        esc(&s.target),
        esc(&s.database_words())
    ));
    // Thresholds first: a failed one decides the exit code.
    if !s.thresholds.is_empty() {
        page.push_str("<h2 id=\"thresholds\">Thresholds</h2><table><tr><th>metric</th><th>rule</th><th>observed</th><th>result</th></tr>");
        for t in &s.thresholds {
            page.push_str(&format!(
                "<tr><td>{}</td><td>{}</td><td class=\"n\">{:.4}</td><td class=\"{}\">{}</td></tr>",
                esc(t.metric.name()),
                esc(&t.rule.to_string()),
                t.observed,
                if t.passed { "valid" } else { "invalid" },
                if t.passed { "pass" } else { "FAIL" }
            ));
        }
        page.push_str("</table>");
    }
    page.push_str("<h2 id=\"invariants\">Invariants</h2><table><tr><th>check</th><th>invariant</th><th>verdict</th><th>count</th><th>what it looks for</th><th>examples</th></tr>");
    // Findings first, then what held.
    let mut checks: Vec<_> = s.audit.checks.iter().collect();
    checks.sort_by_key(|c| std::cmp::Reverse(c.validity));
    for c in checks {
        page.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td class=\"{}\">{}</td><td class=\"n\">{}</td><td>{}</td><td>{}</td></tr>",
            esc(&c.name),
            c.invariant.name(),
            c.validity.name(),
            c.validity.name(),
            c.count,
            esc(&c.detail),
            esc(&c.examples.join(", "))
        ));
    }
    page.push_str("</table>");
    if !s.audit.skipped.is_empty() {
        page.push_str(&format!(
            "<h3 id=\"not-run\">Checks not run ({} audit)</h3><ul>",
            esc(&s.audit.mode)
        ));
        for name in &s.audit.skipped {
            page.push_str(&format!("<li>{}</li>", esc(name)));
        }
        page.push_str("</ul>");
    }
    page.push_str("<h2 id=\"conformance\">Conformance probe</h2>");
    match &s.conformance.skipped {
        Some(why) => page.push_str(&format!("<p>Not run: {}.</p>", esc(why))),
        None => {
            page.push_str(
                "<table><tr><th>promise</th><th>result</th><th>evidence</th><th>rule</th></tr>",
            );
            for c in &s.conformance.checks {
                let (class, word) = match (c.check.validity, c.check.count) {
                    (crate::audit::Validity::Invalid, _) => ("invalid", "invalid"),
                    (_, 0) => ("valid", "kept"),
                    _ => ("unknown", "warning"),
                };
                page.push_str(&format!(
                    "<tr><td>{}</td><td class=\"{class}\">{word}</td><td>{}</td><td>{}</td></tr>",
                    esc(&c.check.name),
                    esc(&c.check.detail),
                    esc(&c.rule)
                ));
            }
            page.push_str("</table>");
        }
    }
    page.push_str("<h2 id=\"regions\">Regions</h2><table><tr><th>region</th><th>requests</th><th>commits</th><th>errors</th><th>p50 ms</th><th>p99 ms</th><th>connections</th></tr>");
    for r in &s.regions {
        page.push_str(&format!(
            "<tr><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{:.2}</td><td class=\"n\">{:.2}</td><td>{}</td></tr>",
            esc(&r.name),
            r.requests,
            r.commits,
            r.errors,
            r.latency_raw_ms.p50_ms,
            r.latency_raw_ms.p99_ms,
            esc(&r.connections.map(|c| c.describe()).unwrap_or_else(|| "in-process".into()))
        ));
    }
    page.push_str("</table>");
    if !s.settings.is_empty() {
        page.push_str("<h2 id=\"settings\">Scenario settings</h2><table>");
        for (name, value) in &s.settings {
            page.push_str(&format!(
                "<tr><th>{}</th><td>{}</td></tr>",
                esc(name),
                esc(value)
            ));
        }
        page.push_str("</table>");
    }
    page.push_str("<h2>Faults</h2><table><tr><th>region</th><th>mode</th><th>trigger</th><th>started</th><th>healed</th><th>leader (Patroni)</th><th>what the clients saw</th></tr>");
    for f in &s.faults {
        let impact: Vec<String> = f.impact.iter().map(|i| esc(&i.words())).collect();
        page.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&f.region),
            esc(f.command.as_deref().map_or(f.mode.as_str(), |c| c)),
            esc(&f.trigger),
            f.started_ms.map_or("never".into(), |v| format!("{v} ms")),
            f.healed_ms.map_or("never".into(), |v| format!("{v} ms")),
            esc(&f.leader_words().unwrap_or_default()),
            impact.join("<br>")
        ));
    }
    page.push_str("</table>");
    page.push_str("<h2>Charts</h2>");
    let n = series.len();
    // Commits have their own axis: a hundred commits beside ninety thousand declines a
    // second would be a flat line at zero.
    page.push_str(&line_chart(
        "Commits per second (fault windows shaded)",
        "/s",
        n,
        &[("commits/s", "#1e7b34", col(|s| s.commits as f64))],
        &shades,
    ));
    page.push_str(&line_chart(
        "Declines and errors per second (fault windows shaded)",
        "/s",
        n,
        &[
            ("declines/s", "#4a7bd0", col(|s| s.declines as f64)),
            ("errors/s", "#b0182a", col(|s| s.errors as f64)),
        ],
        &shades,
    ));
    page.push_str(&line_chart(
        "Latency per request, per second",
        "ms",
        n,
        &[
            ("p50 ms", "#4a7bd0", col(|s| s.p50_us as f64 / 1000.0)),
            ("p99 ms", "#b0182a", col(|s| s.p99_us as f64 / 1000.0)),
        ],
        &shades,
    ));
    page.push_str(&line_chart(
        "OCC retries per second",
        "/s",
        n,
        &[("OCC retries/s", "#9a6b00", col(|s| s.occ_retries as f64))],
        &shades,
    ));
    let attempts: Vec<(String, u64)> = s
        .attempts
        .iter()
        .enumerate()
        .filter(|(_, v)| **v > 0)
        .map(|(i, v)| {
            (
                format!("{} attempt{}", i + 1, if i == 0 { "" } else { "s" }),
                *v,
            )
        })
        .collect();
    page.push_str(&bar_chart(
        "Attempts per execution (1 + OCC retries; a replay repeats its original's)",
        &attempts,
    ));
    let outcomes: Vec<(String, u64)> = s
        .counters
        .iter()
        .filter(|(k, v)| **v > 0 && !matches!(k.as_str(), "requests" | "purchases" | "occ_retries"))
        .map(|(k, v)| (k.to_string(), *v))
        .collect();
    page.push_str(&bar_chart("Outcomes (requests)", &outcomes));
    let statuses: Vec<(String, u64)> = s
        .statuses
        .iter()
        .map(|(k, v)| (format!("HTTP {k}"), *v))
        .collect();
    page.push_str(&bar_chart(
        "Statuses (requests; network: no answer)",
        &statuses,
    ));
    let (ind, res) = (&s.indeterminate, &s.resolution);
    page.push_str(&format!(
        "<h2>Indeterminate requests</h2><table>\
         <tr><td>requests without a definite answer during the run</td><td>{}</td></tr>\
         <tr><td>keys they were on</td><td>{}</td></tr>\
         <tr><td>settled by the agents' own requests</td><td>{}</td></tr>\
         <tr><td>left to the end-of-run replay</td><td>{}</td></tr>\
         <tr><td>… recovered (had committed or declined)</td><td>{}</td></tr>\
         <tr><td>… executed on replay</td><td>{}</td></tr>\
         <tr><td>… refused on replay</td><td>{}</td></tr>\
         <tr><td>unresolved</td><td>{}</td></tr></table>",
        ind.requests,
        ind.keys,
        ind.settled_by_agents,
        res.pending,
        res.recovered,
        res.fresh,
        res.refused,
        res.unresolved
    ));
    page.push_str(&format!(
        "<h2>Final reads</h2><p>{}</p>",
        esc(&s.final_reads.line())
    ));
    let l = &s.latency_corrected_ms;
    let r = &s.latency_raw_ms;
    page.push_str(&format!(
        "<h2>Latency</h2><table><tr><th></th><th>p50</th><th>p90</th><th>p99</th><th>p99.9</th><th>max</th></tr>\
         <tr><td>from intended start (ms)</td><td>{:.2}</td><td>{:.2}</td><td>{:.2}</td><td>{:.2}</td><td>{:.2}</td></tr>\
         <tr><td>per request (ms)</td><td>{:.2}</td><td>{:.2}</td><td>{:.2}</td><td>{:.2}</td><td>{:.2}</td></tr></table>",
        l.p50_ms, l.p90_ms, l.p99_ms, l.p999_ms, l.max_ms, r.p50_ms, r.p90_ms, r.p99_ms, r.p999_ms, r.max_ms
    ));
    if let Some(c) = &s.cluster {
        page.push_str(&format!(
            "<h2>Cluster</h2><p>{} via {} · {} polls, {} unanswered</p><table><tr><th>at</th><th>leader</th><th>timeline</th></tr>",
            esc(&c.kind),
            esc(&c.apis.join(", ")),
            c.polls,
            c.unreachable
        ));
        for e in &c.events {
            page.push_str(&format!(
                "<tr><td>{} ms</td><td>{}</td><td>{}</td></tr>",
                e.at_ms,
                esc(e.leader.as_deref().unwrap_or("none")),
                e.timeline.map_or(String::new(), |t| t.to_string())
            ));
        }
        page.push_str("</table>");
    }
    page.push_str("</body></html>\n");
    page
}
