//! `maskd bench` end to end on the real model, at its smallest: every figure
//! is present and positive. Speed is measured here, never asserted.

mod common;

use std::process::{Command, Output};

use common::{golden_dir, model_dir};

fn bench(extra: &[&str]) -> Output {
    let image = golden_dir().join("images/chelsea.png");
    let model = model_dir();
    Command::new(env!("CARGO_BIN_EXE_maskd"))
        .args(["bench", "--variants", "f32", "--threads", "1", "--frames", "1", "--prompts", "4"])
        .arg("--model")
        .arg(&model)
        .arg("--images")
        .arg(&image)
        .args(extra)
        .output()
        .unwrap()
}

fn stdout(out: &Output) -> String {
    assert!(out.status.success(), "stderr: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn json_report_has_positive_figures_for_every_stage() {
    let report: serde_json::Value = serde_json::from_str(&stdout(&bench(&["--no-ort", "--json"]))).unwrap();
    assert_eq!(report["frames_per_image"], 1);
    assert_eq!(report["prompts_per_image"], 4);
    assert!(report["ort_version"].is_null());
    let configs = report["configs"].as_array().unwrap();
    assert_eq!(configs.len(), 1);
    let config = &configs[0];
    assert_eq!((config["variant"].as_str(), config["threads"].as_u64()), (Some("f32"), Some(1)));
    assert!(config["ort"].is_null());
    let maskd = &config["maskd"];
    let positive = |v: &serde_json::Value, what: &str| {
        let x = v.as_f64().unwrap_or_else(|| panic!("{what} missing in {maskd}"));
        assert!(x > 0.0, "{what} = {x}");
    };
    positive(&maskd["load_ms"], "load_ms");
    for stage in [
        "encoder_ms", "preprocess_ms", "decoder_ms", "decoder_frame_ms", "decoder_batch_ms", "postprocess_ms",
        "upscale_chosen_ms",
    ] {
        positive(&maskd[stage]["p50"], stage);
        positive(&maskd[stage]["p95"], stage);
    }
    assert_eq!(maskd["encoder_ms"]["n"], 1);
    assert_eq!(maskd["decoder_ms"]["n"], 4);
    positive(&maskd["peak_rss_mib"], "peak_rss_mib");
    assert!(maskd["peak_rss_mib"].as_f64() >= maskd["base_rss_mib"].as_f64());
    for row in config["rows"].as_array().unwrap() {
        assert!(row["ort"].is_null() && row["ratio"].is_null(), "{row}");
    }
}

#[test]
fn onnx_runtime_runs_beside_maskd_with_ratios() {
    // The export's Python (models/export.sh --python) runs ONNX Runtime on
    // the inputs maskd's worker recorded.
    let report: serde_json::Value = serde_json::from_str(&stdout(&bench(&["--json"]))).unwrap();
    assert!(report["ort_version"].as_str().is_some_and(|v| !v.is_empty()), "{}", report["ort_version"]);
    let config = &report["configs"][0];
    let ort = &config["ort"];
    for (stage, runs) in [("encoder_ms", 1), ("decoder_ms", 4)] {
        assert_eq!(ort[stage]["n"], runs, "{stage} in {ort}");
        assert!(ort[stage]["p50"].as_f64().unwrap() > 0.0, "{stage} in {ort}");
    }
    assert!(ort["load_ms"].as_f64().unwrap() > 0.0, "{ort}");
    assert!(ort["peak_rss_mib"].as_f64().unwrap() > 0.0, "{ort}");
    let rows = config["rows"].as_array().unwrap();
    let encoder = rows.iter().find(|r| r["figure"].as_str().is_some_and(|f| f.starts_with("encoder p50"))).unwrap();
    assert!(encoder["ratio"].as_f64().unwrap() > 0.0, "{encoder}");
}

#[test]
fn table_names_every_figure() {
    let table = stdout(&bench(&["--no-ort"]));
    assert!(table.contains("ONNX Runtime not run"), "{table}");
    for figure in
        ["load (ms)", "encoder p50 (ms/frame)", "decoder p95 (ms/prompt)", "upscale 4 masks p50", "peak RSS (MiB)"]
    {
        let line = table.lines().find(|l| l.contains(figure)).unwrap_or_else(|| panic!("{figure} not in:\n{table}"));
        let maskd: f64 = line.split_whitespace().rev().nth(2).unwrap().parse().unwrap();
        assert!(line.starts_with("f32 1t") && maskd > 0.0, "{line}");
    }
}

#[test]
fn missing_python_names_the_command_that_creates_it() {
    let out = Command::new(env!("CARGO_BIN_EXE_maskd"))
        .args(["bench", "--python", "/nonexistent/python", "--model"])
        .arg(model_dir())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("/nonexistent/python") && err.contains("models/export.sh"), "{err}");
}

