package cluster

import (
	"fmt"
	"regexp"
)

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

var nameRE = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// validName checks a worker id: it becomes a NATS subject token.
func validName(id string) error {
	if !nameRE.MatchString(id) {
		return fmt.Errorf("%q must match [A-Za-z0-9_-]{1,64} (it becomes a NATS subject token)", id)
	}
	return nil
}
