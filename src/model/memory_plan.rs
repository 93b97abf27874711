//! Memory for a plan's runs, planned from its first run, as ONNX Runtime's
//! memory patterns do.
//!
//! tract allocates each node's output when the node runs and frees it after
//! its last use, through the global allocator. A frame's encoding does so
//! about 1,250 times in sizes of 0.26-34 MB, and glibc's heap, which serves
//! them between the frames' kept tensors, keeps its holes resident: the
//! daemon's RSS sat about 150 MB above its live heap (docs/PERFORMANCE.md#memory).
//! A plan with fixed input shapes allocates the same sizes in the same order
//! on every run, so [`RunMemory`] records the first run's large blocks (when
//! each was allocated and freed), gives each one an offset in one mapping such
//! that blocks alive at the same time never overlap, and from the second run
//! serves the n-th large allocation from its offset. The mapping is faulted
//! in once and reused by every frame.
//!
//! It takes effect where the binary installs [`PlanningAllocator`] as its
//! global allocator (the `maskd` binary does); elsewhere runs are unchanged.
//! A run that departs from the recording stays correct: a block whose place
//! is still taken, one that outlived the recorded run, or any allocation
//! after a size that differs from the recording goes to the system
//! allocator.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::ptr;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use super::run_heap::RunHeap;

/// Blocks from this size on are planned; smaller ones stay with the system
/// allocator, whose bins serve them without holes worth the bookkeeping.
const LARGE: usize = 256 << 10;
/// Large allocations a recorded run may make: the encoder makes 1,319.
const MAX_RECORDED: usize = 4096;
/// Offsets are multiples of a cache line at least.
pub(super) const MIN_ALIGN: usize = 64;
/// The alignment of an arena's base; blocks that need more are not planned.
pub(super) const PAGE: usize = 4096;
/// Arenas alive at once in one process: one per loaded encoder.
const MAX_ARENAS: usize = 16;

/// Whether recorded runs take their large blocks from a [`RunHeap`].
static RECORD_IN_RUN_HEAPS: AtomicBool = AtomicBool::new(true);

/// Makes recorded runs take their large blocks from the system allocator
/// instead of a run heap of their own, for a process where that allocator
/// maps large blocks on their own and returns each when freed (the
/// daemon's `M_MMAP_THRESHOLD` of 128 KiB): a recording then touches little
/// more than its live blocks, where a run heap's best fit touches 62 MB for
/// the encoder's 47 at its peak (docs/PERFORMANCE.md#memory).
pub fn record_with_system_allocator() {
    RECORD_IN_RUN_HEAPS.store(false, Ordering::Relaxed);
}

/// The global allocator that serves planned runs from their arenas and
/// everything else from the system allocator. Install it in a binary:
///
/// ```ignore
/// #[global_allocator]
/// static ALLOCATOR: maskd::model::PlanningAllocator = maskd::model::PlanningAllocator;
/// ```
pub struct PlanningAllocator;

thread_local! {
    /// The run this thread is inside, if any. Const-initialized and without
    /// a destructor, so the allocator can read it without allocating.
    static ACTIVE: Cell<*mut Phase> = const { Cell::new(ptr::null_mut()) };
}

/// Where each registered arena lies, for deallocations on any thread. A slot
/// is cleared length first, and a pointer can only fall inside an arena
/// while one of its blocks is live, which keeps the arena registered.
static ARENA_BASES: [AtomicUsize; MAX_ARENAS] = [const { AtomicUsize::new(0) }; MAX_ARENAS];
static ARENA_LENS: [AtomicUsize; MAX_ARENAS] = [const { AtomicUsize::new(0) }; MAX_ARENAS];
static ARENAS: [AtomicPtr<Arena>; MAX_ARENAS] = [const { AtomicPtr::new(ptr::null_mut()) }; MAX_ARENAS];

