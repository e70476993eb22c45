package main

import (
	"fmt"
	"runtime"
	"runtime/debug"
)

// buildVersion is set at link time: -ldflags "-X main.buildVersion=1.2.3".
var buildVersion = ""

// version names this build: the link-time version, else the module
// version or VCS revision Go recorded, else "devel".
func version() string {
	if buildVersion != "" {
		return buildVersion
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		if v := bi.Main.Version; v != "" && v != "(devel)" {
			return v
		}
		rev, modified := "", false
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.modified":
				modified = s.Value == "true"
			}
		}
		if len(rev) > 12 {
			rev = rev[:12]
		}
		if rev != "" {
			if modified {
				rev += "-dirty"
			}
			return "devel-" + rev
		}
	}
	return "devel"
}

const versionSummary = "print the version of postoffice"

func runVersion(c *call) error {
	fmt.Fprintf(c.stdout, "postoffice %s (%s, %s/%s)\n", version(), runtime.Version(), runtime.GOOS, runtime.GOARCH)
	return nil
}
