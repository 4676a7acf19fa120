package journal

import "sort"

// Abandon lets go of r without ending it, as the death of its process would: on SQLite
// its file lock is released, on PostgreSQL its connection (and so its liveness lock)
// is closed. What it queued is committed first. Its claims stay until a live process
// settles the run. For tests.
func Abandon(r Run) {
	switch r := r.(type) {
	case *sqliteRun:
		r.w.close()
		r.unlock()
	case *pgRun:
		r.w.close()
		r.abandon()
	}
}

// sortItems puts claimed items in list order (a claim returns them in no order).
func sortItems(items []Item) {
	sort.Slice(items, func(i, j int) bool {
		if items[i].Line != items[j].Line {
			return items[i].Line < items[j].Line
		}
		return items[i].Key < items[j].Key
	})
}
