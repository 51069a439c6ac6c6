package ports

import (
	"net"
	"strconv"
	"testing"
)

func TestFreeNAreDistinctBindableAndOutsideTheEphemeralRange(t *testing.T) {
	lo, hi := window()
	ps, err := FreeN(50)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[int]bool{}
	for _, p := range ps {
		if seen[p] {
			t.Fatalf("port %d handed out twice", p)
		}
		seen[p] = true
		if p < lo || p >= hi {
			t.Fatalf("port %d outside [%d, %d)", p, lo, hi)
		}
	}
	// A port in use is never handed out.
	l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(ps[0]))
	if err != nil {
		t.Fatalf("handed-out port %d is not bindable: %v", ps[0], err)
	}
	defer l.Close()
	more, err := FreeN(50)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range more {
		if seen[p] {
			t.Fatalf("port %d handed out again", p)
		}
	}
}
