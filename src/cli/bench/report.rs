//! The benchmark's results: per-configuration figures, maskd/ORT ratios, and
//! their table and JSON forms.

use std::fmt::Write;

use serde::Serialize;

use super::stats::Summary;
use super::worker::Samples;

/// One engine's figures for one configuration.
#[derive(Debug, Clone, Serialize)]
pub struct Figures {
    pub load_ms: f64,
    pub encoder_ms: Option<Summary>,
    pub decoder_ms: Option<Summary>,
    pub decoder_frame_ms: Option<Summary>,
    pub decoder_batch_ms: Option<Summary>,
    pub upscale_chosen_ms: Option<Summary>,
    pub preprocess_ms: Option<Summary>,
    pub postprocess_ms: Option<Summary>,
    pub base_rss_mib: Option<f64>,
    pub peak_rss_mib: Option<f64>,
}

impl Figures {
    pub fn of(samples: &Samples) -> Figures {
        let mib = |kb: Option<u64>| kb.map(|kb| kb as f64 / 1024.0);
        Figures {
            load_ms: samples.load_ms,
            encoder_ms: Summary::of(&samples.encoder_ms),
            decoder_ms: Summary::of(&samples.decoder_ms),
            decoder_frame_ms: Summary::of(&samples.decoder_frame_ms),
            decoder_batch_ms: Summary::of(&samples.decoder_batch_ms),
            upscale_chosen_ms: Summary::of(&samples.upscale_chosen_ms),
            preprocess_ms: Summary::of(&samples.preprocess_ms),
            postprocess_ms: Summary::of(&samples.postprocess_ms),
            base_rss_mib: mib(samples.base_rss_kb),
            peak_rss_mib: mib(samples.peak_rss_kb),
        }
    }
}

/// Both engines on one variant and thread count.
#[derive(Debug, Clone, Serialize)]
pub struct Config {
    pub variant: String,
    pub threads: usize,
    pub maskd: Figures,
    /// `None` with `--no-ort`.
    pub ort: Option<Figures>,
}

/// One line of the table: a figure of both engines.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Row {
    pub figure: &'static str,
    pub maskd: Option<f64>,
    pub ort: Option<f64>,
    /// maskd / ORT: above 1, maskd is slower or bigger.
    pub ratio: Option<f64>,
}

impl Config {
    /// The compared figures, in table order; preprocess and postprocess are
    /// maskd's only (ONNX Runtime is handed the preprocessed tensors and
    /// stops at the low-res masks).
    pub fn rows(&self) -> Vec<Row> {
        let p50 = |s: Option<Summary>| s.map(|s| s.p50);
        let p95 = |s: Option<Summary>| s.map(|s| s.p95);
        let row = |figure, value: &dyn Fn(&Figures) -> Option<f64>| {
            let (maskd, ort) = (value(&self.maskd), self.ort.as_ref().and_then(value));
            let ratio = match (maskd, ort) {
                (Some(m), Some(o)) if o > 0.0 => Some(m / o),
                _ => None,
            };
            Row { figure, maskd, ort, ratio }
        };
        vec![
            row("load (ms)", &|f| Some(f.load_ms)),
            row("encoder p50 (ms/frame)", &|f| p50(f.encoder_ms)),
            row("encoder p95 (ms/frame)", &|f| p95(f.encoder_ms)),
            row("decoder p50 (ms/prompt)", &|f| p50(f.decoder_ms)),
            row("decoder p95 (ms/prompt)", &|f| p95(f.decoder_ms)),
            row("decoder batched p50 (ms/prompt)", &|f| p50(f.decoder_batch_ms)),
            row("decoder per-frame part (ms/frame)", &|f| p50(f.decoder_frame_ms)),
            row("preprocess p50 (ms/frame)", &|f| p50(f.preprocess_ms)),
            row("upscale 4 masks p50 (ms/prompt)", &|f| p50(f.postprocess_ms)),
            row("upscale chosen mask p50 (ms/prompt)", &|f| p50(f.upscale_chosen_ms)),
            row("RSS before load (MiB)", &|f| f.base_rss_mib),
            row("peak RSS (MiB)", &|f| f.peak_rss_mib),
        ]
    }
}

/// The whole run, as `--json` prints it.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub model: String,
    pub images: Vec<String>,
    pub frames_per_image: usize,
    pub prompts_per_image: usize,
    pub ort_version: Option<String>,
    pub configs: Vec<ConfigReport>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ConfigReport {
    #[serde(flatten)]
    pub config: Config,
    pub rows: Vec<Row>,
}

impl Report {
    pub fn new(
        model: String,
        images: Vec<String>,
        frames: usize,
        prompts: usize,
        ort_version: Option<String>,
        configs: Vec<Config>,
    ) -> Report {
        let configs = configs.into_iter().map(|config| ConfigReport { rows: config.rows(), config }).collect();
        Report { model, images, frames_per_image: frames, prompts_per_image: prompts, ort_version, configs }
    }

