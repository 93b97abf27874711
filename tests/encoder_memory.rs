//! The memory a frame's encoding allocates on top of the loaded model,
//! counted by this binary's allocator. The export runs the encoder's
//! full-resolution convolutions in stripes, its layer 0 downsampling
//! included, maskd's plans run in the leanest of a few evaluation orders,
//! and the window attentions run fused, so that no full-size 256- or
//! 128-channel map and no score map (up to 19 MB) exists: 50.2 MB here.
//! tract's depth-first order takes it to 56.2 MB, the downsampling unstriped
//! to 53.5 (55.4 depth first), unfused attentions to 80 MB, tract's default
//! order over the stripes to 104 MB, the encoder without stripes over 140 MB
//! (docs/PERFORMANCE.md#memory). The bound sits below every one of them.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

use common::{golden_dir, model_dir};
use maskd::model::{Precision, Sam};

struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let live = LIVE.fetch_add(layout.size(), Relaxed) + layout.size();
        PEAK.fetch_max(live, Relaxed);
        System.alloc(layout)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Relaxed);
        System.dealloc(ptr, layout)
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const MB: f64 = 1e6;
const MAX_RUN_MB: f64 = 53.0;

#[test]
fn encoding_a_frame_allocates_under_53_mb_over_the_loaded_model() {
    let image = image::open(golden_dir().join("images/chelsea.png")).unwrap().to_rgb8();
    for precision in [Precision::Int8, Precision::F32] {
        let sam = Sam::load(model_dir(), precision).unwrap_or_else(|e| panic!("{e:#}"));
        // The first run allocates the plan's per-run state, as every run does.
        let before = LIVE.load(Relaxed);
        PEAK.store(before, Relaxed);
        let embedding = sam.embed(&image).unwrap_or_else(|e| panic!("{e:#}"));
        let run = (PEAK.load(Relaxed) - before) as f64 / MB;
        drop(embedding);
        eprintln!("{precision:?}: encoding peaked {run:.1} MB over the loaded model");
        assert!(run > 10.0, "{precision:?}: {run:.1} MB: the counter missed the run's tensors");
        assert!(run < MAX_RUN_MB, "{precision:?}: encoding a frame peaked {run:.1} MB over the loaded model");
    }
}
