package membership

import (
	"errors"
	"strings"
	"testing"
)

var workerMeta = Meta{Role: RoleWorker, HTTPAddr: "10.0.0.1:8080", Model: "llama-3-8b", Capacity: 4, Version: "0.1.0"}

func TestMetaEncodeIsCompactJSON(t *testing.T) {
	b, err := workerMeta.Encode()
	if err != nil {
		t.Fatal(err)
	}
	want := `{"role":"worker","http":"10.0.0.1:8080","model":"llama-3-8b","cap":4,"ver":"0.1.0"}`
	if string(b) != want {
		t.Fatalf("Encode = %s, want %s", b, want)
	}
	got, err := DecodeMeta(b)
	if err != nil || got != workerMeta {
		t.Fatalf("DecodeMeta = %+v, %v; want %+v", got, err, workerMeta)
	}
}

func TestDecodeMetaAcceptsRouterAndUnknownFields(t *testing.T) {
	got, err := DecodeMeta([]byte(`{"role":"router","future":{"x":1}}`))
	if err != nil || got != (Meta{Role: RoleRouter}) {
		t.Fatalf("DecodeMeta = %+v, %v", got, err)
	}
}

func TestDecodeMetaRejects(t *testing.T) {
	for name, in := range map[string]string{
		"empty":            ``,
		"not json":         `role=worker`,
		"trailing data":    `{"role":"router"} {}`,
		"array":            `[]`,
		"unknown role":     `{"role":"db"}`,
		"no role":          `{"http":"a:1","model":"m","cap":1}`,
		"worker no addr":   `{"role":"worker","model":"m","cap":1}`,
		"worker no model":  `{"role":"worker","http":"a:1","cap":1}`,
		"worker cap 0":     `{"role":"worker","http":"a:1","model":"m"}`,
		"negative cap":     `{"role":"router","cap":-1}`,
		"huge cap":         `{"role":"worker","http":"a:1","model":"m","cap":1025}`,
		"cap not int":      `{"role":"worker","http":"a:1","model":"m","cap":1.5}`,
		"addr no port":     `{"role":"worker","http":"a","model":"m","cap":1}`,
		"addr no host":     `{"role":"worker","http":":80","model":"m","cap":1}`,
		"addr port 0":      `{"role":"worker","http":"a:0","model":"m","cap":1}`,
		"addr port 65536":  `{"role":"worker","http":"a:65536","model":"m","cap":1}`,
		"control in model": `{"role":"worker","http":"a:1","model":"m\n","cap":1}`,
		"escaped control":  `{"role":"router","ver":"\u0007"}`,
	} {
		if m, err := DecodeMeta([]byte(in)); !errors.Is(err, ErrInvalidMeta) {
			t.Errorf("%s: DecodeMeta(%q) = %+v, %v; want ErrInvalidMeta", name, in, m, err)
		}
	}
}

func TestMetaTooLarge(t *testing.T) {
	big := workerMeta
	big.Model = strings.Repeat("m", 500)
	if _, err := big.Encode(); !errors.Is(err, ErrMetaTooLarge) {
		t.Fatalf("Encode of %d-char model: %v, want ErrMetaTooLarge", len(big.Model), err)
	}
	in := `{"role":"router","ver":"` + strings.Repeat("v", 500) + `"}`
	if _, err := DecodeMeta([]byte(in)); !errors.Is(err, ErrMetaTooLarge) {
		t.Fatalf("DecodeMeta of %d bytes: %v, want ErrMetaTooLarge", len(in), err)
	}
}

func TestEncodeRejectsInvalidMeta(t *testing.T) {
	if _, err := (Meta{Role: RoleWorker}).Encode(); !errors.Is(err, ErrInvalidMeta) {
		t.Fatalf("Encode of worker without address: %v, want ErrInvalidMeta", err)
	}
}

// FuzzDecodeMeta checks that DecodeMeta never panics and that whatever it accepts
// survives an Encode/DecodeMeta round trip unchanged.
func FuzzDecodeMeta(f *testing.F) {
	f.Add([]byte(`{"role":"worker","http":"10.0.0.1:8080","model":"llama","cap":4,"ver":"1"}`))
	f.Add([]byte(`{"role":"router"}`))
	f.Add([]byte(`{"role":"worker","http":"[::1]:80","model":"q","cap":1024}`))
	f.Add([]byte(`{"role":"worker","http":"a:1","model":"m","cap":1e3}`))
	f.Add([]byte(`{"role":"router","role":"worker"}`))
	f.Add([]byte(`null`))
	f.Add([]byte(``))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := DecodeMeta(b)
		if err != nil {
			return
		}
		enc, err := m.Encode()
		if err != nil {
			t.Fatalf("accepted %q but cannot encode %+v: %v", b, m, err)
		}
		back, err := DecodeMeta(enc)
		if err != nil || back != m {
			t.Fatalf("round trip of %+v: %+v, %v", m, back, err)
		}
	})
}
