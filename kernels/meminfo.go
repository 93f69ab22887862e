package kernels

import "unsafe"

// MemoryInfo reports the device's memory now: free is what allocations can still get (on a GPU the
// driver's free memory plus what serl's caching allocator holds for reuse; on the CPU the kernel's
// MemAvailable), total its size (a GPU's memory; the CPU's physical RAM). Info() holds the same figures
// as of Open; this asks again, e.g. to size a KV cache from what is left after the weights are loaded.
func (d *Device) MemoryInfo() (free, total int64, err error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.hostCall("memory info"); err != nil {
		return 0, 0, err
	}
	a := args[deviceInfoArgs](d)
	if st := d.caller.Call2(d.fnInfo, d.ctx, uintptr(unsafe.Pointer(a))); st != 0 {
		return 0, 0, d.statusError("device_info", st)
	}
	return a.freeMemory, a.totalMemory, nil
}
