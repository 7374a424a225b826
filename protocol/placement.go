package protocol

import "slices"

// Place orders the ring of an epoch from its members, given the server each
// is on (the name of the NATS server it reported in its hello and
// heartbeats; "" or absent: unknown). members comes in the order the
// coordinator would use without placement: the members of the current epoch
// in their order, then newcomers by name.
//
// Through a cluster of NATS servers, a ring message from a rank to the next
// crosses the route between their servers, or none when they share one. The
// placed ring keeps the members of each server together, so consecutive
// ranks share a server wherever they can and the ring goes through every
// server once: each route between two servers carries one ring link per
// direction at most, and no route is shared by two links. A member whose
// server is unknown is a server of its own.
//
// Place is stable: when members already keep each server together around
// the ring (counting the link from the last member back to the first), it
// returns them in their order, so that placement never churns an epoch
// whose ring is already placed. Otherwise the servers follow in the order
// they first appear in members, and the members of each server keep their
// order. Place is deterministic and does not change its arguments.
func Place(members []string, server map[string]string) []string {
	out := slices.Clone(members)
	n := len(members)
	if n <= 2 {
		return out
	}
	key := func(m string) string {
		if s := server[m]; s != "" {
			return s
		}
		return "\x00" + m // unknown: a server of its own
	}
	var order []string // servers by first appearance
	groups := map[string][]string{}
	for _, m := range members {
		k := key(m)
		if _, ok := groups[k]; !ok {
			order = append(order, k)
		}
		groups[k] = append(groups[k], m)
	}
	if len(order) == 1 || boundaries(members, key) == len(order) {
		return out
	}
	out = out[:0]
	for _, k := range order {
		out = append(out, groups[k]...)
	}
	return out
}

// boundaries counts the links of the ring members (the last member links
// back to the first) whose two ends are on different servers. A ring that
// keeps every server's members together has one per server (with more than
// one server), the fewest possible.
func boundaries(members []string, key func(string) string) int {
	b := 0
	for i, m := range members {
		if key(m) != key(members[(i+1)%len(members)]) {
			b++
		}
	}
	return b
}
