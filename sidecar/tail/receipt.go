package tail

// Drops are an input's unavoidable losses of one reason (see sidelog_dropped_total).
type Drops struct {
	// Count is how many lines or records were cut, or files lost; Bytes how many bytes were lost.
	Count, Bytes uint64
}

// Removed returns the number of rotated files the input removed once delivered (Options.Cleanup)
// and their bytes, as sidelog_files_removed_total and sidelog_removed_bytes_total; safe from any
// goroutine.
func (t *Tailer) Removed() (files, bytes uint64) {
	if t.m.removed == nil {
		return 0, 0
	}
	return t.m.removed.Value(), t.m.removedBytes.Value()
}

// Dropped returns the input's losses so far by reason, reasons with none left out. It reads the
// same counters as the sidelog_dropped_total and sidelog_dropped_bytes_total metrics; safe from
// any goroutine.
func (t *Tailer) Dropped() map[string]Drops {
	out := map[string]Drops{}
	for _, r := range reasons {
		if n := t.m.dropped[r].Value(); n > 0 {
			out[r] = Drops{Count: n, Bytes: t.m.droppedBytes[r].Value()}
		}
	}
	return out
}
