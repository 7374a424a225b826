package cluster

import (
	"fmt"
	"regexp"
	"strings"
)

func isAuthError(err error) bool {
	return err != nil && strings.Contains(strings.ToLower(err.Error()), "authorization")
}

var nameRE = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// validName checks a worker id: it becomes a NATS subject token.
func validName(id string) error {
	if !nameRE.MatchString(id) {
		return fmt.Errorf("%q must match [A-Za-z0-9_-]{1,64} (it becomes a NATS subject token)", id)
	}
	return nil
}
