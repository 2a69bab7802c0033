package console

import (
	"io/fs"
	"regexp"
	"strings"
	"testing"
)

// TestPageWeightBudget: the console's files add up to at most PageWeightBudget bytes.
func TestPageWeightBudget(t *testing.T) {
	total := 0
	err := fs.WalkDir(FS(), ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(FS(), path)
		total += len(b)
		t.Logf("%-12s %6d bytes", path, len(b))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("total %d bytes of a %d-byte budget", total, PageWeightBudget)
	if total > PageWeightBudget {
		t.Fatalf("the console weighs %d bytes, over its budget of %d", total, PageWeightBudget)
	}
}

// forbidden are what the console's files must not contain under a CSP without 'unsafe-inline'.
var forbidden = []*regexp.Regexp{
	regexp.MustCompile(`<script(?:\s[^>]*)?>\s*[^<\s]`),   // a script element with a body
	regexp.MustCompile(`\s(?:on[a-z]+|style)\s*=\s*["']`), // an event handler or style attribute
	regexp.MustCompile(`<style`),
	regexp.MustCompile(`(?:src|href)\s*=\s*["']?(?:https?:)?//`), // another origin
	regexp.MustCompile(`innerHTML|outerHTML|insertAdjacentHTML|document\.write|eval\(`),
}

func firstForbidden(s string) string {
	for _, re := range forbidden {
		if m := re.FindString(s); m != "" {
			return strings.TrimSpace(m)
		}
	}
	return ""
}

// TestNoInlineScriptOrStyle: the page runs under a CSP without 'unsafe-inline', so it has no inline
// script, no event-handler attribute, no style element or attribute, and loads nothing from another
// origin.
func TestNoInlineScriptOrStyle(t *testing.T) {
	for _, name := range []string{"index.html", "app.js"} {
		b, err := fs.ReadFile(FS(), name)
		if err != nil {
			t.Fatal(err)
		}
		if m := firstForbidden(string(b)); m != "" {
			t.Errorf("%s: %q", name, m)
		}
	}
	// The check itself finds each kind.
	for _, bad := range []string{`<script>alert(1)</script>`, `<div style="color:red">`, `<a onclick='x()'>`,
		`<style>p{}</style>`, `<script src="https://cdn.example/x.js"></script>`, `n.innerHTML = s`} {
		if firstForbidden(bad) == "" {
			t.Errorf("not caught: %s", bad)
		}
	}
	for _, good := range []string{`<script src="app.js" defer></script>`, `<link rel="stylesheet" href="app.css">`, `n.textContent = s`} {
		if m := firstForbidden(good); m != "" {
			t.Errorf("%s: caught %q", good, m)
		}
	}
}
