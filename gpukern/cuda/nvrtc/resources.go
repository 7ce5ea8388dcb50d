package nvrtc

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// Usage is what the assembler (ptxas) reports of one kernel compiled for one architecture:
// what decides how many of its blocks an SM holds, and whether it spills.
type Usage struct {
	Kernel      string
	Registers   int // a thread's
	SharedBytes int // static shared memory a block (dynamic shared memory is the launch's)
	StackBytes  int // a thread's stack frame, in local memory
	SpillStores int // bytes a thread spills to local memory
	SpillLoads  int // bytes it reads back
}

// Resources compiles src as Compile does and returns each kernel's Usage, in the order
// ptxas reports them.
func Resources(name, src, arch, includeDir string, options ...string) ([]Usage, error) {
	_, log, err := compile(name, src, arch, includeDir, true, options)
	if err != nil {
		return nil, err
	}
	us, err := ParseUsage(log)
	if err != nil {
		return nil, fmt.Errorf("nvrtc: %s for %s: %w", name, arch, err)
	}
	return us, nil
}

// The lines of ptxas -v that ParseUsage reads, e.g.
//
//	ptxas info    : Compiling entry function 'lora_shrink' for 'sm_90'
//	ptxas info    : Function properties for lora_shrink
//	ptxas         .     0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
//	ptxas info    : Used 64 registers, 2048 bytes smem, 400 bytes cmem[0]
//
// (CUDA 12 and later also say "used 1 barriers" after the registers.)
// "Function properties" also comes for device functions that are not inlined: only the
// properties of the entry being compiled are its.
var (
	entryLine = regexp.MustCompile(`Compiling entry function '([^']+)'`)
	propsLine = regexp.MustCompile(`Function properties for (\S+)`)
	frameLine = regexp.MustCompile(`(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads`)
	usedLine  = regexp.MustCompile(`Used (\d+) registers`)
	smemPart  = regexp.MustCompile(`(\d+) bytes smem`)
)

// ParseUsage reads the kernels' resources from the log of a compilation with ptxas -v. A
// log that names no kernel, or a kernel without its register count, is an error.
func ParseUsage(log string) ([]Usage, error) {
	var us []Usage
	props := "" // whose "Function properties" the next frame line gives
	for _, line := range strings.Split(log, "\n") {
		cur := len(us) - 1
		if m := entryLine.FindStringSubmatch(line); m != nil {
			us = append(us, Usage{Kernel: m[1], Registers: -1})
			props = ""
			continue
		}
		if m := propsLine.FindStringSubmatch(line); m != nil {
			props = m[1]
			continue
		}
		if cur < 0 {
			continue
		}
		if m := frameLine.FindStringSubmatch(line); m != nil && props == us[cur].Kernel {
			us[cur].StackBytes, us[cur].SpillStores, us[cur].SpillLoads = atoi(m[1]), atoi(m[2]), atoi(m[3])
			continue
		}
		if m := usedLine.FindStringSubmatch(line); m != nil && us[cur].Registers < 0 {
			us[cur].Registers = atoi(m[1])
			if m := smemPart.FindStringSubmatch(line); m != nil {
				us[cur].SharedBytes = atoi(m[1])
			}
		}
	}
	if len(us) == 0 {
		return nil, fmt.Errorf("the compiler reported no kernel's resources")
	}
	for _, u := range us {
		if u.Registers < 0 {
			return nil, fmt.Errorf("the compiler reported no register count for %s", u.Kernel)
		}
	}
	return us, nil
}

// atoi reads the digits a pattern matched; one too long for an int reads as the largest.
func atoi(s string) int {
	n, err := strconv.Atoi(s)
	if err != nil {
		return int(^uint(0) >> 1)
	}
	return n
}
