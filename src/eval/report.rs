//! What `maskd eval` writes: a per-image CSV, a JSON summary, a text table.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result};
use serde::Serialize;

use super::metrics::{SampleResult, Summary, MIOU_CLICKS, NOC_THRESHOLDS};

/// Columns of the per-image CSV: `ious` holds the IoU after each click and
/// `clicks` each click as `x:y:+` (positive) or `x:y:-`, space-separated.
pub const CSV_HEADER: [&str; 10] =
    ["image", "noc85", "noc90", "iou1", "iou3", "iou5", "final_iou", "encode_ms", "ious", "clicks"];

/// One dataset's summary as written to JSON (the same keys as
/// `models/reference_eval.py` writes).
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub dataset: String,
    pub format: String,
    /// What ran the model: `maskd` here, `pytorch` for the reference.
    pub runtime: String,
    pub model: String,
    pub precision: String,
    #[serde(flatten)]
    pub summary: Summary,
    /// Wall time of the whole dataset, model loading excluded.
    pub wall_s: f64,
}

impl Report {
    /// # Errors
    /// The file cannot be written.
    pub fn write_json(&self, path: &Path) -> Result<()> {
        let text = serde_json::to_string_pretty(self).context("serializing the summary")?;
        std::fs::write(path, text + "\n").with_context(|| format!("writing {}", path.display()))
    }

    /// The summary as a small text table.
    pub fn table(&self) -> String {
        let s = &self.summary;
        let mut out = format!(
            "{} ({}, {} images, {} {}, up to {} clicks)\n",
            self.dataset, self.format, s.n, self.model, self.precision, s.max_clicks
        );
        let rows = [
            ("NoC@85", format!("{:.2}", s.noc85)),
            ("NoC@90", format!("{:.2}", s.noc90)),
            ("NoF@85", s.nof85.to_string()),
            ("NoF@90", s.nof90.to_string()),
            ("mIoU@1", format!("{:.3}", s.miou1)),
            ("mIoU@3", format!("{:.3}", s.miou3)),
            ("mIoU@5", format!("{:.3}", s.miou5)),
            ("encode", format!("{:.0} ms", s.encode_ms)),
            ("decode", format!("{:.1} ms", s.decode_ms)),
            ("wall", format!("{:.0} s", self.wall_s)),
        ];
        for (name, value) in rows {
            let _ = writeln!(out, "  {name:<8} {value:>9}");
        }
        out
    }
}

/// Writes one row per image (see [`CSV_HEADER`]).
///
/// # Errors
/// The file cannot be written.
pub fn write_csv(path: &Path, results: &[SampleResult], max_clicks: usize) -> Result<()> {
    let context = || format!("writing {}", path.display());
    let mut csv = csv::Writer::from_path(path).with_context(context)?;
    csv.write_record(CSV_HEADER).with_context(context)?;
    let [t85, t90] = NOC_THRESHOLDS;
    let [k1, k3, k5] = MIOU_CLICKS;
    for r in results {
        let ious: Vec<String> = r.ious.iter().map(|v| format!("{v:.4}")).collect();
        let clicks: Vec<String> =
            r.clicks.iter().map(|c| format!("{}:{}:{}", c.x, c.y, if c.positive { '+' } else { '-' })).collect();
        csv.write_record([
            r.name.clone(),
            r.noc(t85, max_clicks).to_string(),
            r.noc(t90, max_clicks).to_string(),
            format!("{:.4}", r.iou_after(k1)),
            format!("{:.4}", r.iou_after(k3)),
            format!("{:.4}", r.iou_after(k5)),
            format!("{:.4}", r.iou_after(max_clicks)),
            format!("{:.1}", r.encode_ms),
            ious.join(" "),
            clicks.join(" "),
        ])
        .with_context(context)?;
    }
    csv.flush().with_context(context)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eval::Click;

    #[test]
    fn csv_quotes_names_with_commas_and_lists_clicks() {
        let result = SampleResult {
            name: "a, b".into(),
            clicks: vec![Click { x: 3, y: 4, positive: true }, Click { x: 5, y: 6, positive: false }],
            ious: vec![0.5, 0.875],
            encode_ms: 12.0,
            decode_ms: vec![1.0, 1.0],
        };
        let path = std::env::temp_dir().join(format!("maskd-report-{}.csv", std::process::id()));
        write_csv(&path, &[result], 20).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], CSV_HEADER.join(","));
        assert_eq!(lines[1], "\"a, b\",2,20,0.5000,0.8750,0.8750,0.8750,12.0,0.5000 0.8750,3:4:+ 5:6:-");
    }
}
