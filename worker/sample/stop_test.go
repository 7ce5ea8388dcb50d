package sample

import (
	"strings"
	"testing"
	"unicode/utf8"
)

type push struct {
	text, emit string
	stopped    bool
}

func TestStopMatcher(t *testing.T) {
	tests := []struct {
		name   string
		stops  []string
		pushes []push
		flush  string
		stop   string
	}{
		{
			name:  "no stops: everything at once",
			stops: nil,
			pushes: []push{
				{"Hello", "Hello", false}, {" world", " world", false},
			},
		},
		{
			name:  "split across pushes",
			stops: []string{"STOP"},
			pushes: []push{
				{"Hello ST", "Hello ", false}, {"O", "", false}, {"P world", "", true},
				{"more", "", true},
			},
			stop: "STOP",
		},
		{
			name:  "held text released when it turns out not to be a stop",
			stops: []string{"STOP"},
			pushes: []push{
				{"a ST", "a ", false}, {"ART", "START", false}, {"S", "", false},
			},
			flush: "S",
		},
		{
			name:   "stop at the very start",
			stops:  []string{"<|end|>"},
			pushes: []push{{"<|end|>more text", "", true}},
			stop:   "<|end|>",
		},
		{
			name:   "stop at the start split over pushes",
			stops:  []string{"<|end|>"},
			pushes: []push{{"<|e", "", false}, {"nd|", "", false}, {">", "", true}},
			stop:   "<|end|>",
		},
		{
			name:  "overlapping stops: the one complete first wins",
			stops: []string{"bcd", "abc"},
			pushes: []push{
				{"xab", "x", false}, {"cd", "", true},
			},
			stop: "abc",
		},
		{
			name:   "first complete beats list order within one push",
			stops:  []string{"cd", "ab"},
			pushes: []push{{"zabcd", "z", true}},
			stop:   "ab",
		},
		{
			name:   "a short stop inside a longer one completes first",
			stops:  []string{"abcd", "c"},
			pushes: []push{{"abcd", "ab", true}},
			stop:   "c",
		},
		{
			name:   "same end: the one starting first",
			stops:  []string{"bc", "abc"},
			pushes: []push{{"xabcy", "x", true}},
			stop:   "abc",
		},
		{
			name:  "self-overlapping stop",
			stops: []string{"aab"},
			pushes: []push{
				{"a", "", false}, {"a", "", false}, {"a", "a", false}, {"b", "", true},
			},
			stop: "aab",
		},
		{
			name:  "hold back for the longest candidate",
			stops: []string{"xyz", "yz!"},
			pushes: []push{
				{"1xy", "1", false}, {"z", "", true},
			},
			stop: "xyz",
		},
		{
			name:  "multi-byte stop split between pushes",
			stops: []string{"世界"},
			pushes: []push{
				{"你好世", "你好", false}, {"界!", "", true},
			},
			stop: "世界",
		},
		{
			name:  "similar multi-byte characters neither match nor are held",
			stops: []string{"é", "😀"},
			pushes: []push{
				{"ã", "ã", false}, {"ab😁", "ab😁", false}, {"caf", "caf", false}, {"é!", "", true},
			},
			stop: "é",
		},
		{
			name:   "empty stop strings are ignored",
			stops:  []string{"", "end"},
			pushes: []push{{"the en", "the ", false}, {"d", "", true}},
			stop:   "end",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := NewStopMatcher(tt.stops)
			for i, p := range tt.pushes {
				emit, stopped := m.Push(p.text)
				if emit != p.emit || stopped != p.stopped {
					t.Fatalf("push %d %q: got (%q, %v), want (%q, %v)", i, p.text, emit, stopped, p.emit, p.stopped)
				}
			}
			if got := m.Flush(); got != tt.flush {
				t.Errorf("Flush() = %q, want %q", got, tt.flush)
			}
			if got := m.Stop(); got != tt.stop {
				t.Errorf("Stop() = %q, want %q", got, tt.stop)
			}
		})
	}
}

// refStop is the whole-text answer, as if text arrived one byte at a time: the text
// before the stop string that ends first (ties: the one starting first).
func refStop(text string, stops []string) (string, bool) {
	for end := 1; end <= len(text); end++ {
		at := -1
		for _, s := range stops {
			if s != "" && strings.HasSuffix(text[:end], s) && (at < 0 || end-len(s) < at) {
				at = end - len(s)
			}
		}
		if at >= 0 {
			return text[:at], true
		}
	}
	return text, false
}

func FuzzStopMatcher(f *testing.F) {
	f.Add("Hello STOP world", "STOP", "END", uint64(3))
	f.Add("aaab", "aab", "b", uint64(1))
	f.Add("你好世界!", "世界", "界", uint64(7))
	f.Add("<|end|>", "<|end|>", "", uint64(0))
	f.Add("abcabcabd", "abcabd", "cab", uint64(0x5555))
	f.Add("abcabcabd", "bcabca", "c", uint64(0x5555))
	f.Add("世界", "\x8c", "0", uint64(7)) // an invalid stop string matches inside 界
	f.Fuzz(func(t *testing.T, text, stop1, stop2 string, cuts uint64) {
		stops := []string{stop1, stop2}
		m := NewStopMatcher(stops)
		var got strings.Builder
		stopped := false
		// Split text at rune boundaries chosen by the bits of cuts.
		start := 0
		for i := range text {
			if i > start && cuts&1 == 1 {
				e, s := m.Push(text[start:i])
				got.WriteString(e)
				stopped = stopped || s
				start = i
			}
			cuts = cuts>>1 | cuts<<63
		}
		e, s := m.Push(text[start:])
		got.WriteString(e)
		stopped = stopped || s
		got.WriteString(m.Flush())

		want, wantStopped := refStop(text, stops)
		if got.String() != want || stopped != wantStopped {
			t.Fatalf("stops %q text %q: got (%q, %v), want (%q, %v)", stops, text, got.String(), stopped, want, wantStopped)
		}
		// A valid stop string cannot match inside a character of valid text. (JSON requests
		// always carry valid stop strings.)
		valid := utf8.ValidString(text) && utf8.ValidString(stop1) && utf8.ValidString(stop2)
		if valid && !utf8.ValidString(got.String()) {
			t.Fatalf("valid text %q and stops %q produced invalid output %q", text, stops, got.String())
		}
	})
}
