package campaign

import (
	"fmt"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
)

// placeholderRe matches {{ … }} in a campaign name (for the default List-Id).
var placeholderRe = regexp.MustCompile(`\{\{[^}]*\}\}`)

// parseContent reads the content keys: markdown, layout, inline_css, attachments,
// attachment_column, inline, list_id and feedback_id.
func (c *Campaign) parseContent(f *File, path string, rel func(string) string) error {
	bad := func(key, format string, args ...any) error {
		return configErr("%s: %s: %s", path, key, fmt.Sprintf(format, args...))
	}
	c.MarkdownFile, c.LayoutFile = rel(f.Markdown), rel(f.Layout)
	c.InlineCSS = f.InlineCSS
	for _, a := range f.Attachments {
		if strings.TrimSpace(a) == "" {
			return bad("attachments", "an empty file name")
		}
		c.Attachments = append(c.Attachments, rel(a))
	}
	c.AttachmentColumn = strings.TrimSpace(f.AttachmentColumn)
	if len(f.Inline) > 0 {
		if f.HTML == "" && f.Markdown == "" {
			return bad("inline", "inline images need an html or markdown body")
		}
		c.Inline = make(map[string]string, len(f.Inline))
		ids := make([]string, 0, len(f.Inline))
		for id := range f.Inline {
			ids = append(ids, id)
		}
		sort.Strings(ids)
		for _, id := range ids {
			if !cidRe.MatchString(id) {
				return bad("inline", "%q: a content id may hold letters, digits, '.', '_' and '-' (used as <img src=\"cid:%s\">)", id, id)
			}
			if strings.TrimSpace(f.Inline[id]) == "" {
				return bad("inline", "%s: no file", id)
			}
			c.Inline[id] = rel(f.Inline[id])
		}
	}
	c.ListID = strings.TrimSpace(f.ListID)
	if c.ListID == "" {
		c.ListID = DefaultListID(c.NameTemplate, c.From.Address)
	}
	c.FeedbackID = strings.TrimSpace(f.FeedbackID)
	return nil
}

var cidRe = regexp.MustCompile(`^[A-Za-z0-9._-]+$`)

// DefaultListID is <NAME.FROM-DOMAIN>: the campaign name without its {{ .Date }} or
// {{ .Week }} parts (so a recurring newsletter keeps one List-Id), then From's domain.
func DefaultListID(nameTemplate, from string) string {
	name := placeholderRe.ReplaceAllString(nameTemplate, "")
	name = strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' {
			return r
		}
		return '.'
	}, name)
	var parts []string
	for _, p := range strings.Split(name, ".") {
		if p = strings.Trim(p, "-_"); p != "" {
			parts = append(parts, p)
		}
	}
	domain := strings.ToLower(from[strings.LastIndexByte(from, '@')+1:])
	if len(parts) == 0 {
		return "<" + domain + ">"
	}
	return "<" + strings.Join(parts, ".") + "." + domain + ">"
}

// InsideDir resolves a path from list data (relative to dir) and refuses one that leaves
// dir, through ".." or a symbolic link.
func InsideDir(dir, p string) (string, error) {
	if filepath.IsAbs(p) {
		return "", fmt.Errorf("%q: an absolute path (per-recipient files must be inside the campaign folder)", p)
	}
	clean := filepath.Join(dir, p)
	if !within(dir, clean) {
		return "", fmt.Errorf("%q: outside the campaign folder", p)
	}
	realDir, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return "", err
	}
	real, err := filepath.EvalSymlinks(clean)
	if err != nil {
		return "", err
	}
	if !within(realDir, real) {
		return "", fmt.Errorf("%q: a link to a file outside the campaign folder", p)
	}
	return real, nil
}

func within(dir, p string) bool {
	r, err := filepath.Rel(dir, p)
	return err == nil && r != ".." && !strings.HasPrefix(r, ".."+string(filepath.Separator)) && !filepath.IsAbs(r)
}
