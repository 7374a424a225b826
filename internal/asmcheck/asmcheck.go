package asmcheck

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
)

// A Finding is one instruction that needs VZEROUPPER (or its VEX form)
// before it.
type Finding struct {
	File string
	Line int
	Func string
	Text string // the instruction, macros expanded
	Why  string
}

func (f Finding) String() string {
	return fmt.Sprintf("%s:%d: %s: %s: %s", f.File, f.Line, f.Func, f.Why, f.Text)
}

type macro struct {
	params []string
	body   []string
}

var (
	defineRe = regexp.MustCompile(`^#define\s+(\w+)(\(([^)]*)\))?`)
	wideRe   = regexp.MustCompile(`\b[YZ]([0-9]|[12][0-9]|3[01])\b`)
	xmmRe    = regexp.MustCompile(`\bX([0-9]|[12][0-9]|3[01])\b`)
	callRe   = regexp.MustCompile(`^(\w+)\s*(\((.*)\))?\s*$`)
)

// Check returns the findings of one assembly source; file names them.
func Check(file, src string) []Finding {
	lines := strings.Split(src, "\n")
	macros := map[string]macro{}
	type stmt struct {
		line int
		text string
	}
	var stmts []stmt
	for i := 0; i < len(lines); i++ {
		l := lines[i]
		if m := defineRe.FindStringSubmatchIndex(l); m != nil {
			var body strings.Builder
			for strings.HasSuffix(strings.TrimRight(lines[i], " \t"), `\`) && i+1 < len(lines) {
				body.WriteString(strings.TrimSuffix(strings.TrimRight(lines[i], " \t"), `\`))
				body.WriteByte(' ')
				i++
			}
			body.WriteString(lines[i])
			text := body.String()
			name := l[m[2]:m[3]]
			var params []string
			if m[6] >= 0 {
				for _, p := range strings.Split(l[m[6]:m[7]], ",") {
					params = append(params, strings.TrimSpace(p))
				}
			}
			macros[name] = macro{params: params, body: splitStmts(text[m[1]:])}
			continue
		}
		s := stripComment(l)
		if s == "" || strings.HasPrefix(s, "#") {
			continue
		}
		for _, part := range splitStmts(s) {
			stmts = append(stmts, stmt{i + 1, part})
		}
	}

	var out []Finding
	fn, dirty := "", false
	for _, st := range stmts {
		if strings.HasPrefix(st.text, "TEXT") {
			f := strings.Fields(st.text)
			if len(f) > 1 {
				fn = strings.TrimSuffix(f[1], ",")
			}
			dirty = false
			continue
		}
		for _, ins := range expand(macros, st.text, 0) {
			if strings.HasSuffix(ins, ":") {
				continue
			}
			op := strings.Fields(ins)[0]
			switch {
			case op == "VZEROUPPER" || op == "VZEROALL":
				dirty = false
				continue
			case wideRe.MatchString(ins):
				dirty = true
			}
			if dirty && !strings.HasPrefix(op, "V") && xmmRe.MatchString(ins) {
				out = append(out, Finding{file, st.line, fn, ins, "legacy SSE instruction with the upper halves dirty (use its VEX form)"})
			}
			if dirty && op == "RET" {
				out = append(out, Finding{file, st.line, fn, ins, "returns with the upper halves dirty (VZEROUPPER first)"})
			}
		}
	}
	return out
}

// CheckDir checks every .s file of dir.
func CheckDir(dir string) ([]Finding, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.s"))
	if err != nil {
		return nil, err
	}
	var out []Finding
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("asmcheck: reading %s: %w", f, err)
		}
		out = append(out, Check(filepath.Base(f), string(b))...)
	}
	return out, nil
}

func stripComment(l string) string {
	if i := strings.Index(l, "//"); i >= 0 {
		l = l[:i]
	}
	return strings.TrimSpace(l)
}

func splitStmts(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ";") {
		if p = stripComment(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// expand returns the instructions of one statement, macros expanded with
// their arguments substituted.
func expand(macros map[string]macro, s string, depth int) []string {
	m := callRe.FindStringSubmatch(s)
	name := strings.Fields(s)[0]
	if m != nil {
		name = m[1]
	}
	mac, ok := macros[name]
	if !ok || depth > 8 {
		return []string{s}
	}
	var args []string
	if m != nil && m[2] != "" {
		for _, a := range strings.Split(m[3], ",") {
			args = append(args, strings.TrimSpace(a))
		}
	}
	var out []string
	for _, b := range mac.body {
		for i, p := range mac.params {
			if i < len(args) {
				b = regexp.MustCompile(`\b`+regexp.QuoteMeta(p)+`\b`).ReplaceAllString(b, args[i])
			}
		}
		out = append(out, expand(macros, b, depth+1)...)
	}
	return out
}
