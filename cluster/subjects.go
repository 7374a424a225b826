package cluster

// subjects names every NATS subject of one job. All live under klring.<job>.
type subjects struct {
	hello, plan, done, seg, hb, snap string
	prefix                           string
}

func newSubjects(job string) subjects {
	p := "klring." + job + "."
	return subjects{
		prefix: p,
		hello:  p + "hello",
		plan:   p + "plan",
		done:   p + "done",
		seg:    p + "seg",
		hb:     p + "hb",
		snap:   p + "snap",
	}
}