// SAFETY: every block handed out is either the system allocator's or a
// range of an arena that no other live block overlaps (`Arena::take`), and
// each is returned to where it came from (`Arena::containing`).
unsafe impl GlobalAlloc for PlanningAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if layout.size() >= LARGE {
            let phase = ACTIVE.with(Cell::get);
            if !phase.is_null() {
                // SAFETY: `ACTIVE` points at the phase that `RunMemory::run`
                // holds locked on this thread until it clears it.
                return unsafe { (*phase).alloc(layout) };
            }
        }
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if layout.size() >= LARGE && !ACTIVE.with(Cell::get).is_null() {
            let block = unsafe { self.alloc(layout) };
            if !block.is_null() {
                unsafe { ptr::write_bytes(block, 0, layout.size()) };
            }
            return block;
        }
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, block: *mut u8, layout: Layout) {
        if layout.size() >= LARGE {
            if let Some(arena) = Arena::containing(block) {
                arena.give_back(block);
                return;
            }
            let phase = ACTIVE.with(Cell::get);
            if !phase.is_null() {
                // SAFETY: as in `alloc`.
                unsafe { (*phase).freed(block) };
            }
            if let Some(heap) = RunHeap::containing(block) {
                // SAFETY: as in `alloc`.
                match unsafe { phase.as_ref() } {
                    Some(Phase::Recording(recording)) if recording.heap.is_some_and(|own| ptr::eq(own, heap)) => {
                        // SAFETY: this thread runs the recording and holds its
                        // phase lock; `block` is one of the heap's live blocks.
                        unsafe { heap.free_for_reuse(block, layout.size()) }
                    }
                    _ => heap.free_elsewhere(),
                }
                return;
            }
        }
        unsafe { System.dealloc(block, layout) }
    }

    unsafe fn realloc(&self, block: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let planned = layout.size().max(new_size) >= LARGE
            && (!ACTIVE.with(Cell::get).is_null() || Arena::containing(block).is_some() || RunHeap::containing(block).is_some());
        if !planned {
            return unsafe { System.realloc(block, layout, new_size) };
        }
        // SAFETY: the caller's contract for `realloc`, as std's default does.
        unsafe {
            let new_layout = Layout::from_size_align_unchecked(new_size, layout.align());
            let moved = self.alloc(new_layout);
            if !moved.is_null() {
                ptr::copy_nonoverlapping(block, moved, layout.size().min(new_size));
                self.dealloc(block, layout);
            }
            moved
        }
    }
}

/// The memory plan of one model's runs: recorded on the first run, replayed
/// on the next ones.
#[derive(Debug, Default)]
pub(crate) struct RunMemory {
    phase: Mutex<Phase>,
}

/// What a [`RunMemory`] does on its next run.
#[derive(Debug, Default)]
enum Phase {
    /// No run yet.
    #[default]
    Unrecorded,
    /// The first run is being recorded.
    Recording(Recording),
    /// Runs take their large blocks from the arena.
    Replaying(Replay),
    /// The first run made no large allocation through [`PlanningAllocator`]
    /// (it is not installed) or more than can be recorded.
    Unplanned,
}

/// The large allocations of a run, in order.
struct Recording {
    /// Where the recorded run's large blocks live, if a heap could be opened.
    heap: Option<&'static RunHeap>,
    blocks: Vec<RecordedBlock>,
    /// The recorded blocks not freed yet: address and index.
    live: Vec<(usize, usize)>,
    /// Counts allocations and frees: the order of events.
    clock: u32,
    overflowed: bool,
}

#[derive(Debug, Clone, Copy)]
struct RecordedBlock {
    size: usize,
    align: usize,
    allocated: u32,
    /// `None` while live; still `None` at the run's end when the block
    /// outlives it (the run's outputs).
    freed: Option<u32>,
}

/// A replayed run's progress through its arena.
#[derive(Debug)]
struct Replay {
    arena: &'static Arena,
    slot: usize,
    next: usize,
    /// A size differed from the recording: the rest of the run is not planned.
    diverged: bool,
    /// Allocations that went to the system allocator this run.
    unplanned: usize,
}

/// The mapping that planned blocks live in, with where each block goes.
#[derive(Debug)]
struct Arena {
    base: usize,
    len: usize,
    /// In the order of the recording.
    blocks: Vec<Placement>,
    /// For each block, the blocks whose range overlaps its own.
    overlapping: Vec<Vec<u32>>,
    live: Vec<AtomicBool>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Placement {
    size: usize,
    align: usize,
    /// `None`: the block outlived the recorded run and is not planned.
    offset: Option<usize>,
}

/// How a run's memory was served, for logs and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MemoryPlanStats {
    /// The arena's size in bytes, 0 before a plan exists.
    pub arena_bytes: usize,
    /// Large blocks of the last replayed run served from the arena.
    pub planned: usize,
    /// Large blocks of the last replayed run that went to the system allocator.
    pub unplanned: usize,
}

