//go:build !linux

package bench

import (
	"os"
	"time"
)

func lowerTimerSlack() {}

func sleepNs(ns int64) { time.Sleep(time.Duration(ns)) }

func fdatasync(f *os.File) error { return f.Sync() }

// readCPUTimes: the machine's CPU time is not read outside Linux.
func readCPUTimes() cpuTimes { return cpuTimes{} }
