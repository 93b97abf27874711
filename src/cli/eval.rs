//! `maskd eval`: NoC / NoF / mIoU of the model on interactive-segmentation
//! benchmarks (see docs/EVAL.md).

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{ensure, Context, Result};
use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use maskd::eval::{self, Dataset, Format, Report, SampleResult, Summary};
use maskd::model::Sam;
use maskd::picture::read_rgb;

use super::args::ModelArgs;

#[derive(Debug, Args)]
pub struct EvalArgs {
    /// Dataset folder holding images/ and masks/ (paired by file stem). Repeatable.
    #[arg(long = "dataset", value_name = "DIR", required = true)]
    datasets: Vec<PathBuf>,
    /// Mask encoding; auto goes by the folder name, then palette PNG masks mean DAVIS.
    #[arg(long, value_enum, default_value_t = FormatArg::Auto)]
    format: FormatArg,
    #[command(flatten)]
    model: ModelArgs,
    /// Clicks per image at most.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u16).range(1..))]
    max_clicks: u16,
    /// Where to write <dataset>.<precision>.csv (per image) and .json
    /// (summary); with --compute f16, <dataset>.<precision>-f16.*.
    #[arg(long, default_value = "results")]
    out: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum FormatArg {
    Auto,
    Grabcut,
    Berkeley,
    Davis,
    CocoMval,
}

impl FormatArg {
    fn format(self) -> Option<Format> {
        match self {
            FormatArg::Auto => None,
            FormatArg::Grabcut => Some(Format::GrabCut),
            FormatArg::Berkeley => Some(Format::Berkeley),
            FormatArg::Davis => Some(Format::Davis),
            FormatArg::CocoMval => Some(Format::CocoMval),
        }
    }
}

pub fn run(args: &EvalArgs) -> Result<()> {
    // Every dataset is listed before the model loads, so a bad folder fails fast.
    let datasets = args
        .datasets
        .iter()
        .map(|dir| Dataset::open(dir, args.format.format()).with_context(|| format!("dataset {}", dir.display())))
        .collect::<Result<Vec<_>>>()?;
    let sam = args.model.load()?;
    std::fs::create_dir_all(&args.out).with_context(|| format!("creating {}", args.out.display()))?;

    for dataset in &datasets {
        let report = run_dataset(&sam, dataset, usize::from(args.max_clicks), &args.out)?;
        println!("{}", report.table());
    }
    Ok(())
}

fn run_dataset(sam: &Sam, dataset: &Dataset, max_clicks: usize, out: &Path) -> Result<Report> {
    let started = Instant::now();
    let progress = progress_bar(dataset)?;
    let mut results: Vec<SampleResult> = Vec::with_capacity(dataset.samples.len());
    for sample in &dataset.samples {
        progress.set_message(sample.name.clone());
        let truth = dataset.format.read_mask(&sample.mask)?;
        let image = read_rgb(&sample.image)?;
        let result = eval::evaluate(sam, &sample.name, &image, &truth, max_clicks)
            .with_context(|| format!("evaluating {}", sample.image.display()))?;
        results.push(result);
        progress.inc(1);
    }
    progress.finish_and_clear();

    let variant = sam.encoder_name();
    let report = Report {
        dataset: dataset.name.clone(),
        format: dataset.format.key().to_string(),
        runtime: "maskd".to_string(),
        model: sam.manifest().model.clone(),
        precision: variant.clone(),
        summary: Summary::of(&results, max_clicks),
        wall_s: started.elapsed().as_secs_f64(),
    };
    let stem = format!("{}.{variant}", dataset.name);
    eval::write_csv(&out.join(format!("{stem}.csv")), &results, max_clicks)?;
    report.write_json(&out.join(format!("{stem}.json")))?;
    Ok(report)
}

/// Images done and the ETA on stderr; indicatif hides it when stderr is not a terminal.
fn progress_bar(dataset: &Dataset) -> Result<ProgressBar> {
    ensure!(!dataset.samples.is_empty(), "dataset {} has no samples", dataset.root.display());
    let style = ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} images, ETA {eta} ({msg})")
        .context("progress bar template")?
        .progress_chars("=> ");
    Ok(ProgressBar::new(dataset.samples.len() as u64).with_style(style).with_prefix(dataset.name.clone()))
}
