// Package console is the broker's web console: static HTML, JavaScript and CSS embedded in the
// binary and served by engine/httpapi at /. It has no build step and loads nothing from another
// origin; everything it shows comes from the HTTP API under /v1/ (docs/http.md).
package console

import (
	"embed"
	"io/fs"
	"net/http"
)

// files are the console's static files. Their total size is held under PageWeightBudget by a test.
//
//go:embed static
var files embed.FS

// PageWeightBudget is the most bytes the console's files may add up to (uncompressed): a first
// load fetches every one of them.
const PageWeightBudget = 64 << 10

// FS returns the console's files, rooted at the directory served as /.
func FS() fs.FS {
	sub, err := fs.Sub(files, "static")
	if err != nil {
		panic(err) // the embedded tree always has it
	}
	return sub
}

// Handler serves the console's files.
func Handler() http.Handler { return http.FileServerFS(FS()) }