impl RunMemory {
    /// Runs `run` (a model run on this thread) with its large allocations
    /// recorded on the first call and served from the plan on later ones.
    /// A run already in progress elsewhere makes this one unplanned.
    pub(crate) fn run<R>(&self, run: impl FnOnce() -> R) -> R {
        let Ok(mut phase) = self.phase.try_lock() else {
            return run();
        };
        match &mut *phase {
            Phase::Unrecorded | Phase::Recording(_) => *phase = Phase::Recording(Recording::new()),
            Phase::Replaying(replay) => {
                replay.next = 0;
                replay.diverged = false;
                replay.unplanned = 0;
            }
            Phase::Unplanned => return run(),
        }
        let active = Active::enter(&mut phase);
        let result = run();
        drop(active);
        if let Phase::Recording(_) = &*phase {
            let Phase::Recording(recording) = std::mem::take(&mut *phase) else { unreachable!("matched above") };
            *phase = recording.into_plan();
            if let Phase::Replaying(replay) = &*phase {
                log::debug!("memory plan: {:.1} MB for {} blocks", replay.arena.len as f64 / 1e6, replay.arena.blocks.len());
            }
        }
        result
    }

    /// How the last run's memory was served.
    pub(crate) fn stats(&self) -> MemoryPlanStats {
        match &*self.phase.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) {
            Phase::Replaying(replay) => MemoryPlanStats {
                arena_bytes: replay.arena.len,
                planned: replay.next - replay.unplanned,
                unplanned: replay.unplanned,
            },
            _ => MemoryPlanStats::default(),
        }
    }
}

/// The plans of a model whose input shapes vary (the decoder's batch of
/// point sets): one [`RunMemory`] for each of the `kept` shapes run most
/// recently, each with its arena.
#[derive(Debug)]
pub(crate) struct RunMemories {
    kept: usize,
    /// Most recently used first.
    plans: Mutex<Vec<(Vec<usize>, Arc<RunMemory>)>>,
}

impl RunMemories {
    pub(crate) fn new(kept: usize) -> RunMemories {
        RunMemories { kept, plans: Mutex::default() }
    }

    /// The plan for runs on inputs of `shape`, made if new, dropping the least recently used beyond `kept`.
    pub(crate) fn for_shape(&self, shape: &[usize]) -> Arc<RunMemory> {
        let mut plans = self.plans.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let plan = match plans.iter().position(|(kept, _)| kept == shape) {
            Some(at) => plans.remove(at).1,
            None => Arc::default(),
        };
        plans.insert(0, (shape.to_vec(), plan.clone()));
        plans.truncate(self.kept);
        plan
    }

    /// How the last run of each kept shape was served, most recent first.
    pub(crate) fn stats(&self) -> Vec<MemoryPlanStats> {
        self.plans.lock().unwrap_or_else(std::sync::PoisonError::into_inner).iter().map(|(_, plan)| plan.stats()).collect()
    }
}

impl Drop for RunMemory {
    fn drop(&mut self) {
        let phase = self.phase.get_mut().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Phase::Replaying(replay) = phase {
            Arena::release(replay.arena, replay.slot);
        }
    }
}

/// Points this thread's allocations at a phase until dropped, also when the
/// run panics.
struct Active {
    previous: *mut Phase,
}

impl Active {
    fn enter(phase: &mut Phase) -> Active {
        Active { previous: ACTIVE.with(|active| active.replace(phase)) }
    }
}

impl Drop for Active {
    fn drop(&mut self) {
        ACTIVE.with(|active| active.set(self.previous));
    }
}

