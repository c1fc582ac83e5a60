import CYardLinux

/// Returns free heap memory to the system (glibc's `malloc_trim`): after a burst of
/// connections closes, their buffers are free but glibc keeps the pages, so the process's
/// RSS would stay at the burst's peak. Costs a walk of the heap: call it rarely.
///
/// Threading: any thread (glibc locks each arena it trims).
public func releaseFreeHeapMemory() {
    _ = malloc_trim(0)
}
