package tokenizer

import (
	"strconv"
	"strings"
	"time"
)

// strftime formats tm like Python's time.strftime in the C locale, for the
// directives chat templates use; "%-d"-style flags drop padding (glibc).
// Unknown directives are written as they are, as glibc does.
func strftime(tm time.Time, format string) string {
	var b strings.Builder
	for i := 0; i < len(format); i++ {
		c := format[i]
		if c != '%' || i+1 == len(format) {
			b.WriteByte(c)
			continue
		}
		start := i
		i++
		pad := true
		if format[i] == '-' && i+1 < len(format) {
			pad = false
			i++
		}
		if s, ok := strftimeField(tm, format[i], pad); ok {
			b.WriteString(s)
		} else {
			b.WriteString(format[start : i+1])
		}
	}
	return b.String()
}

func strftimeField(tm time.Time, verb byte, pad bool) (string, bool) {
	num := func(n, width int) string {
		s := strconv.Itoa(n)
		if pad && len(s) < width {
			s = strings.Repeat("0", width-len(s)) + s
		}
		return s
	}
	hour12 := tm.Hour() % 12
	if hour12 == 0 {
		hour12 = 12
	}
	switch verb {
	case 'a':
		return tm.Format("Mon"), true
	case 'A':
		return tm.Format("Monday"), true
	case 'b':
		return tm.Format("Jan"), true
	case 'B':
		return tm.Format("January"), true
	case 'd':
		return num(tm.Day(), 2), true
	case 'H':
		return num(tm.Hour(), 2), true
	case 'I':
		return num(hour12, 2), true
	case 'j':
		return num(tm.YearDay(), 3), true
	case 'm':
		return num(int(tm.Month()), 2), true
	case 'M':
		return num(tm.Minute(), 2), true
	case 'p':
		return tm.Format("PM"), true
	case 'S':
		return num(tm.Second(), 2), true
	case 'y':
		return num(tm.Year()%100, 2), true
	case 'Y':
		return strconv.Itoa(tm.Year()), true
	case '%':
		return "%", true
	}
	return "", false
}
