package scale

import (
	"container/heap"
	"fmt"
	"strconv"
	"time"

	"github.com/klring/klring/allreduce"
	"github.com/klring/klring/netem"
)

// VirtualAllReduce is the time a ring all-reduce of floats float32s over n
// ranks takes on links of profile p, computed without sleeping: every rank's
// schedule (allreduce.Ring over allreduce.Plan, the code the Reducer runs)
// is driven through netem's link model (netem.Shaper) in virtual time. A
// rank forwards a part the instant it arrives (no compute); each message
// counts at its largest envelope, allreduce.EnvelopeOverhead, plus the
// model's netem.FrameOverhead. The result is deterministic: jitter comes
// from seed, and a lossy profile is refused (a lost part would end the
// all-reduce by its deadline, which is not a time of the model).
func VirtualAllReduce(n, floats int, opts allreduce.Options, p netem.LinkProfile, seed uint64) (time.Duration, error) {
	if n < 1 || floats < 0 {
		return 0, fmt.Errorf("scale: virtual all-reduce of %d floats over %d ranks", floats, n)
	}
	if err := opts.Validate(); err != nil {
		return 0, err
	}
	if err := p.Validate(); err != nil {
		return 0, err
	}
	if p.Loss > 0 {
		return 0, fmt.Errorf("scale: virtual all-reduce over %s: a lossy link (loss %g) has no completion time", p.Name, p.Loss)
	}
	if n == 1 {
		return 0, nil
	}
	plan := allreduce.NewPlan(floats, n, opts.PartFloats())
	shaper := netem.NewShaper(p, seed)
	names := make([]string, n)
	rings := make([]*allreduce.Ring, n)
	for r := range n {
		names[r] = "r" + strconv.Itoa(r)
		rings[r] = allreduce.NewRing(r, plan)
	}
	t0 := time.Unix(0, 0)
	var q arrivals
	send := func(from int, id allreduce.PartID, now time.Time) {
		_, m := plan.Part(id.Segment, id.Part)
		to := (from + 1) % n
		at, _ := shaper.Schedule(names[from], names[to], 4*m+allreduce.EnvelopeOverhead, now)
		q.pushed++
		heap.Push(&q, arrival{at: at, seq: q.pushed, to: to, id: id})
	}
	for r := range n {
		for _, id := range rings[r].Start(nil) {
			send(r, id, t0)
		}
	}
	end := t0
	for q.Len() > 0 {
		a := heap.Pop(&q).(arrival)
		st, err := rings[a.to].Deliver(a.id)
		if err != nil {
			return 0, fmt.Errorf("scale: virtual all-reduce: %w", err)
		}
		if a.at.After(end) {
			end = a.at
		}
		if st.Send {
			send(a.to, st.Next, a.at)
		}
	}
	for r, ring := range rings {
		if !ring.Done() {
			miss, _ := ring.Missing()
			return 0, fmt.Errorf("scale: virtual all-reduce: rank %d never received %v", r, miss)
		}
	}
	return end.Sub(t0), nil
}

// arrival is a part arriving at rank to at time at; seq orders arrivals of
// one instant by the order they were sent.
type arrival struct {
	at  time.Time
	seq int
	to  int
	id  allreduce.PartID
}

// arrivals is a min-heap of arrivals by (at, seq).
type arrivals struct {
	a      []arrival
	pushed int
}

func (q *arrivals) Len() int { return len(q.a) }
func (q *arrivals) Less(i, j int) bool {
	return q.a[i].at.Before(q.a[j].at) || q.a[i].at.Equal(q.a[j].at) && q.a[i].seq < q.a[j].seq
}
func (q *arrivals) Swap(i, j int) { q.a[i], q.a[j] = q.a[j], q.a[i] }
func (q *arrivals) Push(x any)    { q.a = append(q.a, x.(arrival)) }
func (q *arrivals) Pop() any {
	x := q.a[len(q.a)-1]
	q.a = q.a[:len(q.a)-1]
	return x
}
