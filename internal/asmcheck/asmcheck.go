package asmcheck

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
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

// A Report is what Check found in one source: the findings, and how many
// TEXT blocks it read (a check that read none checked nothing).
type Report struct {
	Findings []Finding
	Funcs    int
}

type macro struct {
	params []string
	body   []string
}

var (
	defineRe = regexp.MustCompile(`^\s*#\s*define\s+(\w+)(\(([^)]*)\))?`)
	undefRe  = regexp.MustCompile(`^\s*#\s*undef\s+(\w+)`)
	wideRe   = regexp.MustCompile(`\b[YZ]([0-9]|[12][0-9]|3[01])\b`)
	xmmRe    = regexp.MustCompile(`\bX([0-9]|[12][0-9]|3[01])\b`)
	callRe   = regexp.MustCompile(`^(\w+)\s*(\((.*)\))?\s*$`)
	labelRe  = regexp.MustCompile(`^(\w+):\s*(.*)$`)
	blockRe  = regexp.MustCompile(`(?s)/\*.*?\*/`)
)

// instr is one instruction of a TEXT block, macros expanded, or a label.
type instr struct {
	line  int
	text  string // "" for a label
	label string
}

// Check returns the findings of one assembly source; file names them.
// Macros are expanded where they are used (with their arguments, the
// definition in force at that line), and each TEXT block is followed along
// its jumps: an instruction is reported when the upper halves may be dirty
// on some path to it.
func Check(file, src string) Report {
	src = blockRe.ReplaceAllStringFunc(src, func(c string) string {
		return strings.Repeat("\n", strings.Count(c, "\n")) // keep line numbers
	})
	lines := strings.Split(src, "\n")
	macros := map[string]macro{}
	var rep Report
	var fn string
	var body []instr
	flush := func() {
		if fn != "" {
			rep.Findings = append(rep.Findings, checkFunc(file, fn, body)...)
			rep.Funcs++
		}
		body = nil
	}
	for i := 0; i < len(lines); i++ {
		l := lines[i]
		if m := undefRe.FindStringSubmatch(l); m != nil {
			delete(macros, m[1])
			continue
		}
		if m := defineRe.FindStringSubmatchIndex(l); m != nil {
			var text strings.Builder
			for {
				cur := strings.TrimRight(lines[i], " \t")
				cont := strings.HasSuffix(cur, `\`) && !strings.Contains(cur, "//")
				text.WriteString(strings.TrimSuffix(cur, `\`))
				text.WriteByte(' ')
				if !cont || i+1 >= len(lines) {
					break
				}
				i++
			}
			t := text.String()
			var params []string
			if m[6] >= 0 {
				for _, p := range strings.Split(l[m[6]:m[7]], ",") {
					params = append(params, strings.TrimSpace(p))
				}
			}
			macros[l[m[2]:m[3]]] = macro{params: params, body: splitStmts(t[m[1]:])}
			continue
		}
		s := stripComment(l)
		if s == "" || strings.HasPrefix(s, "#") {
			continue
		}
		if strings.HasPrefix(s, "TEXT") {
			flush()
			fn = ""
			if f := strings.Fields(s); len(f) > 1 {
				fn = strings.TrimSuffix(f[1], ",")
			}
			continue
		}
		if fn == "" {
			continue // DATA, GLOBL
		}
		for _, part := range splitStmts(s) {
			for {
				m := labelRe.FindStringSubmatch(part)
				if m == nil {
					break
				}
				body = append(body, instr{line: i + 1, label: m[1]})
				part = strings.TrimSpace(m[2])
			}
			if part == "" {
				continue
			}
			for _, ins := range expand(macros, part, 0) {
				body = append(body, instr{line: i + 1, text: ins})
			}
		}
	}
	flush()
	return rep
}

// checkFunc follows one TEXT block: dirty[i] says whether the upper halves
// may be dirty when instruction i starts, on some path from the entry
// (where they are clean).
func checkFunc(file, fn string, body []instr) []Finding {
	labels := map[string]int{}
	for i, in := range body {
		if in.label != "" {
			labels[in.label] = i
		}
	}
	n := len(body)
	reached, dirty := make([]bool, n+1), make([]bool, n+1)
	var work []int
	visit := func(i int, d bool) {
		if i > n || (reached[i] && (dirty[i] || !d)) {
			return
		}
		reached[i] = true
		dirty[i] = dirty[i] || d
		work = append(work, i)
	}
	visit(0, false)
	for len(work) > 0 {
		i := work[len(work)-1]
		work = work[:len(work)-1]
		if i == n {
			continue
		}
		in, d := body[i], dirty[i]
		if in.label != "" {
			visit(i+1, d)
			continue
		}
		f := strings.Fields(in.text)
		op := f[0]
		switch {
		case op == "VZEROUPPER" || op == "VZEROALL":
			d = false
		case wideRe.MatchString(in.text):
			d = true
		}
		if op == "RET" {
			continue
		}
		if strings.HasPrefix(op, "J") && len(f) > 1 {
			if t, ok := labels[strings.TrimSuffix(f[len(f)-1], ",")]; ok {
				visit(t, d)
			}
			if op == "JMP" {
				continue
			}
		}
		visit(i+1, d)
	}
	var out []Finding
	for i, in := range body {
		if !reached[i] || !dirty[i] || in.label != "" {
			continue
		}
		op := strings.Fields(in.text)[0]
		if op == "VZEROUPPER" || op == "VZEROALL" {
			continue
		}
		if op == "RET" {
			out = append(out, Finding{file, in.line, fn, in.text, "returns with the upper halves dirty (VZEROUPPER first)"})
			continue
		}
		if !strings.HasPrefix(op, "V") && xmmRe.MatchString(in.text) {
			out = append(out, Finding{file, in.line, fn, in.text, "legacy SSE instruction with the upper halves dirty (use its VEX form)"})
		}
	}
	return out
}

// CheckDir checks every .s file of dir.
func CheckDir(dir string) (Report, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.s"))
	if err != nil {
		return Report{}, err
	}
	var rep Report
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return Report{}, fmt.Errorf("asmcheck: reading %s: %w", f, err)
		}
		r := Check(filepath.Base(f), string(b))
		rep.Findings = append(rep.Findings, r.Findings...)
		rep.Funcs += r.Funcs
	}
	return rep, nil
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

// expand returns the instructions of one statement: macros expanded with
// their arguments substituted, and macro names used as operands (register
// aliases) replaced by their bodies.
func expand(macros map[string]macro, s string, depth int) []string {
	if depth > 8 {
		return []string{s}
	}
	m := callRe.FindStringSubmatch(s)
	name := strings.Fields(s)[0]
	if m != nil {
		name = m[1]
	}
	mac, ok := macros[name]
	if !ok {
		// Operands that are object-like macros (register aliases).
		return []string{regexp.MustCompile(`\b\w+\b`).ReplaceAllStringFunc(s, func(w string) string {
			if a, ok := macros[w]; ok && len(a.params) == 0 && len(a.body) == 1 && w != name {
				return a.body[0]
			}
			return w
		})}
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

// TestDir checks every .s file of dir as a test: each finding is an error,
// and so is a directory in which no TEXT block was read.
func TestDir(t testing.TB, dir string) {
	t.Helper()
	rep, err := CheckDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Funcs == 0 {
		t.Fatalf("asmcheck: no TEXT block read in %s: the check checked nothing", dir)
	}
	for _, f := range rep.Findings {
		t.Error(f)
	}
}
