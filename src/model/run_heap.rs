//! Where a plan's first run, the one a memory plan records, puts its large
//! blocks: one reserved range of address space, served best fit with freed
//! neighbours merged, so that the run touches little more memory than it
//! holds at its peak.
//!
//! Served by glibc instead, those blocks fall between the loaded model's
//! and each other's holes: `maskd segment`, whose one encoder run is a
//! recording, peaked 20-40 MiB above its live memory (docs/PERFORMANCE.md).
//! At the run's end the heap returns its free pages; it is unmapped once
//! the last of its blocks (the run's outputs, kept by the caller) is freed.

use std::alloc::Layout;
use std::cell::UnsafeCell;
use std::ptr;
use std::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};

use super::memory_plan::{map_anonymous, unmap, MIN_ALIGN, PAGE};

/// Address space reserved per heap: no memory until touched. A run that
/// needs more gets the rest from the system allocator.
const RESERVED: usize = 1 << 30;
/// Heaps open or holding blocks at once in one process.
const MAX_HEAPS: usize = 16;
/// Free ranges tracked at once; beyond, a freed range is not reused.
const MAX_FREE_RANGES: usize = 4096;

/// Where each registered heap lies, for frees on any thread.
static HEAP_BASES: [AtomicUsize; MAX_HEAPS] = [const { AtomicUsize::new(0) }; MAX_HEAPS];
static HEAPS: [AtomicPtr<RunHeap>; MAX_HEAPS] = [const { AtomicPtr::new(ptr::null_mut()) }; MAX_HEAPS];

/// One recorded run's large blocks.
pub(crate) struct RunHeap {
    base: usize,
    /// Live blocks, plus one while the run is open.
    holds: AtomicUsize,
    /// Touched only by the thread that holds the recording's phase lock:
    /// the running thread during the run, then whoever closes it.
    space: UnsafeCell<Space>,
}

// SAFETY: `space` is only reached under the recording's phase lock (see its
// field); the rest is atomic.
unsafe impl Sync for RunHeap {}

struct Space {
    /// Offset below which blocks and free ranges lie.
    top: usize,
    /// The highest `top` reached: pages below it may be resident.
    high_water: usize,
    /// Free ranges below `top`, `(offset, len)`, sorted, none touching.
    free: Vec<(usize, usize)>,
}