impl Phase {
    /// A large allocation on the running thread.
    fn alloc(&mut self, layout: Layout) -> *mut u8 {
        match self {
            Phase::Recording(recording) => {
                // SAFETY: the phase lock is held, and an unclosed heap is open.
                let in_heap = recording.heap.and_then(|heap| unsafe { heap.alloc(layout) });
                // SAFETY: `layout` is large, so not zero-sized.
                let block = in_heap.unwrap_or_else(|| unsafe { System.alloc(layout) });
                if !block.is_null() {
                    recording.allocated(block, layout);
                }
                block
            }
            Phase::Replaying(replay) => replay.alloc(layout),
            // SAFETY: as above.
            Phase::Unrecorded | Phase::Unplanned => unsafe { System.alloc(layout) },
        }
    }

    /// A large system block freed on the running thread.
    fn freed(&mut self, block: *mut u8) {
        if let Phase::Recording(recording) = self {
            recording.freed(block);
        }
    }
}

impl std::fmt::Debug for Recording {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recording").field("blocks", &self.blocks.len()).field("clock", &self.clock).field("overflowed", &self.overflowed).finish()
    }
}

/// A recording dropped unfinished (its run panicked) still closes its heap.
impl Drop for Recording {
    fn drop(&mut self) {
        self.close_heap();
    }
}

impl Recording {
    fn new() -> Recording {
        // Reserved up front: the allocator must not allocate to record.
        Recording {
            heap: if RECORD_IN_RUN_HEAPS.load(Ordering::Relaxed) { RunHeap::open() } else { None },
            blocks: Vec::with_capacity(MAX_RECORDED),
            live: Vec::with_capacity(MAX_RECORDED),
            clock: 0,
            overflowed: false,
        }
    }

    /// Ends the run in the heap: its free pages go back to the system.
    fn close_heap(&mut self) {
        if let Some(heap) = self.heap.take() {
            // SAFETY: the phase lock is held (this recording is reached only
            // through it), and the heap was open.
            unsafe { heap.close() };
        }
    }

    fn allocated(&mut self, block: *mut u8, layout: Layout) {
        if self.blocks.len() == self.blocks.capacity() {
            self.overflowed = true;
            return;
        }
        self.live.push((block as usize, self.blocks.len()));
        self.blocks.push(RecordedBlock { size: layout.size(), align: layout.align(), allocated: self.clock, freed: None });
        self.clock += 1;
    }

    fn freed(&mut self, block: *mut u8) {
        if let Some(at) = self.live.iter().position(|&(address, _)| address == block as usize) {
            let (_, index) = self.live.swap_remove(at);
            self.blocks[index].freed = Some(self.clock);
            self.clock += 1;
        }
    }

    /// The plan for the recorded run, and its arena.
    fn into_plan(mut self) -> Phase {
        self.close_heap();
        if self.overflowed || self.blocks.is_empty() {
            return Phase::Unplanned;
        }
        let (offsets, len) = place(&self.blocks);
        if len == 0 {
            return Phase::Unplanned;
        }
        let blocks: Vec<Placement> = self
            .blocks
            .iter()
            .zip(offsets)
            .map(|(block, offset)| Placement { size: block.size, align: block.align, offset })
            .collect();
        match Arena::map(blocks, len) {
            Some((arena, slot)) => Phase::Replaying(Replay { arena, slot, next: 0, diverged: false, unplanned: 0 }),
            None => Phase::Unplanned,
        }
    }
}

/// Offsets for the blocks freed within the run (`None` for the others, and
/// for blocks aligned beyond a page) such that blocks alive at the same time
/// do not overlap, and the arena length. Each block goes, in turn, at the
/// lowest offset free throughout its lifetime: the usual greedy for this
/// interval packing, run twice: with the blocks taken largest first, and
/// largest in size times lifetime first. The shorter arena wins: on the
/// encoder each won with one of its evaluation orders (48.5 against 51.2 MB
/// for a live peak of 47.4, and 58.7 against 62.9 for 51.1).
fn place(blocks: &[RecordedBlock]) -> (Vec<Option<usize>>, usize) {
    // The arena's base is only page-aligned.
    let placeable = |block: &RecordedBlock| block.freed.is_some() && block.align <= PAGE;
    let indices: Vec<usize> = (0..blocks.len()).filter(|&i| placeable(&blocks[i])).collect();
    let lifetime = |i: usize| (blocks[i].freed.unwrap_or(u32::MAX) - blocks[i].allocated) as usize;
    let rankings: [&dyn Fn(usize) -> usize; 2] = [&|i| blocks[i].size, &|i| blocks[i].size.saturating_mul(lifetime(i))];
    rankings
        .iter()
        .map(|rank| {
            let mut order = indices.clone();
            order.sort_by_key(|&i| (std::cmp::Reverse(rank(i)), std::cmp::Reverse(blocks[i].size), i));
            place_in_order(blocks, &order)
        })
        .min_by_key(|(_, len)| *len)
        .expect("two rankings")
}

