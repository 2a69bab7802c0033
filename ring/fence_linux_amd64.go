//go:build linux && amd64 && !race

package ring

import (
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

const (
	membarrierCmdPrivateExpedited         = 1 << 3
	membarrierCmdRegisterPrivateExpedited = 1 << 4
)

// asymmetric reports whether heavyFence is available, so that producers may
// publish with a plain release store. Registration is once per process.
var asymmetric = registerMembarrier()

func registerMembarrier() bool {
	_, _, errno := unix.Syscall(unix.SYS_MEMBARRIER, membarrierCmdRegisterPrivateExpedited, 0, 0)
	return errno == 0
}

// heavyFence returns after every running thread of the process has executed
// a full memory fence.
func heavyFence() {
	if _, _, errno := unix.Syscall(unix.SYS_MEMBARRIER, membarrierCmdPrivateExpedited, 0, 0); errno != 0 {
		// Registered at init, so the kernel cannot refuse it now; if it does,
		// a wake-up could be lost, which must not pass silently.
		panic("ring: membarrier: " + errno.Error())
	}
}

// storeRelease stores v at p with release ordering. On amd64 a plain store
// is one: the compiler emits a MOV and keeps stores in program order (each
// is sequenced on the memory chain of its SSA form), and x86 never reorders
// a store with earlier stores. It is what the runtime's own StoreRel64
// compiles to here. The race detector cannot see it, so race builds use
// fence_other.go.
func storeRelease(p *atomic.Uint64, v uint64) { *(*uint64)(unsafe.Pointer(p)) = v }
