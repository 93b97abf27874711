//! The embeddings of the last few frames, so that prompts can target a frame by id.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use super::frame::Frame;
use super::latest::Latest;
use crate::model::Embedding;

/// A frame and its image embedding.
#[derive(Debug)]
pub struct EmbeddedFrame {
    pub frame: Frame,
    pub embedding: Embedding,
    /// Time the encoder took on it.
    pub encode: Duration,
}

/// The `kept` most recent embedded frames, newest last.
#[derive(Debug)]
pub struct EmbeddingCache {
    kept: usize,
    entries: Mutex<VecDeque<Arc<EmbeddedFrame>>>,
    newest: Latest<Arc<EmbeddedFrame>>,
}

impl EmbeddingCache {
    pub fn new(kept: usize) -> EmbeddingCache {
        EmbeddingCache { kept, entries: Mutex::new(VecDeque::with_capacity(kept)), newest: Latest::new() }
    }

    /// Adds the newest frame, forgetting the oldest beyond `kept`. A frame
    /// older than the newest kept one (encoded in parallel, finished later)
    /// is not kept: latest frame wins. Returns whether it was kept.
    ///
    /// Only the newest frame keeps the mask decoder's per-frame tensors:
    /// prompts mostly target it, and a prompt for an older frame recomputes
    /// them (15 ms) rather than every kept frame holding 10 MB more
    /// (docs/PERFORMANCE.md#memory).
    pub fn push(&self, embedded: EmbeddedFrame) -> bool {
        let embedded = Arc::new(embedded);
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        if entries.back().is_some_and(|newest| newest.frame.id > embedded.frame.id) {
            return false;
        }
        let previous = entries.back().cloned();
        if entries.len() == self.kept {
            entries.pop_front();
        }
        entries.push_back(embedded.clone());
        drop(entries);
        // Outside the lock: the previous frame's tensors may still be in
        // the making (`MaskDecoder::publish_then_prepare`), and lookups
        // must not wait for them.
        if let Some(previous) = previous {
            previous.embedding.forget_frame_tensors();
        }
        self.newest.put(embedded);
        true
    }

    pub fn latest(&self) -> Option<Arc<EmbeddedFrame>> {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner).back().cloned()
    }

    pub fn get(&self, id: u32) -> Option<Arc<EmbeddedFrame>> {
        let entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        entries.iter().find(|e| e.frame.id == id).cloned()
    }

    /// Ids of the frames kept, oldest first.
    pub fn ids(&self) -> Vec<u32> {
        let entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        entries.iter().map(|e| e.frame.id).collect()
    }

    /// Notifications of each newly embedded frame (see [`Latest::peek_newer`]).
    pub fn newest(&self) -> &Latest<Arc<EmbeddedFrame>> {
        &self.newest
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use tract_onnx::prelude::Tensor;

    use super::*;
    use crate::model::{FrameTensors, Geometry, Size};

    fn embedded(id: u32) -> EmbeddedFrame {
        let image = Arc::new(image::RgbImage::new(4, 4));
        let geometry = Geometry::new(Size::new(4, 4), 1024);
        let embedding = Embedding::new(Tensor::zero::<f32>(&[1, 1, 1, 1]).unwrap(), geometry);
        EmbeddedFrame { frame: Frame { id, captured: Instant::now(), image }, embedding, encode: Duration::ZERO }
    }

    #[test]
    fn frames_encoded_side_by_side_keep_the_newest_and_drop_a_late_older_one() {
        let cache = EmbeddingCache::new(3);
        assert!(cache.push(embedded(1)));
        assert!(cache.push(embedded(3)));
        // Frame 2 was sent before 3 but answered after it: latest frame wins.
        assert!(!cache.push(embedded(2)));
        assert_eq!(cache.ids(), [1, 3]);
        assert_eq!(cache.latest().unwrap().frame.id, 3);
        assert!(cache.push(embedded(4)) && cache.push(embedded(5)));
        assert_eq!(cache.ids(), [3, 4, 5], "the oldest beyond `kept` is forgotten");
    }

    #[test]
    fn only_the_newest_frame_keeps_the_decoders_per_frame_tensors() {
        let cache = EmbeddingCache::new(3);
        let prepared = |id| {
            let embedded = embedded(id);
            *embedded.embedding.frame.lock().unwrap() = Some(Arc::new(FrameTensors(Vec::new())));
            embedded
        };
        let kept = |id| cache.get(id).unwrap().embedding.frame.lock().unwrap().is_some();
        cache.push(prepared(1));
        assert!(kept(1));
        cache.push(prepared(2));
        assert!(!kept(1) && kept(2));
        // A late older frame is not kept, and takes nothing from the newest.
        assert!(!cache.push(prepared(1)));
        assert!(kept(2));
        // A detached clone (a long job's) keeps what frame 2 had.
        let held = cache.get(2).unwrap().embedding.detached();
        cache.push(prepared(3));
        assert!(!kept(2) && held.frame.lock().unwrap().is_some());
    }
}
