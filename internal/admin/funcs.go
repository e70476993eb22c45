package admin

import (
	"fmt"
	"html/template"
	"net/url"
	"strings"
	"time"
)

var funcs = template.FuncMap{
	"time":     fmtTime,
	"ago":      ago,
	"bytes":    fmtBytes,
	"join":     strings.Join,
	"pct":      pct,
	"duration": fmtDuration,
	"path":     url.PathEscape,
	"query":    url.QueryEscape,
	"eq2":      func(a, b any) bool { return fmt.Sprint(a) == fmt.Sprint(b) },
	"add":      func(a, b int) int { return a + b },
	"urlid":    func(key string) string { return strings.ReplaceAll(key, ".", "-") },
	"plural":   plural,
	"since":    func(t time.Time) string { return fmtDuration(time.Since(t)) },
	"section":  sectionName,
}

// plural is "1 message", "2 messages".
func plural(n any, word string) string {
	s := fmt.Sprint(n)
	if s == "1" {
		return s + " " + word
	}
	return s + " " + word + "s"
}

func fmtTime(t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return t.Local().Format("2006-01-02 15:04:05")
}

// ago is a rough "how long ago" for tables.
func ago(t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	d := time.Since(t)
	if d < 0 {
		return "in " + fmtDuration(-d)
	}
	return fmtDuration(d) + " ago"
}

func fmtDuration(d time.Duration) string {
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh %dm", int(d.Hours()), int(d.Minutes())%60)
	default:
		return fmt.Sprintf("%dd %dh", int(d.Hours())/24, int(d.Hours())%24)
	}
}

func fmtBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// pct is used/total in percent, capped at 100; 0 when total is 0.
func pct(used, total int64) int {
	if total <= 0 {
		return 0
	}
	p := int(used * 100 / total)
	return min(p, 100)
}
