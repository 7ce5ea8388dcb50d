package loadreport

import "testing"

func FuzzDecode(f *testing.F) {
	f.Add([]byte(`{"worker":"w1","seq":1,"in_flight":3,"waiting":2,"running":1,"kv_free":0.5,"adapters":["a","b/c"],"tokens_per_sec":10.5,"draining":false,"sent":"2026-01-02T03:04:05.123456789+02:00"}`))
	f.Add([]byte(`{"worker":"w1","seq":18446744073709551615,"adapters":null}`))
	f.Add([]byte(`{"worker":"w1","seq":1,"adapters":[]}`))
	f.Add([]byte(`{"WORKER":"w1","Seq":2,"kv_free":1e-320,"unknown":[1,{"a":null}]}`))
	f.Add([]byte(`{"worker":"w.1","seq":1}`))
	f.Add([]byte(`{"worker":"w1","seq":1,"kv_free":1.5}`))
	f.Add([]byte(`{"worker":"w1","seq":1,"sent":"0000-01-01T00:00:00-23:59"}`))
	f.Add([]byte(`[]`))
	f.Add([]byte(``))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := Decode(b)
		if err != nil {
			return
		}
		enc, err := Encode(r)
		if err != nil {
			t.Fatalf("Encode of decoded report %+v: %v", r, err)
		}
		r2, err := Decode(enc)
		if err != nil {
			t.Fatalf("Decode of re-encoded %s: %v", enc, err)
		}
		if !reportsEqual(r, r2) {
			t.Fatalf("round trip changed the report:\n%+v\n%+v", r, r2)
		}
	})
}
