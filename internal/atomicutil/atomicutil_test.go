package atomicutil

import (
	"testing"
	"unsafe"
)

// Two padded counters side by side are CacheLine bytes apart, whatever their alignment.
func TestPadding(t *testing.T) {
	var u [2]Uint64
	var i [2]Int64
	if d := uintptr(unsafe.Pointer(&u[1])) - uintptr(unsafe.Pointer(&u[0])); d != CacheLine {
		t.Errorf("Uint64 stride %d, want %d", d, CacheLine)
	}
	if d := uintptr(unsafe.Pointer(&i[1])) - uintptr(unsafe.Pointer(&i[0])); d != CacheLine {
		t.Errorf("Int64 stride %d, want %d", d, CacheLine)
	}
	if unsafe.Sizeof(Pad{}) != CacheLine {
		t.Errorf("Pad is %d bytes", unsafe.Sizeof(Pad{}))
	}
}
