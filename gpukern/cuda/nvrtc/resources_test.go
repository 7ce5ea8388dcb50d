package nvrtc

import (
	"reflect"
	"testing"
)

// A log as NVRTC 11.8 writes it for sm_90, with a device function that was not inlined
// between two entries (its properties are not the entry's), and a last entry as CUDA 12 and
// later write it (with its barriers).
const ptxasLog = `ptxas info    : 0 bytes gmem
ptxas info    : Compiling entry function 'lora_expand' for 'sm_90'
ptxas info    : Function properties for lora_expand
ptxas         .     64 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
ptxas info    : Used 80 registers
ptxas info    : Function properties for helper
ptxas         .     8 bytes stack frame, 4 bytes spill stores, 4 bytes spill loads
ptxas info    : Compiling entry function 'lora_shrink' for 'sm_90'
ptxas info    : Function properties for lora_shrink
ptxas         .     0 bytes stack frame, 12 bytes spill stores, 16 bytes spill loads
ptxas info    : Used 64 registers, 2048 bytes smem, 400 bytes cmem[0]
ptxas info    : Compiling entry function 'decode_combine' for 'sm_90'
ptxas info    : Function properties for decode_combine
ptxas         .     0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
ptxas info    : Used 32 registers, used 1 barriers, 512 bytes smem, 400 bytes cmem[0]
`

func TestParseUsage(t *testing.T) {
	got, err := ParseUsage(ptxasLog)
	if err != nil {
		t.Fatal(err)
	}
	want := []Usage{
		{Kernel: "lora_expand", Registers: 80, StackBytes: 64},
		{Kernel: "lora_shrink", Registers: 64, SharedBytes: 2048, SpillStores: 12, SpillLoads: 16},
		{Kernel: "decode_combine", Registers: 32, SharedBytes: 512},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %+v\nwant %+v", got, want)
	}
	for _, bad := range []string{"", "ptxas info    : 0 bytes gmem\n",
		"ptxas info    : Compiling entry function 'k' for 'sm_90'\n"} {
		if us, err := ParseUsage(bad); err == nil {
			t.Errorf("ParseUsage(%q) = %+v, want an error", bad, us)
		}
	}
}

func FuzzParseUsage(f *testing.F) {
	f.Add(ptxasLog)
	f.Add("ptxas info    : Compiling entry function 'k' for 'sm_90'\nptxas info    : Used 99999999999999999999999 registers\n")
	f.Fuzz(func(t *testing.T, log string) {
		us, err := ParseUsage(log)
		if err == nil && len(us) == 0 {
			t.Fatal("no kernels and no error")
		}
		for _, u := range us {
			if err == nil && (u.Registers < 0 || u.Kernel == "") {
				t.Fatalf("%+v", u)
			}
		}
	})
}
