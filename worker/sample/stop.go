package sample

import "strings"

// StopMatcher finds stop strings in streamed text. It emits text as soon as it can no
// longer be part of a stop string, holding back only a suffix that is a proper prefix of
// one (vLLM holds back a fixed max(len(stop))-1 characters instead; the total emitted text
// is the same). The stop string and everything after it are dropped, as in vLLM without
// include_stop_str_in_output. When several stop strings occur, the one that is complete
// first wins, as generation would stop there (ties: the one starting first), so the result
// does not depend on how the text is split into pushes. vLLM instead takes the first in
// list order among those found in the same step; the two differ only when one step
// completes several stop strings. Matching is on bytes: in valid UTF-8 text, valid UTF-8
// stop strings never match inside a character, and the emitted text never splits one.
type StopMatcher struct {
	stops   []string
	held    string // undecided suffix: a proper prefix of some stop string
	stopped string // the stop string found, "" until then
}

// NewStopMatcher returns a matcher for stops. Empty strings are ignored (they would match
// at once; vLLM rejects them during request validation).
func NewStopMatcher(stops []string) *StopMatcher {
	m := &StopMatcher{}
	for _, s := range stops {
		if s != "" {
			m.stops = append(m.stops, s)
		}
	}
	return m
}

// Push appends newly detokenized text. It returns the text that is now safe to emit and
// whether a stop string has been hit; once it has, Push returns "" and true.
func (m *StopMatcher) Push(text string) (emit string, stopped bool) {
	if m.stopped != "" {
		return "", true
	}
	buf := m.held + text
	if at, stop := m.earliest(buf); stop != "" {
		m.held, m.stopped = "", stop
		return buf[:at], true
	}
	keep := m.partialSuffix(buf)
	m.held = buf[len(buf)-keep:]
	return buf[:len(buf)-keep], false
}

// Flush returns the held-back text at the end of generation ("" after a stop).
func (m *StopMatcher) Flush() string {
	h := m.held
	m.held = ""
	return h
}

// Stop returns the stop string that ended generation, or "" (vLLM's stop_reason).
func (m *StopMatcher) Stop() string { return m.stopped }

// earliest returns where the stop string that ends first in buf starts, and that string
// (the longest one when several end at the same byte). The first occurrence of each stop
// string is also its earliest-ending one.
func (m *StopMatcher) earliest(buf string) (int, string) {
	end, at, found := len(buf)+1, 0, ""
	for _, s := range m.stops {
		i := strings.Index(buf, s)
		if i < 0 {
			continue
		}
		if e := i + len(s); e < end || (e == end && i < at) {
			end, at, found = e, i, s
		}
	}
	return at, found
}

// partialSuffix returns the length of the longest suffix of buf that is a proper prefix of
// a stop string. Earlier text cannot start a stop string any more: it has been searched.
func (m *StopMatcher) partialSuffix(buf string) int {
	longest := 0
	for _, s := range m.stops {
		for n := min(len(s)-1, len(buf)); n > longest; n-- {
			if strings.HasSuffix(buf, s[:n]) {
				longest = n
				break
			}
		}
	}
	return longest
}
