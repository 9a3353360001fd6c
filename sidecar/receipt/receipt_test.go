package receipt

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func container(i int, name string) Container {
	return Container{Name: name, Counts: Counts{
		Lines: 1_000_000_000 + int64(i), Bytes: 1 << 40, Files: 1000, PendingBytes: 1 << 30, PendingFiles: 3,
		Dropped: 12, DroppedBytes: 1 << 20,
		DroppedBy: map[string]int64{"line_too_long": 5, "record_too_long": 4, "deleted_before_read": 2, "truncated_before_read": 1},
	}}
}

func TestEncodeSmallIsWhole(t *testing.T) {
	r := Receipt{Agent: "v1.2.3", Drained: true, Containers: []Container{
		{Name: "app", Counts: Counts{Lines: 120, Bytes: 5400, Files: 2, Dropped: 1, DroppedBytes: 976, DroppedBy: map[string]int64{"line_too_long": 1}}},
	}}
	b, err := Encode(r)
	if err != nil {
		t.Fatal(err)
	}
	const want = `{"v":1,"agent":"v1.2.3","drained":true,"containers":[{"name":"app","lines":120,"bytes":5400,"files":2,"pendingBytes":0,"dropped":1,"droppedBytes":976,"droppedBy":{"line_too_long":1}}]}`
	if string(b) != want {
		t.Errorf("got  %s\nwant %s", b, want)
	}
	got, err := Parse(string(b))
	if err != nil {
		t.Fatal(err)
	}
	r.Schema = SchemaVersion
	if diff := cmp.Diff(r, got); diff != "" {
		t.Errorf("round trip (-want +got):\n%s", diff)
	}
}

// TestEncodeStaysWithinTheKubeletLimit: any number of containers, with the longest names a
// container may have and the largest counts, gives valid JSON of at most MaxBytes, degraded in
// the documented order, keeping the totals.
func TestEncodeStaysWithinTheKubeletLimit(t *testing.T) {
	for _, n := range []int{0, 1, 14, 30, 100, 1000} {
		t.Run(fmt.Sprint(n), func(t *testing.T) { checkWithin(t, n, MaxBytes) })
	}
}

// TestEncodeStaysWithinThePodLimit: in a pod of many containers the kubelet keeps less of each
// message (12 KiB shared); the receipt of n app containers in a pod of n+3 fits that share.
func TestEncodeStaysWithinThePodLimit(t *testing.T) {
	for _, n := range []int{1, 5, 12, 30, 100, 300} {
		t.Run(fmt.Sprint(n), func(t *testing.T) { checkWithin(t, n, Limit(n+3)) })
	}
}

func TestLimit(t *testing.T) {
	for n, want := range map[int]int{0: 4096, 1: 4096, 3: 4096, 4: 3072, 12: 1024, 103: 119} {
		if got := Limit(n); got != want {
			t.Errorf("Limit(%d) = %d, want %d", n, got, want)
		}
	}
}

func checkWithin(t *testing.T, n, limit int) {
	{
		{
			r := Receipt{Agent: strings.Repeat("v", 200), Error: strings.Repeat("é", 1000)}
			var total Counts
			for i := range n {
				name := fmt.Sprintf("%03d-%s", i, strings.Repeat("c", 59)) // 63 bytes, the longest a name may be
				c := container(i, name)
				r.Containers = append(r.Containers, c)
				total.Add(c.Counts)
			}
			b, err := EncodeWithin(r, limit)
			if err != nil {
				t.Fatal(err)
			}
			if len(b) > limit {
				t.Fatalf("%d bytes, more than %d", len(b), limit)
			}
			got, err := Parse(string(b))
			if err != nil {
				t.Fatalf("%v: %s", err, b)
			}
			again, _ := EncodeWithin(r, limit)
			if string(again) != string(b) {
				t.Error("two encodings of the same receipt differ")
			}
			var sum Counts
			for i, c := range got.Containers {
				if c.Name != r.Containers[i].Name {
					t.Errorf("container %d is %q, want %q: the first ones are kept, in order", i, c.Name, r.Containers[i].Name)
				}
				sum.Add(c.Counts)
			}
			if got.Others != nil {
				sum.Add(got.Others.Counts)
				if len(got.Containers)+got.Others.Containers != n {
					t.Errorf("%d listed + %d summed, want %d", len(got.Containers), got.Others.Containers, n)
				}
			}
			sum.DroppedBy, total.DroppedBy = nil, nil
			if got.Degraded != DegradedAll && !cmp.Equal(sum, total) {
				t.Errorf("totals changed: got %+v, want %+v", sum, total)
			}
			switch {
			case limit < MaxBytes:
			case n <= 1 && got.Degraded != "":
				t.Errorf("degraded %q, want whole", got.Degraded)
			case n == 14 && got.Degraded != DegradedReasons:
				t.Errorf("degraded %q, want %q", got.Degraded, DegradedReasons)
			case n >= 30 && (got.Degraded != DegradedContainers || got.Others == nil || len(got.Containers) == 0):
				t.Errorf("degraded %q with %d containers listed, want %q with some listed and the rest summed", got.Degraded, len(got.Containers), DegradedContainers)
			}
			if len(got.Error) > min(maxErrorBytes, limit/4) || !strings.HasPrefix(r.Error, got.Error) || (got.Error == "" && got.Others == nil && got.Degraded != DegradedAll) {
				t.Errorf("error cut to %d bytes, want a prefix of at most %d", len(got.Error), maxErrorBytes)
			}
			t.Logf("%d containers within %d: %d bytes, degraded %q, %d listed", n, limit, len(b), got.Degraded, len(got.Containers))
		}
	}
}

func TestParse(t *testing.T) {
	for _, msg := range []string{"", "panic: runtime error\ngoroutine 1", `{"name":"x"}`, `[1]`} {
		if _, err := Parse(msg); !errors.Is(err, ErrNotReceipt) {
			t.Errorf("Parse(%q) = %v, want ErrNotReceipt", msg, err)
		}
	}
	if _, err := Parse(`{"v":99}`); err == nil || errors.Is(err, ErrNotReceipt) {
		t.Errorf("a newer version: %v, want an error that says so", err)
	}
	b, _ := json.Marshal(Receipt{Schema: 1, Containers: []Container{}})
	if _, err := Parse(string(b)); err != nil {
		t.Error(err)
	}
}
