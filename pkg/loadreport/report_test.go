package loadreport

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestValidToken(t *testing.T) {
	for _, s := range []string{"w1", "gpu-node_07", "Ünïcode", strings.Repeat("a", MaxTokenBytes)} {
		if err := ValidToken(s); err != nil {
			t.Errorf("ValidToken(%q) = %v, want nil", s, err)
		}
	}
	for _, s := range []string{"", "a.b", "a*", ">", "a b", "a\tb", "a\nb", "a\x00", "\u00a0", "\xff", strings.Repeat("a", MaxTokenBytes+1)} {
		if err := ValidToken(s); !errors.Is(err, ErrInvalidToken) {
			t.Errorf("ValidToken(%q) = %v, want ErrInvalidToken", s, err)
		}
	}
}

func TestSubject(t *testing.T) {
	got, err := Subject("prod", "w-3")
	if err != nil || got != "lorafleet.load.prod.w-3" {
		t.Fatalf("Subject = %q, %v", got, err)
	}
	for _, c := range [][2]string{{"pr.od", "w"}, {"prod", "w*"}, {"", "w"}, {"prod", ""}} {
		if _, err := Subject(c[0], c[1]); !errors.Is(err, ErrInvalidToken) {
			t.Errorf("Subject(%q, %q) error = %v, want ErrInvalidToken", c[0], c[1], err)
		}
	}
}

func TestDecodeKnownJSON(t *testing.T) {
	in := `{"worker":"w1","seq":42,"in_flight":3,"waiting":2,"running":1,"kv_free":0.25,` +
		`"adapters":["a","org/b"],"tokens_per_sec":812.5,"draining":true,` +
		`"sent":"2026-03-01T12:00:00.5Z","future_field":{"x":1}}`
	r, err := Decode([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	want := Report{Worker: "w1", Seq: 42, InFlight: 3, Waiting: 2, Running: 1, KVFree: 0.25,
		Adapters: []string{"a", "org/b"}, TokensPerSec: 812.5, Draining: true,
		Sent: time.Date(2026, 3, 1, 12, 0, 0, 5e8, time.UTC)}
	if !reportsEqual(r, want) {
		t.Fatalf("Decode = %+v\nwant     %+v", r, want)
	}
	b, err := Encode(want)
	if err != nil {
		t.Fatal(err)
	}
	for _, field := range []string{`"in_flight":3`, `"kv_free":0.25`, `"tokens_per_sec":812.5`, `"sent":"2026-03-01T12:00:00.5Z"`} {
		if !strings.Contains(string(b), field) {
			t.Errorf("Encode output %s lacks %s", b, field)
		}
	}
}

func TestDecodeRejects(t *testing.T) {
	longID := `"` + strings.Repeat("x", MaxAdapterIDBytes+1) + `"`
	many := "[" + strings.Repeat(`"a",`, MaxAdapters) + `"a"]`
	cases := map[string]string{
		"not json":        `nope`,
		"truncated":       `{"worker":"w1","seq":1`,
		"wrong type":      `{"worker":"w1","seq":"1"}`,
		"no worker":       `{"seq":1}`,
		"worker with dot": `{"worker":"w.1","seq":1}`,
		"seq zero":        `{"worker":"w1","seq":0}`,
		"negative seq":    `{"worker":"w1","seq":-1}`,
		"negative in_fl":  `{"worker":"w1","seq":1,"in_flight":-1}`,
		"negative wait":   `{"worker":"w1","seq":1,"waiting":-2}`,
		"negative run":    `{"worker":"w1","seq":1,"running":-3}`,
		"kv_free > 1":     `{"worker":"w1","seq":1,"kv_free":1.0001}`,
		"kv_free < 0":     `{"worker":"w1","seq":1,"kv_free":-0.1}`,
		"negative tps":    `{"worker":"w1","seq":1,"tokens_per_sec":-1}`,
		"empty adapter":   `{"worker":"w1","seq":1,"adapters":[""]}`,
		"long adapter":    `{"worker":"w1","seq":1,"adapters":[` + longID + `]}`,
		"too many":        `{"worker":"w1","seq":1,"adapters":` + many + `}`,
		"bad time":        `{"worker":"w1","seq":1,"sent":"yesterday"}`,
	}
	for name, in := range cases {
		if _, err := Decode([]byte(in)); err == nil {
			t.Errorf("%s: Decode accepted %.80s", name, in)
		} else if !errors.Is(err, ErrInvalidReport) {
			t.Errorf("%s: error %v does not wrap ErrInvalidReport", name, err)
		}
	}
	big := make([]byte, MaxReportBytes+1)
	if _, err := Decode(big); !errors.Is(err, ErrTooLarge) {
		t.Errorf("Decode(%d bytes) = %v, want ErrTooLarge", len(big), err)
	}
}

func TestEncodeRejectsInvalid(t *testing.T) {
	if _, err := Encode(Report{Worker: "w1", Seq: 1, KVFree: 2}); !errors.Is(err, ErrInvalidReport) {
		t.Errorf("Encode(kv_free 2) = %v, want ErrInvalidReport", err)
	}
	if _, err := Encode(Report{Worker: "w1", Seq: 1, Sent: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)}); err == nil {
		t.Error("Encode accepted a year JSON cannot represent")
	}
}

// reportsEqual compares field by field; Sent by instant, since a decoded time carries
// its own *Location.
func reportsEqual(a, b Report) bool {
	return a.Worker == b.Worker && a.Seq == b.Seq && a.InFlight == b.InFlight &&
		a.Waiting == b.Waiting && a.Running == b.Running && a.KVFree == b.KVFree &&
		slices.Equal(a.Adapters, b.Adapters) && a.TokensPerSec == b.TokensPerSec &&
		a.Draining == b.Draining && a.Sent.Equal(b.Sent)
}
