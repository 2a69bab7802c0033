// Package gnetlog routes gnet's own logs through slog, for every face that runs gnet loops. gnet's
// Info lines are debug-level here: they narrate the loops' start and stop.
package gnetlog

import (
	"fmt"
	"log/slog"
)

// Logger is gnet's logging.Logger over a slog.Logger; each line carries src=gnet.
type Logger struct{ L *slog.Logger }

func (g Logger) Debugf(f string, a ...any) { g.L.Debug(fmt.Sprintf(f, a...), "src", "gnet") }
func (g Logger) Infof(f string, a ...any)  { g.L.Debug(fmt.Sprintf(f, a...), "src", "gnet") }
func (g Logger) Warnf(f string, a ...any)  { g.L.Warn(fmt.Sprintf(f, a...), "src", "gnet") }
func (g Logger) Errorf(f string, a ...any) { g.L.Error(fmt.Sprintf(f, a...), "src", "gnet") }
func (g Logger) Fatalf(f string, a ...any) { g.L.Error(fmt.Sprintf(f, a...), "src", "gnet") }