    /// The table: one block of rows per configuration.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let ort =
            self.ort_version.as_deref().map_or("ONNX Runtime not run".to_string(), |v| format!("ONNX Runtime {v}"));
        let _ = writeln!(
            out,
            "{}: {} image(s) x {} frame(s), {} prompts per image (1, 2, 5 points, box); {ort}",
            self.model,
            self.images.len(),
            self.frames_per_image,
            self.prompts_per_image
        );
        let _ = writeln!(out, "{:<12} {:<32} {:>10} {:>10} {:>10}", "config", "figure", "maskd", "ORT", "maskd/ORT");
        for c in &self.configs {
            let config = format!("{} {}t", c.config.variant, c.config.threads);
            for row in &c.rows {
                let _ = writeln!(
                    out,
                    "{:<12} {:<32} {:>10} {:>10} {:>10}",
                    config,
                    row.figure,
                    value(row.maskd),
                    value(row.ort),
                    ratio(row.ratio)
                );
            }
        }
        out
    }
}

/// Three significant figures at most, one decimal at least below 100.
fn value(v: Option<f64>) -> String {
    match v {
        None => "-".to_string(),
        Some(v) if v.abs() >= 100.0 => format!("{v:.0}"),
        Some(v) if v.abs() >= 10.0 => format!("{v:.1}"),
        Some(v) => format!("{v:.2}"),
    }
}

fn ratio(r: Option<f64>) -> String {
    r.map_or("-".to_string(), |r| format!("{r:.2}x"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples(scale: f64) -> Samples {
        Samples {
            load_ms: 100.0 * scale,
            preprocess_ms: vec![],
            encoder_ms: vec![400.0 * scale, 500.0 * scale, 600.0 * scale],
            decoder_ms: vec![20.0 * scale; 20],
            decoder_frame_ms: vec![],
            decoder_batch_ms: vec![],
            upscale_chosen_ms: vec![],
            postprocess_ms: vec![],
            base_rss_kb: Some(10 * 1024),
            peak_rss_kb: Some((200.0 * 1024.0 * scale) as u64),
        }
    }

    fn config(ort: bool) -> Config {
        let mut maskd = samples(2.0);
        maskd.preprocess_ms = vec![8.0];
        maskd.postprocess_ms = vec![3.0];
        Config {
            variant: "f32".into(),
            threads: 1,
            maskd: Figures::of(&maskd),
            ort: ort.then(|| Figures::of(&samples(1.0))),
        }
    }

    #[test]
    fn ratios_divide_maskd_by_ort_and_are_absent_for_maskd_only_figures() {
        let rows = config(true).rows();
        let get = |name: &str| rows.iter().find(|r| r.figure == name).unwrap().clone();
        assert_eq!(
            get("encoder p50 (ms/frame)"),
            Row { figure: "encoder p50 (ms/frame)", maskd: Some(1000.0), ort: Some(500.0), ratio: Some(2.0) }
        );
        assert_eq!(get("load (ms)").ratio, Some(2.0));
        assert_eq!(get("peak RSS (MiB)").ratio, Some(2.0));
        assert_eq!(get("RSS before load (MiB)").ratio, Some(1.0));
        let upscale = get("upscale 4 masks p50 (ms/prompt)");
        assert_eq!((upscale.maskd, upscale.ort, upscale.ratio), (Some(3.0), None, None));
    }

    #[test]
    fn without_ort_every_ratio_is_absent() {
        assert!(config(false).rows().iter().all(|r| r.ort.is_none() && r.ratio.is_none()));
    }

    #[test]
    fn table_has_a_header_and_one_line_per_figure_and_config() {
        let report = Report::new(
            "mobile_sam".into(),
            vec!["a.png".into()],
            3,
            20,
            Some("1.32.0".into()),
            vec![config(true), config(false)],
        );
        let table = report.table();
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(
            lines[0],
            "mobile_sam: 1 image(s) x 3 frame(s), 20 prompts per image (1, 2, 5 points, box); ONNX Runtime 1.32.0"
        );
        assert_eq!(lines.len(), 2 + 2 * config(true).rows().len());
        assert!(lines[1].starts_with("config") && lines[1].ends_with("maskd/ORT"));
        let encoder = lines.iter().find(|l| l.contains("encoder p50")).unwrap();
        assert_eq!(
            encoder.split_whitespace().collect::<Vec<_>>(),
            ["f32", "1t", "encoder", "p50", "(ms/frame)", "1000", "500", "2.00x"]
        );
        assert!(lines.last().unwrap().ends_with("-          -"), "{}", lines.last().unwrap());
    }

    #[test]
    fn values_keep_about_three_significant_figures() {
        assert_eq!(value(Some(1234.56)), "1235");
        assert_eq!(value(Some(12.345)), "12.3");
        assert_eq!(value(Some(1.2345)), "1.23");
        assert_eq!(value(None), "-");
        assert_eq!(ratio(Some(0.5)), "0.50x");
    }
}
