package images

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"strings"
)

// Stage is what a Dockerfile stage sets, with what it inherits from the
// stage it is built FROM folded in: enough to compare with an image.
type Stage struct {
	Name       string
	From       string
	Copies     []Copy // every COPY of this stage and its ancestors, in order
	User       string
	WorkDir    string
	Env        map[string]string
	Labels     map[string]string // values as written (may name ARGs)
	Entrypoint []string
}

// Copy is one COPY: its sources (relative to the context, or in the
// --from stage) and its destination.
type Copy struct {
	From, Chown string
	Sources     []string
	Dest        string
}

// ParseDockerfile reads the instructions this project's Dockerfile uses
// (FROM, COPY, USER, WORKDIR, ENV, LABEL, ENTRYPOINT; others are skipped)
// and returns its stages by name.
func ParseDockerfile(r io.Reader) (map[string]*Stage, error) {
	stages := map[string]*Stage{}
	var cur *Stage
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	var line string
	for sc.Scan() {
		text := strings.TrimSpace(sc.Text())
		if line == "" && (text == "" || strings.HasPrefix(text, "#")) {
			continue
		}
		if strings.HasSuffix(text, "\\") {
			line += strings.TrimSuffix(text, "\\") + " "
			continue
		}
		line += text
		instr, rest, _ := strings.Cut(line, " ")
		line = ""
		rest = strings.TrimSpace(rest)
		switch strings.ToUpper(instr) {
		case "FROM":
			f := strings.Fields(rest)
			s := &Stage{From: f[0], Env: map[string]string{}, Labels: map[string]string{}}
			if len(f) == 3 && strings.EqualFold(f[1], "AS") {
				s.Name = f[2]
			}
			if parent, ok := stages[s.From]; ok {
				s.Copies = append(s.Copies, parent.Copies...)
				s.User, s.WorkDir, s.Entrypoint = parent.User, parent.WorkDir, parent.Entrypoint
				for k, v := range parent.Env {
					s.Env[k] = v
				}
				for k, v := range parent.Labels {
					s.Labels[k] = v
				}
			}
			cur = s
			if s.Name != "" {
				stages[s.Name] = s
			}
		case "COPY":
			if cur == nil {
				return nil, fmt.Errorf("dockerfile: COPY before FROM")
			}
			c := Copy{}
			var args []string
			for _, f := range strings.Fields(rest) {
				switch {
				case strings.HasPrefix(f, "--from="):
					c.From = strings.TrimPrefix(f, "--from=")
				case strings.HasPrefix(f, "--chown="):
					c.Chown = strings.TrimPrefix(f, "--chown=")
				default:
					args = append(args, f)
				}
			}
			if len(args) < 2 {
				return nil, fmt.Errorf("dockerfile: COPY %s: no destination", rest)
			}
			c.Sources, c.Dest = args[:len(args)-1], args[len(args)-1]
			cur.Copies = append(cur.Copies, c)
		case "USER":
			cur.User = rest
		case "WORKDIR":
			cur.WorkDir = rest
		case "ENV":
			for k, v := range keyValues(rest) {
				cur.Env[k] = v
			}
		case "LABEL":
			for k, v := range keyValues(rest) {
				cur.Labels[k] = v
			}
		case "ENTRYPOINT":
			if err := json.Unmarshal([]byte(rest), &cur.Entrypoint); err != nil {
				return nil, fmt.Errorf("dockerfile: ENTRYPOINT must be the exec (JSON) form, a shell-less image has no /bin/sh: %w", err)
			}
		}
	}
	return stages, sc.Err()
}

// keyValues splits `k=v k2="v 2"` pairs.
func keyValues(s string) map[string]string {
	out := map[string]string{}
	for s = strings.TrimSpace(s); s != ""; s = strings.TrimSpace(s) {
		k, rest, ok := strings.Cut(s, "=")
		if !ok {
			break
		}
		var v string
		if strings.HasPrefix(rest, `"`) {
			end := strings.Index(rest[1:], `"`)
			if end < 0 {
				end = len(rest) - 1
			}
			v, s = rest[1:end+1], rest[min(end+2, len(rest)):]
		} else {
			v, s, _ = strings.Cut(rest, " ")
		}
		out[k] = v
	}
	return out
}
