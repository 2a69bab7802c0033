// Package buildinfo says which build of Sluice is running, for sluice --version, sluiced --version,
// the broker's startup log and its sluice_build_info metric.
//
// `make build` sets the release with
//
//	-ldflags "-X github.com/sluicemq/sluice/internal/buildinfo.version=v1.2.3"
//
// (VERSION, by default `git describe --tags --always --dirty`); a binary built otherwise reports the
// module version or the VCS revision the Go toolchain recorded in it (runtime/debug.ReadBuildInfo),
// else "(devel)".
package buildinfo

import (
	"runtime"
	"runtime/debug"
)

// version is set at link time by make build; empty otherwise.
var version = ""

// Version is this build's version: the release make build stamped, else the module version or the
// first 12 digits of the VCS revision (with "-dirty" for uncommitted changes), else "(devel)".
func Version() string {
	if version != "" {
		return version
	}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "(devel)"
	}
	v := bi.Main.Version
	var rev, dirty string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				dirty = "-dirty"
			}
		}
	}
	if (v == "" || v == "(devel)") && rev != "" {
		if len(rev) > 12 {
			rev = rev[:12]
		}
		return rev + dirty
	}
	if v == "" {
		return "(devel)"
	}
	return v
}

// Revision is the VCS revision recorded in the binary, or "".
func Revision() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return ""
	}
	for _, s := range bi.Settings {
		if s.Key == "vcs.revision" {
			return s.Value
		}
	}
	return ""
}

// GoVersion is the Go release the binary was built with.
func GoVersion() string { return runtime.Version() }
