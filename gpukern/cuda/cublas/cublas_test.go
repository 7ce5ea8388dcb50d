package cublas

import (
	"errors"
	"math"
	"os"
	"os/exec"
	"testing"
)

// open loads cuBLAS or skips; CI installs nvidia-cuda-dev (libcublas.so.11) and sets
// LORAFLEET_REQUIRE_NVRTC so that its absence fails rather than skips.
func open(t *testing.T) {
	t.Helper()
	if err := Open(); err != nil {
		if errors.Is(err, ErrUnavailable) && os.Getenv("LORAFLEET_REQUIRE_NVRTC") == "" {
			t.Skipf("%v (install nvidia-cuda-dev; CI sets LORAFLEET_REQUIRE_NVRTC)", err)
		}
		t.Fatal(err)
	}
}

func TestOpen(t *testing.T) {
	open(t)
	if err := Open(); err != nil { // the second call returns the first result
		t.Fatal(err)
	}
}

// Without a GPU, creating a handle fails with a status rather than crashing.
func TestCreateWithoutGPU(t *testing.T) {
	if _, err := os.Stat("/dev/nvidia0"); err == nil {
		t.Skip("a GPU is present; this test is for machines without one")
	}
	open(t)
	h, err := Create()
	if err == nil {
		_ = h.Destroy()
		t.Fatal("Create succeeded without a GPU")
	}
	var se *StatusError
	if !errors.As(err, &se) {
		t.Fatalf("Create: %v (%T), want a *StatusError", err, err)
	}
	t.Log(err)
}

// Bad shapes, null pointers and unusable handles are refused before reaching cuBLAS.
func TestMatMulBF16RejectsBadShapes(t *testing.T) {
	h := &Handle{}
	const p = uintptr(0x1000)
	var big int64 = math.MaxInt32 + 1 // a variable, so that this compiles where int is 32 bits
	for _, c := range []struct {
		name      string
		out, x, w uintptr
		m, n, k   int
	}{
		{"m=0", p, p, p, 0, 4, 4},
		{"n<0", p, p, p, 4, -1, 4},
		{"k=0", p, p, p, 4, 4, 0},
		{"k>int32", p, p, p, 4, 4, int(big)},
		{"out=0", 0, p, p, 4, 4, 4},
		{"x=0", p, 0, p, 4, 4, 4},
		{"w=0", p, p, 0, 4, 4, 4},
		{"no handle", p, p, p, 4, 4, 4},
	} {
		if err := h.MatMulBF16(c.out, c.x, c.w, c.m, c.n, c.k, false); err == nil {
			t.Errorf("%s: no error", c.name)
		}
	}
	var nilh *Handle
	if nilh.MatMulBF16(p, p, p, 4, 4, 4, true) == nil || nilh.SetStream(0) == nil ||
		nilh.SetWorkspace(p, 1024) == nil || nilh.Destroy() == nil {
		t.Error("a nil handle was accepted")
	}
}

// cuBLASLt opens beside the cuBLAS that Open found, and a plan or a GEMM by one of its
// algorithms needs a live handle and a sound shape.
func TestLtRefusesWithoutHandle(t *testing.T) {
	open(t)
	if err := openLt(); err != nil {
		t.Fatalf("cuBLASLt beside %s: %v", opened, err)
	}
	var nilh *Handle
	for _, c := range []struct {
		name        string
		h           *Handle
		m, n, k, at int
	}{
		{"nil handle", nilh, 4, 4, 4, 8}, {"destroyed handle", &Handle{}, 4, 4, 4, 8},
		{"m=0", &Handle{}, 0, 4, 4, 8}, {"no algorithms", &Handle{}, 4, 4, 4, 0}, {"too many", &Handle{}, 4, 4, 4, 65},
	} {
		if p, _, err := c.h.Plan(c.m, c.n, c.k, c.at); err == nil || p != nil {
			t.Errorf("%s: Plan = %v, %v; want an error", c.name, p, err)
		}
	}
	const d = uintptr(0x1000)
	p, a := &Plan{m: 4, n: 4, k: 4}, &Algo{}
	if (&Handle{}).MatMulAlgo(p, a, d, d, d, false) == nil || nilh.MatMulAlgo(p, a, d, d, d, false) == nil ||
		(&Handle{}).MatMulAlgo(nil, a, d, d, d, false) == nil || (&Handle{}).MatMulAlgo(p, a, 0, d, d, false) == nil {
		t.Error("MatMulAlgo accepted a missing handle, plan or pointer")
	}
}

// lt.c's and shim.h's copies of cuBLASLt's types and enum values are cublasLt.h's: the C
// compiler checks testdata/ltcheck.c's static assertions against the header.
func TestLtMatchesHeader(t *testing.T) {
	cc, err := exec.LookPath("cc")
	if _, herr := os.Stat("/usr/include/cublasLt.h"); err != nil || herr != nil {
		if os.Getenv("LORAFLEET_REQUIRE_NVRTC") == "" {
			t.Skipf("no C compiler or no cublasLt.h (install nvidia-cuda-dev; CI sets LORAFLEET_REQUIRE_NVRTC)")
		}
		t.Fatalf("C compiler: %v; cublasLt.h: %v", err, herr)
	}
	if out, err := exec.Command(cc, "-fsyntax-only", "-Wall", "-Werror", "-I.", "testdata/ltcheck.c").CombinedOutput(); err != nil {
		t.Fatalf("%v:\n%s", err, out)
	}
}

func TestStatusError(t *testing.T) {
	for _, c := range []struct {
		err  StatusError
		want string
	}{
		{StatusError{"cublasGemmEx", 7}, "cublas: cublasGemmEx: CUBLAS_STATUS_INVALID_VALUE (7)"},
		{StatusError{"cublasCreate_v2", 1}, "cublas: cublasCreate_v2: CUBLAS_STATUS_NOT_INITIALIZED (1)"},
		{StatusError{"cublasGemmEx", 99}, "cublas: cublasGemmEx: status 99"},
	} {
		if got := c.err.Error(); got != c.want {
			t.Errorf("got %q, want %q", got, c.want)
		}
	}
}
