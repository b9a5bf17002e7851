//! The heap of a long-running controller on glibc. Two habits of glibc's allocator make an
//! idle controller's RSS climb and stay up without any live data behind it: every thread that
//! allocates while another holds the main arena gets an arena of its own (up to 8 per core),
//! and the git work runs on tokio's blocking threads, which come and go, spreading short-lived
//! allocations over many arenas; and memory freed inside an arena (the old objects after a
//! watch relists, a poll's ref listing and LIST) is kept for reuse rather than returned.
//! So the controller caps the arenas (unless `MALLOC_ARENA_MAX` says otherwise) and
//! periodically hands free pages back with `malloc_trim`, which costs a walk of the heap
//! (a few milliseconds) and writes nothing. Other allocators and platforms are left alone.

use std::time::Duration;

/// Arenas allowed: two serve the runtime's workers and the blocking git work without the
/// lock contention a single arena would bring.
const ARENAS: i32 = 2;

/// Caps glibc's malloc arenas, unless the environment already sets `MALLOC_ARENA_MAX`.
/// Call once at start-up, before the runtime's threads allocate.
pub fn cap_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: mallopt only changes allocator parameters; any value is accepted or refused
        // by glibc itself.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, ARENAS);
        }
    }
}

/// Returns free heap pages to the system every `every` (never when zero).
pub async fn keep_trimming(every: Duration) {
    if every.is_zero() {
        return;
    }
    loop {
        tokio::time::sleep(every).await;
        let _ = tokio::task::spawn_blocking(trim).await;
    }
}

fn trim() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases memory the allocator holds free.
    unsafe {
        libc::malloc_trim(0);
    }
}