/// [`place`]'s greedy, the blocks taken in `order`.
fn place_in_order(blocks: &[RecordedBlock], order: &[usize]) -> (Vec<Option<usize>>, usize) {
    let mut offsets = vec![None; blocks.len()];
    let mut placed: Vec<usize> = Vec::new();
    let mut len = 0;
    for &i in order {
        let (start, end) = (blocks[i].allocated, blocks[i].freed.unwrap_or(u32::MAX));
        let mut taken: Vec<(usize, usize)> = placed
            .iter()
            .filter(|&&j| blocks[j].allocated < end && start < blocks[j].freed.unwrap_or(u32::MAX))
            .map(|&j| (offsets[j].unwrap_or(0), offsets[j].unwrap_or(0) + blocks[j].size))
            .collect();
        taken.sort_unstable();
        let align = blocks[i].align.max(MIN_ALIGN);
        let mut offset = 0;
        for (from, to) in taken {
            if offset + blocks[i].size <= from {
                break;
            }
            offset = offset.max(to.next_multiple_of(align));
        }
        offsets[i] = Some(offset);
        len = len.max(offset + blocks[i].size);
        placed.push(i);
    }
    (offsets, len)
}

impl Replay {
    fn alloc(&mut self, layout: Layout) -> *mut u8 {
        let index = self.next;
        self.next += 1;
        if !self.diverged {
            match self.arena.blocks.get(index) {
                Some(block) if block.size == layout.size() && block.align == layout.align() => {
                    if let Some(taken) = self.arena.take(index) {
                        return taken;
                    }
                }
                _ => self.diverged = true,
            }
        }
        self.unplanned += 1;
        // SAFETY: `layout` is large, so not zero-sized.
        unsafe { System.alloc(layout) }
    }
}

impl Arena {
    /// Maps an arena of `len` bytes for `blocks` and registers it; `None`
    /// when the mapping fails or every slot is taken.
    fn map(blocks: Vec<Placement>, len: usize) -> Option<(&'static Arena, usize)> {
        let len = len.next_multiple_of(2 << 20);
        let base = map_anonymous(len, 0)?;
        let range = |i: usize| blocks[i].offset.map(|offset| offset..offset + blocks[i].size);
        let overlapping = (0..blocks.len())
            .map(|i| {
                let Some(mine) = range(i) else { return Vec::new() };
                (0..blocks.len())
                    .filter(|&other| other != i && range(other).is_some_and(|theirs| theirs.start < mine.end && mine.start < theirs.end))
                    .map(|other| other as u32)
                    .collect()
            })
            .collect();
        let live = blocks.iter().map(|_| AtomicBool::new(false)).collect();
        let arena: &'static Arena = Box::leak(Box::new(Arena { base, len, blocks, overlapping, live }));
        for slot in 0..MAX_ARENAS {
            if ARENAS[slot]
                .compare_exchange(ptr::null_mut(), ptr::from_ref(arena).cast_mut(), Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                ARENA_BASES[slot].store(base, Ordering::Release);
                ARENA_LENS[slot].store(len, Ordering::Release);
                return Some((arena, slot));
            }
        }
        unmap(base, len);
        None
    }

