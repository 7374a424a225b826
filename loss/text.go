package loss

// MarshalText and UnmarshalText make a Direction, a Reduction and a Tail
// configuration values (flags, environment, YAML) parsed once, by their
// Parse functions.

func (d Direction) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

func (d *Direction) UnmarshalText(b []byte) error {
	v, err := ParseDirection(string(b))
	if err == nil {
		*d = v
	}
	return err
}

func (t Tail) MarshalText() ([]byte, error) { return []byte(t.String()), nil }

func (t *Tail) UnmarshalText(b []byte) error {
	v, err := ParseTail(string(b))
	if err == nil {
		*t = v
	}
	return err
}

func (r Reduction) MarshalText() ([]byte, error) { return []byte(r.String()), nil }

func (r *Reduction) UnmarshalText(b []byte) error {
	v, err := ParseReduction(string(b))
	if err == nil {
		*r = v
	}
	return err
}