/// `maskd profile`: every node timed, the parts adding up to the whole, and
/// the plan it times: TinyViT's 10 window attentions each one fused operator.
#[test]
fn profile_times_every_node_of_the_plan_with_fused_operators() {
    let out = Command::new(env!("CARGO_BIN_EXE_maskd"))
        .args(["profile", "--precision", "f32", "--runs", "1", "--json", "--model"])
        .arg(model_dir())
        .arg("--image")
        .arg(golden_dir().join("images/chelsea.png"))
        .output()
        .unwrap();
    let profile: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!((profile["encoder"].as_str(), profile["threads"].as_u64()), (Some("f32"), Some(1)));
    let nodes = profile["nodes"].as_array().unwrap();
    let ops = profile["ops"].as_array().unwrap();
    assert!(nodes.len() > 100, "{} nodes", nodes.len());
    let sum = |items: &[serde_json::Value], key: &str| items.iter().map(|i| i[key].as_f64().unwrap()).sum::<f64>();
    let cpu_ms = profile["cpu_ms"].as_f64().unwrap();
    assert!(cpu_ms > 0.0);
    for (what, items) in [("nodes", nodes), ("operators", ops)] {
        assert!((sum(items, "cpu_ms") - cpu_ms).abs() < 1e-6 * cpu_ms, "{what}' CPU times do not add up");
        assert!((sum(items, "share") - 1.0).abs() < 1e-9, "{what}' shares do not add up");
    }
    assert_eq!(ops.iter().map(|op| op["nodes"].as_u64().unwrap()).sum::<u64>(), nodes.len() as u64);
    assert!(nodes.windows(2).all(|w| w[0]["cpu_ms"].as_f64() >= w[1]["cpu_ms"].as_f64()), "not costliest first");

    let op = |name: &str| ops.iter().find(|op| op["op"] == name);
    let attention = op("WindowAttention").expect("no fused window attention in the plan");
    assert_eq!(attention["nodes"], 10);
    assert!(op("Exp").is_none(), "an exp left outside the fused attentions");
    // MobileSAM's encoder is 38.5 G multiply-adds at 1024x1024, 2.6 G of
    // them in the attentions' two matmuls.
    let giga = |op: &serde_json::Value| op["fmas"].as_f64().unwrap() / 1e9;
    // On x86-64 with AVX-512 the matmuls with constant weights and the
    // convolutions run as maskd's Dense (src/model/ops/dense.rs), with the
    // GELUs that follow them, and the 47 others (after depthwise
    // convolutions, some of them split in two by tract's slicing of the
    // stripes) as maskd's one-pass Gelu. Elsewhere tract's own matmuls
    // and GELUs run them all.
    let dense = op("Dense");
    let count = |name: &str| op(name).map_or(0, |op| op["nodes"].as_u64().unwrap());
    if is_avx512() {
        assert!(dense.is_some(), "no Dense in the plan");
        assert_eq!((count("GeluExact"), count("Gelu")), (0, 47), "GELUs left to tract");
    } else {
        assert!(dense.is_none() && op("OptMatMul").is_some(), "Dense on a CPU without AVX-512");
    }
    // Every copy runs on all the threads (src/model/ops/mod.rs, `spread`).
    for copy in ["MoveAxis", "Slice", "Pad", "Concat"] {
        assert_eq!(count(copy), 0, "tract's {copy} left in the plan");
        assert!(count(&format!("{copy}Threaded")) > 0, "no {copy}Threaded in the plan");
    }
    let matmuls = dense.map_or(0.0, giga) + op("OptMatMul").map_or(0.0, giga);
    assert!((2.5..2.7).contains(&giga(attention)), "{} G in the attentions", giga(attention));
    assert!((38.0..39.0).contains(&(matmuls + giga(attention))), "{matmuls} G in the matmuls");
}

fn is_avx512() -> bool {
    #[cfg(target_arch = "x86_64")]
    return std::arch::is_x86_feature_detected!("avx512f");
    #[cfg(not(target_arch = "x86_64"))]
    return false;
}
