package templates

import (
	htmltemplate "html/template"
	"strconv"
	"strings"
	texttemplate "text/template"
	"text/template/parse"
)

// ref is one data key a template reads from the recipient's map: `.first_name`,
// `$.first_name` or `index . "First Name"`.
type ref struct {
	key  string
	file string
	line int
}

// textRefs lists the top-level data keys read by t and the templates it defines.
func textRefs(t *texttemplate.Template) []ref {
	var out []ref
	for _, tt := range t.Templates() {
		if tt.Tree != nil {
			out = walkTree(tt.Tree, out)
		}
	}
	return out
}

// htmlRefs is textRefs for an html/template (walked before any execution rewrites it).
func htmlRefs(t *htmltemplate.Template) []ref {
	var out []ref
	for _, tt := range t.Templates() {
		if tt.Tree != nil {
			out = walkTree(tt.Tree, out)
		}
	}
	return out
}

func walkTree(tree *parse.Tree, out []ref) []ref {
	w := &walker{tree: tree, out: out}
	if tree.Root != nil {
		w.list(tree.Root, true)
	}
	return w.out
}

// walker collects references. top says whether dot is still the recipient's map (it is
// not inside the body of range and with).
type walker struct {
	tree *parse.Tree
	out  []ref
}

func (w *walker) add(n parse.Node, key string) {
	loc, _ := w.tree.ErrorContext(n)
	// loc is "name:line:col".
	r := ref{key: key, file: w.tree.ParseName}
	if i := strings.LastIndexByte(loc, ':'); i > 0 {
		loc = loc[:i]
		if j := strings.LastIndexByte(loc, ':'); j >= 0 {
			r.line, _ = strconv.Atoi(loc[j+1:])
		}
	}
	w.out = append(w.out, r)
}

func (w *walker) list(l *parse.ListNode, top bool) {
	if l == nil {
		return
	}
	for _, n := range l.Nodes {
		w.node(n, top)
	}
}

func (w *walker) node(n parse.Node, top bool) {
	switch n := n.(type) {
	case *parse.ActionNode:
		w.pipe(n.Pipe, top)
	case *parse.IfNode:
		w.pipe(n.Pipe, top)
		w.list(n.List, top)
		w.list(n.ElseList, top)
	case *parse.RangeNode:
		w.pipe(n.Pipe, top)
		w.list(n.List, false)
		w.list(n.ElseList, top)
	case *parse.WithNode:
		w.pipe(n.Pipe, top)
		w.list(n.List, false)
		w.list(n.ElseList, top)
	case *parse.TemplateNode:
		w.pipe(n.Pipe, top)
	case *parse.ListNode:
		w.list(n, top)
	}
}

func (w *walker) pipe(p *parse.PipeNode, top bool) {
	if p == nil {
		return
	}
	for _, c := range p.Cmds {
		w.command(c, top)
	}
}

func (w *walker) command(c *parse.CommandNode, top bool) {
	if len(c.Args) == 3 {
		if id, ok := c.Args[0].(*parse.IdentifierNode); ok && id.Ident == "index" && w.isRoot(c.Args[1], top) {
			if s, ok := c.Args[2].(*parse.StringNode); ok {
				w.add(c, s.Text)
				return
			}
		}
	}
	for _, a := range c.Args {
		w.arg(a, top)
	}
}

// isRoot reports whether n is the recipient's map: `.` at top level or `$` anywhere.
func (w *walker) isRoot(n parse.Node, top bool) bool {
	switch n := n.(type) {
	case *parse.DotNode:
		return top
	case *parse.VariableNode:
		return len(n.Ident) == 1 && n.Ident[0] == "$"
	}
	return false
}

func (w *walker) arg(n parse.Node, top bool) {
	switch n := n.(type) {
	case *parse.FieldNode:
		if top && len(n.Ident) > 0 {
			w.add(n, n.Ident[0])
		}
	case *parse.VariableNode:
		if len(n.Ident) > 1 && n.Ident[0] == "$" {
			w.add(n, n.Ident[1])
		}
	case *parse.ChainNode:
		if len(n.Field) > 0 && w.isRoot(n.Node, top) {
			w.add(n, n.Field[0])
		} else {
			w.arg(n.Node, top)
		}
	case *parse.PipeNode:
		w.pipe(n, top)
	}
}