    /// The registered arena whose range holds `block`.
    fn containing(block: *mut u8) -> Option<&'static Arena> {
        let address = block as usize;
        for slot in 0..MAX_ARENAS {
            let len = ARENA_LENS[slot].load(Ordering::Acquire);
            if len == 0 {
                continue;
            }
            let base = ARENA_BASES[slot].load(Ordering::Acquire);
            if (base..base + len).contains(&address) {
                let arena = ARENAS[slot].load(Ordering::Acquire);
                // SAFETY: a registered arena is only released when none of
                // its blocks is live, and `block` is one of them.
                return unsafe { arena.as_ref() };
            }
        }
        None
    }

    /// The place of block `index`, unless a block sharing it is still live.
    fn take(&self, index: usize) -> Option<*mut u8> {
        let offset = self.blocks[index].offset?;
        if self.overlapping[index].iter().any(|&other| self.live[other as usize].load(Ordering::Acquire)) {
            return None;
        }
        self.live[index].store(true, Ordering::Release);
        Some((self.base + offset) as *mut u8)
    }

    fn give_back(&self, block: *mut u8) {
        let offset = block as usize - self.base;
        let index = (0..self.blocks.len()).find(|&i| self.blocks[i].offset == Some(offset) && self.live[i].load(Ordering::Acquire));
        if let Some(index) = index {
            self.live[index].store(false, Ordering::Release);
        }
    }

    /// Unregisters, unmaps and frees `arena` (registered in `slot`, used by
    /// no run any more), unless a block is still live (a model's output
    /// kept after the model): then it stays for good.
    fn release(arena: &'static Arena, slot: usize) {
        if arena.live.iter().any(|live| live.load(Ordering::Acquire)) {
            return;
        }
        ARENA_LENS[slot].store(0, Ordering::Release);
        ARENA_BASES[slot].store(0, Ordering::Release);
        ARENAS[slot].store(ptr::null_mut(), Ordering::Release);
        unmap(arena.base, arena.len);
        // SAFETY: made by `Box::leak` in `Arena::map`. Nothing reaches it any
        // more: no run uses it, and `Arena::containing` only reads an arena
        // for a pointer inside it, that is, while one of its blocks is live.
        drop(unsafe { Box::from_raw(ptr::from_ref(arena).cast_mut()) });
    }
}

/// A private anonymous mapping, asking for 2 MiB pages: the encoder's
/// arena is tens of MB, touched whole on every run. `flags` are added to
/// the mapping's (`MAP_NORESERVE` for a reservation of address space).
pub(super) fn map_anonymous(len: usize, flags: libc::c_int) -> Option<usize> {
    // SAFETY: a fresh private mapping, touching no existing memory.
    let base = unsafe {
        libc::mmap(ptr::null_mut(), len, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | flags, -1, 0)
    };
    if base == libc::MAP_FAILED {
        return None;
    }
    // SAFETY: advice on the mapping just made; a refusal leaves small pages.
    unsafe { libc::madvise(base, len, libc::MADV_HUGEPAGE) };
    Some(base as usize)
}

pub(super) fn unmap(base: usize, len: usize) {
    // SAFETY: `base..base + len` is a mapping of `map_anonymous` that no live block uses.
    unsafe { libc::munmap(base as *mut libc::c_void, len) };
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(size: usize, allocated: u32, freed: Option<u32>) -> RecordedBlock {
        RecordedBlock { size, align: 128, allocated, freed }
    }

    #[test]
    fn recordings_open_no_heap_once_the_system_allocator_is_chosen() {
        record_with_system_allocator();
        assert!(Recording::new().heap.is_none());
    }

    #[test]
    fn blocks_alive_together_get_disjoint_ranges_and_others_share() {
        // a and b live together; c comes after a is freed; d outlives the
        // run; e needs more alignment than the arena's base has.
        let mut blocks = [block(1000, 0, Some(3)), block(500, 1, Some(5)), block(900, 4, Some(6)), block(300, 2, None), block(64, 7, Some(8))];
        blocks[4].align = 2 * PAGE;
        let (offsets, len) = place(&blocks);
        assert_eq!((offsets[3], offsets[4]), (None, None));
        let range = |i: usize| offsets[i].unwrap()..offsets[i].unwrap() + blocks[i].size;
        let overlap = |i: usize, j: usize| range(i).start < range(j).end && range(j).start < range(i).end;
        assert!(!overlap(0, 1) && !overlap(1, 2), "{offsets:?}");
        assert!(overlap(0, 2), "c should reuse a's place: {offsets:?}");
        assert!(offsets.iter().flatten().all(|offset| offset % 128 == 0), "{offsets:?}");
        assert_eq!(len, range(1).end.max(range(0).end));
    }
}
