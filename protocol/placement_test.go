package protocol

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

// servers parses "w0@a w1@b w2" into members and their servers.
func servers(spec string) ([]string, map[string]string) {
	var members []string
	srv := map[string]string{}
	for _, f := range strings.Fields(spec) {
		name, s, _ := strings.Cut(f, "@")
		members = append(members, name)
		if s != "" {
			srv[name] = s
		}
	}
	return members, srv
}

func TestPlace(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"", ""},
		{"w0@a", "w0"},
		{"w0@a w1@b", "w0 w1"},
		{"w0@a w1@a w2@a", "w0 w1 w2"},
		// Interleaved servers are grouped, servers in order of first
		// appearance, members of a server in their order.
		{"w0@a w1@b w2@a w3@b", "w0 w2 w1 w3"},
		{"w3@b w0@a w1@b w2@a", "w3 w1 w0 w2"},
		{"w0@a w1@b w2@c w3@a w4@b w5@c", "w0 w3 w1 w4 w2 w5"},
		// Already placed, counting the link back to the first: unchanged.
		{"w0@a w1@a w2@b w3@b", "w0 w1 w2 w3"},
		{"w2@a w1@b w3@b w0@a", "w2 w1 w3 w0"},
		{"w3@b w0@a w2@a w1@b", "w3 w0 w2 w1"},
		{"w0@a w1@b w2@c", "w0 w1 w2"},
		// A newcomer on the server of the first member, at the end: the
		// ring is still placed.
		{"w0@a w1@b w2@b w3@a", "w0 w1 w2 w3"},
		// Unknown servers are servers of their own.
		{"w0@a w1 w2@a w3", "w0 w2 w1 w3"},
		{"w0 w1 w2 w3", "w0 w1 w2 w3"},
	} {
		members, srv := servers(tc.in)
		before := slices.Clone(members)
		got := strings.Join(Place(members, srv), " ")
		if got != tc.want {
			t.Errorf("Place(%s) = %s; want %s", tc.in, got, tc.want)
		}
		if !slices.Equal(members, before) {
			t.Errorf("Place(%s) changed its argument to %v", tc.in, members)
		}
	}
}

// TestPlaceProperties checks on random rings: the result is a permutation
// of the members; every server's members are together around the ring (so
// each route carries one ring link per direction at most, and as few routes
// as possible are used); each server's members keep their relative order;
// placing a placed ring changes nothing; and the same input gives the same
// output.
func TestPlaceProperties(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for trial := range 2000 {
		n := 1 + rng.IntN(12)
		k := 1 + rng.IntN(5)
		var members []string
		srv := map[string]string{}
		for i := range n {
			m := fmt.Sprintf("w%d", i)
			members = append(members, m)
			if s := rng.IntN(k + 1); s < k {
				srv[m] = fmt.Sprintf("s%d", s)
			}
		}
		rng.Shuffle(n, func(i, j int) { members[i], members[j] = members[j], members[i] })
		got := Place(members, srv)
		if a, b := slices.Sorted(slices.Values(got)), slices.Sorted(slices.Values(members)); !slices.Equal(a, b) {
			t.Fatalf("trial %d: Place(%v) = %v: not a permutation", trial, members, got)
		}
		key := func(m string) string {
			if s := srv[m]; s != "" {
				return s
			}
			return "?" + m
		}
		distinct := map[string]bool{}
		for _, m := range members {
			distinct[key(m)] = true
		}
		want := len(distinct)
		if want == 1 {
			want = 0
		}
		if n > 2 && boundaries(got, key) != want {
			t.Fatalf("trial %d: Place(%v @ %v) = %v crosses %d server boundaries; want %d", trial, members, srv, got, boundaries(got, key), want)
		}
		for s := range distinct {
			var in, out []string
			for _, m := range members {
				if key(m) == s {
					in = append(in, m)
				}
			}
			for _, m := range got {
				if key(m) == s {
					out = append(out, m)
				}
			}
			if !slices.Equal(in, out) {
				t.Fatalf("trial %d: Place(%v) = %v reorders server %s's members %v as %v", trial, members, got, s, in, out)
			}
		}
		if again := Place(got, srv); !slices.Equal(again, got) {
			t.Fatalf("trial %d: Place(Place(%v)) = %v; want %v unchanged", trial, members, again, got)
		}
		if again := Place(members, srv); !slices.Equal(again, got) {
			t.Fatalf("trial %d: Place(%v) = %v, then %v", trial, members, got, again)
		}
	}
}

func ExamplePlace() {
	// Four workers on two servers, in name order: the ring would cross a
	// route on every link. Placed, it crosses a and b once each way.
	members := []string{"w0", "w1", "w2", "w3"}
	server := map[string]string{"w0": "a", "w1": "b", "w2": "a", "w3": "b"}
	fmt.Println(Place(members, server))
	// Output: [w0 w2 w1 w3]
}