impl RunHeap {
    /// A new registered heap, or `None` when the address space or the
    /// registry is short (the run then uses the system allocator).
    pub(crate) fn open() -> Option<&'static RunHeap> {
        let base = map_anonymous(RESERVED, libc::MAP_NORESERVE)?;
        let space = Space { top: 0, high_water: 0, free: Vec::with_capacity(MAX_FREE_RANGES) };
        let heap = Box::into_raw(Box::new(RunHeap { base, holds: AtomicUsize::new(1), space: UnsafeCell::new(space) }));
        for slot in 0..MAX_HEAPS {
            if HEAPS[slot].compare_exchange(ptr::null_mut(), heap, Ordering::AcqRel, Ordering::Acquire).is_ok() {
                HEAP_BASES[slot].store(base, Ordering::Release);
                // SAFETY: just made by `Box::into_raw`, freed only by `release`.
                return Some(unsafe { &*heap });
            }
        }
        // SAFETY: never registered, so never handed out.
        drop(unsafe { Box::from_raw(heap) });
        unmap(base, RESERVED);
        None
    }

    /// The registered heap whose range holds `block`.
    pub(crate) fn containing(block: *mut u8) -> Option<&'static RunHeap> {
        let address = block as usize;
        for slot in 0..MAX_HEAPS {
            let base = HEAP_BASES[slot].load(Ordering::Acquire);
            if base != 0 && (base..base + RESERVED).contains(&address) {
                // SAFETY: a heap stays registered while one of its blocks is
                // live, and `block` is one of them.
                return unsafe { HEAPS[slot].load(Ordering::Acquire).as_ref() };
            }
        }
        None
    }

    /// A block for `layout`, best fit among the free ranges, else from the
    /// top; `None` when the reservation is used up.
    ///
    /// # Safety
    /// The caller holds the recording's phase lock, and the heap is open.
    pub(crate) unsafe fn alloc(&self, layout: Layout) -> Option<*mut u8> {
        // SAFETY: the caller holds the lock that serializes `space`.
        let space = unsafe { &mut *self.space.get() };
        let (size, align) = (layout.size(), layout.align().max(MIN_ALIGN));
        let fits = |&(offset, len): &(usize, usize)| offset.next_multiple_of(align) + size <= offset + len;
        let best = (0..space.free.len()).filter(|&at| fits(&space.free[at])).min_by_key(|&at| space.free[at].1);
        let start = match best {
            Some(at) => {
                let (offset, len) = space.free.remove(at);
                let start = offset.next_multiple_of(align);
                // What is left on either side stays free, in order, as far
                // as the reserved list holds (the allocator must not grow it).
                let after = (start + size, offset + len - start - size);
                if after.1 > 0 && space.free.len() < MAX_FREE_RANGES {
                    space.free.insert(at, after);
                }
                if start > offset && space.free.len() < MAX_FREE_RANGES {
                    space.free.insert(at, (offset, start - offset));
                }
                start
            }
            None => {
                // A free range ending at the top grows instead of a new one.
                let mut from = space.top;
                if let Some(&(offset, len)) = space.free.last() {
                    if offset + len == space.top {
                        from = offset;
                        space.free.pop();
                    }
                }
                let start = from.next_multiple_of(align);
                if start + size > RESERVED {
                    return None;
                }
                if start > from && space.free.len() < MAX_FREE_RANGES {
                    space.free.push((from, start - from));
                }
                space.top = start + size;
                space.high_water = space.high_water.max(space.top);
                start
            }
        };
        self.holds.fetch_add(1, Ordering::AcqRel);
        Some((self.base + start) as *mut u8)
    }

    /// Frees `block` (of `size` bytes) for reuse within the run.
    ///
    /// # Safety
    /// As for [`RunHeap::alloc`]; `block` came from it and is live.
    pub(crate) unsafe fn free_for_reuse(&self, block: *mut u8, size: usize) {
        // SAFETY: the caller holds the lock that serializes `space`.
        let space = unsafe { &mut *self.space.get() };
        let (mut offset, mut len) = (block as usize - self.base, size);
        let at = space.free.partition_point(|&(o, _)| o < offset);
        // Merged with the free neighbours it touches.
        if at < space.free.len() && space.free[at].0 == offset + len {
            len += space.free.remove(at).1;
        }
        if at > 0 && space.free[at - 1].0 + space.free[at - 1].1 == offset {
            let (previous, previous_len) = space.free.remove(at - 1);
            (offset, len) = (previous, previous_len + len);
        }
        if offset + len == space.top {
            space.top = offset;
        } else if space.free.len() < MAX_FREE_RANGES {
            let at = space.free.partition_point(|&(o, _)| o < offset);
            space.free.insert(at, (offset, len));
        }
        self.drop_hold();
    }

    /// Frees a block on a thread other than the recording one: its range is
    /// not reused before the heap is unmapped.
    pub(crate) fn free_elsewhere(&self) {
        self.drop_hold();
    }

    /// Ends the run: the pages of the free ranges and above the top go back
    /// to the system, and the heap is unmapped now or with its last block.
    ///
    /// # Safety
    /// As for [`RunHeap::alloc`]; called once, after which the heap only
    /// takes [`RunHeap::free_elsewhere`].
    pub(crate) unsafe fn close(&self) {
        // SAFETY: the caller holds the lock that serializes `space`.
        let space = unsafe { &mut *self.space.get() };
        log::debug!("run heap: {:.1} MB touched", space.high_water as f64 / 1e6);
        let top = (space.top, space.high_water.max(space.top) - space.top);
        for &(offset, len) in space.free.iter().chain([&top]) {
            let (start, end) = (offset.next_multiple_of(PAGE), (offset + len) & !(PAGE - 1));
            if end > start {
                // SAFETY: free pages of this heap's mapping: no live block
                // lies there, and the kernel refills them with zeros.
                unsafe { libc::madvise((self.base + start) as *mut libc::c_void, end - start, libc::MADV_DONTNEED) };
            }
        }
        self.drop_hold();
    }

    fn drop_hold(&self) {
        if self.holds.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.release();
        }
    }

    /// Unregisters and unmaps the heap, and frees it: the run is closed and
    /// none of its blocks is live.
    fn release(&self) {
        let this = ptr::from_ref(self).cast_mut();
        for slot in 0..MAX_HEAPS {
            if HEAPS[slot].load(Ordering::Acquire) == this {
                HEAP_BASES[slot].store(0, Ordering::Release);
                HEAPS[slot].store(ptr::null_mut(), Ordering::Release);
            }
        }
        unmap(self.base, RESERVED);
        // SAFETY: made by `Box::into_raw` in `open`; the last hold is gone,
        // so nothing reaches it any more.
        drop(unsafe { Box::from_raw(this) });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MB: usize = 1 << 20;

    fn layout(size: usize) -> Layout {
        Layout::from_size_align(size, 128).unwrap()
    }

    #[test]
    fn freed_ranges_are_reused_best_fit_and_merged() {
        let heap = RunHeap::open().unwrap();
        // SAFETY: one thread, one open heap, blocks freed once.
        unsafe {
            let a = heap.alloc(layout(4 * MB)).unwrap();
            let b = heap.alloc(layout(MB)).unwrap();
            let c = heap.alloc(layout(2 * MB)).unwrap();
            let d = heap.alloc(layout(MB)).unwrap();
            assert_eq!((a as usize, b as usize - a as usize, c as usize - b as usize), (heap.base, 4 * MB, MB));
            ptr::write_bytes(c, 7, 2 * MB);
            heap.free_for_reuse(a, 4 * MB);
            heap.free_for_reuse(c, 2 * MB);
            // 2 MB fits both holes: the tighter one, c's.
            let e = heap.alloc(layout(2 * MB)).unwrap();
            assert_eq!(e, c);
            // b freed between a's hole and nothing: merged with a's.
            heap.free_for_reuse(b, MB);
            let f = heap.alloc(layout(5 * MB)).unwrap();
            assert_eq!(f, a, "a's and b's ranges merged");
            // d and e freed at the top: the top comes down.
            heap.free_for_reuse(d, MB);
            heap.free_for_reuse(e, 2 * MB);
            let space = &*heap.space.get();
            assert_eq!((space.top, space.high_water, space.free.len()), (5 * MB, 8 * MB, 0));
            heap.free_for_reuse(f, 5 * MB);
            assert_eq!(RunHeap::containing(f).map(|h| h as *const RunHeap), Some(heap as *const RunHeap));
            heap.close();
        }
    }

    #[test]
    fn a_heap_outlives_its_run_until_its_last_block_is_freed() {
        let heap = RunHeap::open().unwrap();
        // SAFETY: as above.
        let kept = unsafe {
            let kept = heap.alloc(layout(MB)).unwrap();
            let scratch = heap.alloc(layout(3 * MB)).unwrap();
            ptr::write_bytes(scratch, 1, 3 * MB);
            heap.free_for_reuse(scratch, 3 * MB);
            heap.close();
            kept
        };
        assert!(RunHeap::containing(kept).is_some(), "unregistered under a live block");
        // SAFETY: `kept` is live: its pages must still be mapped.
        unsafe { ptr::write_bytes(kept, 3, MB) };
        heap.free_elsewhere();
    }
}
