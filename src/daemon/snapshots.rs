//! Periodic "everything" snapshots: on a timer, every object in the latest
//! frame, written as SAM's JSON records and an overlay picture, for field
//! inspection without a controller asking.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use crossbeam_channel::{bounded, RecvTimeoutError};
use log::{debug, info, warn};

use super::settings::SnapshotSettings;
use crate::display::{replace_file, write_png};
use crate::everything::{self, ProposedMask, SamRecord, Settings};
use crate::model::Mask;
use crate::pipeline::{EverythingJob, FrameSelector, Objects, Pipeline, Rejection};

/// How often waits check for a stop.
const POLL: Duration = Duration::from_millis(100);

/// Takes a snapshot every `config.every_s` (start to start; a slow one is
/// followed by the next at once) until `stop`. A frame already snapshotted
/// is not done again, so a still source costs nothing.
pub fn run_snapshots(pipeline: &Pipeline, settings: &Settings, config: &SnapshotSettings, stop: &AtomicBool) {
    let every = config.every;
    let mut next = Instant::now() + every;
    let mut last_frame = None;
    while !stop.load(Ordering::Relaxed) {
        if Instant::now() < next {
            std::thread::sleep(POLL.min(next - Instant::now()));
            continue;
        }
        next += every;
        let Some(latest) = pipeline.cache().latest().map(|e| e.frame.id) else {
            debug!("snapshot: no frame embedded yet");
            continue;
        };
        if last_frame == Some(latest) {
            debug!("snapshot: frame {latest} was already done");
            continue;
        }
        match take(pipeline, settings, latest, stop) {
            Ok(Some(objects)) => {
                last_frame = Some(objects.frame.id);
                match write(&config.dir, &objects, config.keep) {
                    Ok(json) => info!(
                        "snapshot: {} objects on frame {} in {:.1} s, {}",
                        objects.masks.len(),
                        objects.frame.id,
                        objects.elapsed.as_secs_f64(),
                        json.display()
                    ),
                    Err(e) => warn!("snapshot: {e:#}"),
                }
            }
            Ok(None) => return,
            // Busy: controllers' requests fill the queue; try at the next tick.
            Err(rejection) => warn!("snapshot of frame {latest} skipped: {rejection}"),
        }
        if Instant::now() > next {
            next = Instant::now();
        }
    }
}

/// The objects of frame `id`, or `None` when stopping.
fn take(pipeline: &Pipeline, settings: &Settings, id: u32, stop: &AtomicBool) -> Result<Option<std::sync::Arc<Objects>>, Rejection> {
    let (reply, replies) = bounded(1);
    let job = EverythingJob { settings: settings.clone(), frame: FrameSelector::Id(id), tag: 0, reply };
    pipeline.submit_everything(job).map_err(|(rejection, _)| rejection)?;
    loop {
        match replies.recv_timeout(POLL) {
            Ok(reply) => return reply.result.map(Some),
            Err(RecvTimeoutError::Timeout) if !stop.load(Ordering::Relaxed) => {}
            Err(_) => return Ok(None),
        }
    }
}

/// Writes `everything-<unix ms>-frame<id>.png` and `.json` in `dir`, each
/// atomically, the JSON last so that its presence means both are complete;
/// then deletes all but the newest `keep`. Returns the JSON's path.
fn write(dir: &Path, objects: &Objects, keep: usize) -> Result<PathBuf> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let unix_ms = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis());
    let stem = dir.join(format!("everything-{unix_ms:013}-frame{}", objects.frame.id));
    let masks = objects.masks.iter().map(ProposedMask::mask).collect::<Result<Vec<Mask>>>()?;
    let overlay = everything::overlay((*objects.frame.image).clone(), &masks);
    replace_file(&stem.with_extension("png"), |path| write_png(path, &overlay))?;
    let records: Vec<SamRecord> = objects.masks.iter().map(SamRecord::from).collect();
    let json = stem.with_extension("json");
    replace_file(&json, |path| Ok(std::fs::write(path, serde_json::to_vec(&records)?)?))?;
    prune(dir, keep)?;
    Ok(json)
}

/// Deletes all but the newest `keep` snapshots (their names sort by time).
fn prune(dir: &Path, keep: usize) -> Result<()> {
    let mut stems: Vec<String> = std::fs::read_dir(dir)
        .with_context(|| format!("listing {}", dir.display()))?
        .filter_map(|entry| {
            let name = entry.ok()?.file_name().into_string().ok()?;
            let stem = name.strip_suffix(".json")?;
            stem.starts_with("everything-").then(|| stem.to_owned())
        })
        .collect();
    stems.sort();
    let old = stems.len().saturating_sub(keep);
    for stem in &stems[..old] {
        for extension in ["json", "png"] {
            let path = dir.join(format!("{stem}.{extension}"));
            if let Err(e) = std::fs::remove_file(&path) {
                warn!("snapshot: deleting {}: {e}", path.display());
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pruning_keeps_the_newest_snapshots_and_nothing_else_is_touched() {
        let dir = std::env::temp_dir().join(format!("maskd-snapshots-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let names = ["everything-0000000000100-frame1", "everything-0000000000200-frame2", "everything-0000000000300-frame3"];
        for name in names {
            std::fs::write(dir.join(format!("{name}.json")), "[]").unwrap();
            std::fs::write(dir.join(format!("{name}.png")), "").unwrap();
        }
        std::fs::write(dir.join("notes.json"), "{}").unwrap();
        prune(&dir, 2).unwrap();
        let mut left: Vec<String> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        left.sort();
        assert_eq!(
            left,
            [
                "everything-0000000000200-frame2.json",
                "everything-0000000000200-frame2.png",
                "everything-0000000000300-frame3.json",
                "everything-0000000000300-frame3.png",
                "notes.json"
            ]
        );
        std::fs::remove_dir_all(dir).unwrap();
    }
}
