package main

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// statusKiB returns a "Vm…" field (in KiB) of /proc/<pid>/status.
func statusKiB(pid int, field string) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	return parseStatusKiB(b, field)
}

// parseStatusKiB finds "field:   1234 kB" in the text of a /proc/<pid>/status file.
func parseStatusKiB(status []byte, field string) (int64, error) {
	sc := bufio.NewScanner(bytes.NewReader(status))
	for sc.Scan() {
		k, v, ok := bytes.Cut(sc.Bytes(), []byte(":"))
		if !ok || string(k) != field {
			continue
		}
		f := bytes.Fields(v)
		if len(f) != 2 || string(f[1]) != "kB" {
			return 0, fmt.Errorf("%s: unexpected value %q", field, v)
		}
		return strconv.ParseInt(string(f[0]), 10, 64)
	}
	return 0, fmt.Errorf("no %s in /proc status", field)
}

// clockTicks is USER_HZ, the unit of CPU times in /proc/<pid>/stat: 100 on every Linux port
// Go supports (sysconf is out of reach without cgo).
const clockTicks = 100

// processCPU returns the user plus system CPU time used so far by all threads of pid.
func processCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	return parseStatCPU(b)
}

// parseStatCPU reads utime and stime (fields 14 and 15) of a /proc/<pid>/stat line.
func parseStatCPU(stat []byte) (time.Duration, error) {
	// The command name (field 2) may hold spaces and parentheses; fields restart after the last ')'.
	i := bytes.LastIndexByte(stat, ')')
	f := bytes.Fields(stat[i+1:])
	if i < 0 || len(f) < 13 {
		return 0, fmt.Errorf("malformed /proc stat %q", stat)
	}
	var ticks int64
	for _, s := range f[11:13] {
		n, err := strconv.ParseInt(string(s), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("malformed /proc stat %q", stat)
		}
		ticks += n
	}
	return time.Duration(ticks) * time.Second / clockTicks, nil
}

// resetPeakRSS resets VmHWM of pid to its current RSS (Linux ≥ 4.0, same user or root).
func resetPeakRSS(pid int) error {
	return os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("5"), 0)
}

// rssSampler polls VmRSS of a process and keeps the largest value seen.
type rssSampler struct {
	stop chan struct{}
	wg   sync.WaitGroup
	max  int64 // KiB
}

// sampleRSS starts polling pid every interval until stop is called.
func sampleRSS(pid int, interval time.Duration) *rssSampler {
	s := &rssSampler{stop: make(chan struct{})}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			if v, err := statusKiB(pid, "VmRSS"); err == nil && v > s.max {
				s.max = v
			}
			select {
			case <-s.stop:
				return
			case <-t.C:
			}
		}
	}()
	return s
}

// Stop ends sampling and returns the largest VmRSS seen, in KiB.
func (s *rssSampler) Stop() int64 {
	close(s.stop)
	s.wg.Wait()
	return s.max
}

// cpuTime returns the user plus system CPU time this process has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
