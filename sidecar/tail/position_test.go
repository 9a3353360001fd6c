package tail

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/sidelog/sidelog/sidecar/fingerprint"
)

// A Position is plain data: it survives a round trip through JSON whole, which is what makes
// it all a parked file needs to keep.
func TestPositionRoundTrip(t *testing.T) {
	p := Position{Path: "/var/log/app.log", Identity: fingerprint.Identity{ID: fingerprint.ID{Dev: 1, Ino: 2},
		Fingerprint: fingerprint.Of([]byte("first bytes\n"))}, Offset: 40, Acked: 30, Size: 47,
		ModTime: time.Unix(1_700_000_000, 5).UTC()}
	b, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	var got Position
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	if got != p {
		t.Errorf("round trip: %+v, want %+v (%s)", got, p, b)
	}
	if e := p.Entry("app"); e.Offset != p.Acked || e.Identity != p.Identity || e.Container != "app" {
		t.Errorf("Entry = %+v: a checkpoint resumes at the acknowledged offset", e)
	}
}
