//! How the long-running daemon keeps its resident memory down: glibc's
//! heap settings, and the pages of its own binary that only loading ran.

/// Makes every thread allocate from glibc's main heap, and blocks of 128 KiB
/// or more come from mappings of their own, returned as soon as they are
/// freed. By default each thread that allocates gets an arena of its own
/// (eight to ten in a running daemon: capture, encoder, decoder, tract's
/// pool...), and each keeps the frames' tensors it freed resident: one heap
/// lowered the daemon's peak RSS from 418 to 378 MiB (medians of 5 and 10
/// runs) with the same encoder and prompt times. The encoder's and the
/// decoder's tensors come from their memory plans (`model::PlanningAllocator`);
/// what is left (kept frames' tensors, masks, frames, display buffers) comes
/// and goes at other times than the blocks around it and left holes in the
/// heap. 128 KiB is glibc's own starting threshold, which it raises to the
/// largest mapped block freed so far: held there, the daemon peaked at
/// 188-193 MiB against 199-205 with 1 MiB (docs/PERFORMANCE.md#memory).
/// With blocks mapped so, the plans' first runs, which they record, take
/// theirs from glibc too, not from a run heap.
pub fn tune_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: sets malloc tunables, before the daemon starts any thread.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, 1);
            libc::mallopt(libc::M_MMAP_THRESHOLD, 128 << 10);
        }
        crate::model::record_with_system_allocator();
    }
}

/// Takes the pages of this executable's code and read-only data out of the
/// process, once the model is loaded: loading runs much of tract's graph
/// optimizer and the ONNX parser once, about 25 MiB of code that stays
/// resident for nothing. The code that runs afterwards comes back from the
/// page cache on first use (minor faults, no disk read while the file is
/// cached). Returns the bytes taken out.
///
/// Only mappings of the executable without write permission and without
/// a page of their own (`Anonymous: 0 kB`) are touched: a page that
/// relocation wrote (RELRO) would come back as the file's unrelocated bytes.
pub fn release_loading_code() -> usize {
    #[cfg(target_os = "linux")]
    {
        let (Ok(exe), Ok(smaps)) = (std::env::current_exe(), std::fs::read_to_string("/proc/self/smaps")) else {
            return 0;
        };
        let mut released = 0;
        for mapping in read_only_file_mappings(&smaps, &exe.to_string_lossy()) {
            // SAFETY: a mapping of the executable with no private page: its
            // pages are the file's, and refault from it unchanged.
            let done = unsafe {
                libc::madvise(mapping.start as *mut libc::c_void, mapping.end - mapping.start, libc::MADV_DONTNEED)
            };
            if done == 0 {
                released += mapping.resident;
            }
        }
        released
    }
    #[cfg(not(target_os = "linux"))]
    0
}

/// A mapping of `/proc/self/smaps` whose pages are all the file's.
#[derive(Debug, PartialEq, Eq)]
struct FileMapping {
    start: usize,
    end: usize,
    /// Resident bytes.
    resident: usize,
}

/// The mappings of `path` in `smaps` that are not writable and hold no
/// anonymous (copied-on-write) page.
fn read_only_file_mappings(smaps: &str, path: &str) -> Vec<FileMapping> {
    struct Entry {
        mapping: FileMapping,
        candidate: bool,
        anonymous: usize,
    }
    let mut entries: Vec<Entry> = Vec::new();
    for line in smaps.lines() {
        let mut fields = line.split_whitespace();
        let first = fields.next().unwrap_or_default();
        if let Some((start, end)) = first.split_once('-') {
            if let (Ok(start), Ok(end)) = (usize::from_str_radix(start, 16), usize::from_str_radix(end, 16)) {
                let perms = fields.next().unwrap_or_default();
                let name = fields.nth(3).unwrap_or_default();
                let candidate = name == path && !perms.contains('w');
                entries.push(Entry { mapping: FileMapping { start, end, resident: 0 }, candidate, anonymous: 0 });
                continue;
            }
        }
        let mut kib = || fields.next().and_then(|v| v.parse::<usize>().ok()).unwrap_or(0) * 1024;
        match (first, entries.last_mut()) {
            ("Rss:", Some(entry)) => entry.mapping.resident = kib(),
            ("Anonymous:", Some(entry)) => entry.anonymous = kib(),
            _ => {}
        }
    }
    entries.into_iter().filter(|e| e.candidate && e.anonymous == 0).map(|e| e.mapping).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMAPS: &str = "\
55e0c0000000-55e0c0800000 r--p 00000000 fe:00 42   /opt/maskd/bin/maskd
Rss:                5036 kB
Anonymous:             0 kB
55e0c0800000-55e0c2000000 r-xp 00800000 fe:00 42   /opt/maskd/bin/maskd
Rss:               23616 kB
Anonymous:             0 kB
55e0c2000000-55e0c2100000 r--p 02000000 fe:00 42   /opt/maskd/bin/maskd
Rss:                1016 kB
Anonymous:          1016 kB
55e0c2100000-55e0c2108000 rw-p 02100000 fe:00 42   /opt/maskd/bin/maskd
Rss:                  28 kB
Anonymous:            28 kB
7f0000000000-7f0000200000 r-xp 00000000 fe:00 7    /usr/lib/libc.so.6
Rss:                1100 kB
Anonymous:             0 kB
7f0000400000-7f0003600000 rw-p 00000000 00:00 0
Rss:               51200 kB
Anonymous:         51200 kB
";

    #[test]
    fn only_the_executables_unwritten_read_only_mappings_are_released() {
        let found = read_only_file_mappings(SMAPS, "/opt/maskd/bin/maskd");
        assert_eq!(
            found,
            [
                FileMapping { start: 0x55e0c0000000, end: 0x55e0c0800000, resident: 5036 * 1024 },
                FileMapping { start: 0x55e0c0800000, end: 0x55e0c2000000, resident: 23616 * 1024 },
            ],
            "relocated (RELRO) and writable mappings, other files and anonymous memory are kept"
        );
        assert!(read_only_file_mappings(SMAPS, "/opt/maskd/bin/other").is_empty());
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn the_code_comes_back_from_the_file_after_release() {
        let sum = |n: u64| (1..=n).map(|k| k * k).sum::<u64>();
        let before = sum(1000);
        let parsed: serde_json::Value = serde_json::from_str(r#"{"a": [1, 2, 3]}"#).unwrap();
        assert!(release_loading_code() > 0, "this test binary's code was resident");
        // The same code and read-only data, run again from refaulted pages.
        assert_eq!(sum(1000), before);
        assert_eq!(serde_json::from_str::<serde_json::Value>(r#"{"a": [1, 2, 3]}"#).unwrap(), parsed);
    }
}
