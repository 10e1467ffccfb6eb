// Package hugepage asks Linux to back the Go heap with transparent huge
// pages (THP).
//
// The Go runtime never requests huge pages for its heap: it gets them only
// when the kernel's THP mode is "always". In "madvise" mode, the default of
// many distributions, a store's heap (the kv memtable's 128 MiB skiplist
// arena, the entry cache, buffers) sits on 4 KiB pages, and a store spends
// a large share of its CPU on TLB misses, in a VM doubly so: the memtable's
// skiplist search, which reads scattered nodes of the arena, was 13% of a
// store's CPU. Keep advises the heap's mappings with MADV_HUGEPAGE, as the
// runtime would in "always" mode, and again as the heap grows.
//
// It does nothing when THP is "always" (already done), "never" or missing,
// off Linux, and when GODEBUG has disablethp=1 (the runtime's own switch to
// keep huge pages off the heap).
package hugepage

import (
	"context"
	"log/slog"
	"time"
)

// Keep advises the heap now and every interval until ctx is done. It
// reports whether it will: false if THP is not in "madvise" mode, GODEBUG
// disables it, or the first attempt fails (logged).
func Keep(ctx context.Context, interval time.Duration, logger *slog.Logger) bool {
	if m := mode(); m != "madvise" {
		logger.Info("not advising huge pages for the heap", "thp", m)
		return false
	}
	if disabledByGODEBUG() {
		logger.Info("not advising huge pages for the heap: GODEBUG disablethp=1")
		return false
	}
	var a advisor
	if err := a.advise(); err != nil {
		logger.Warn("cannot advise huge pages for the heap", "err", err)
		return false
	}
	logger.Info("advising huge pages for the heap", "thp", "madvise", "ranges", len(a.advised))
	go func() {
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				if err := a.advise(); err != nil {
					logger.Warn("cannot advise huge pages for the heap", "err", err)
					return
				}
			}
		}
	}()
	return true
}
