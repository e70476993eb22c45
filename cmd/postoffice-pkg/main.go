// Command postoffice-pkg builds postoffice's Debian package with nfpm (as a
// Go library: no tool to install): the binary, the systemd unit, a
// commented default configuration (a conffile), the README, and maintainer
// scripts that make the system user and give the directories their
// owners and modes. From the repository's root:
//
//	go run ./cmd/postoffice-pkg -version 1.0.0 -o dist/out
//	apt install ./dist/out/postoffice_1.0.0_amd64.deb
//	systemctl enable --now postoffice
package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/goreleaser/nfpm/v2"
	"github.com/goreleaser/nfpm/v2/deb"
	"github.com/goreleaser/nfpm/v2/files"
)

// What goes where.
const (
	binPath    = "/usr/bin/postoffice"
	unitPath   = "/usr/lib/systemd/system/postoffice.service"
	configPath = "/etc/postoffice/postoffice.toml"
	docPath    = "/usr/share/doc/postoffice/README.md"
)

type options struct {
	root       string // the repository
	out        string // directory for the .deb
	version    string
	arch       string // Debian architecture: amd64, arm64
	maintainer string
	binary     string // a built binary to package; "" builds one
}

func main() {
	var o options
	flag.StringVar(&o.out, "o", ".", "directory to write the .deb to")
	flag.StringVar(&o.version, "version", "0.0.0", "package version (Debian syntax: 1.2.3, 1.2.3~rc1)")
	flag.StringVar(&o.arch, "arch", runtime.GOARCH, "Debian architecture (amd64, arm64, ...): the binary is built for it")
	flag.StringVar(&o.maintainer, "maintainer", "postoffice developers <postoffice@example.org>", "the package's Maintainer field")
	flag.StringVar(&o.binary, "binary", "", "package this postoffice binary instead of building one")
	flag.Parse()
	if flag.NArg() > 0 {
		fmt.Fprintln(os.Stderr, "usage: go run ./cmd/postoffice-pkg [-o DIR] [-version V] [-arch ARCH] [-binary FILE]")
		os.Exit(2)
	}
	root, err := repoRoot()
	if err != nil {
		fmt.Fprintln(os.Stderr, "postoffice-pkg:", err)
		os.Exit(1)
	}
	o.root = root
	path, err := build(o)
	if err != nil {
		fmt.Fprintln(os.Stderr, "postoffice-pkg:", err)
		os.Exit(1)
	}
	fmt.Println(path)
}

// repoRoot is the directory of the go.mod above the working directory.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "dist", "postoffice.service")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("run it inside the postoffice repository (no dist/postoffice.service above here)")
		}
		dir = parent
	}
}

// build writes the package into o.out and returns its path.
func build(o options) (string, error) {
	tmp, err := os.MkdirTemp("", "postoffice-pkg")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	bin := o.binary
	if bin == "" {
		bin = filepath.Join(tmp, "postoffice")
		cmd := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w -X main.buildVersion="+o.version, "-o", bin, "./cmd/postoffice")
		cmd.Dir = o.root
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+o.arch)
		if out, err := cmd.CombinedOutput(); err != nil {
			return "", fmt.Errorf("building postoffice: %v\n%s", err, out)
		}
	}
	unit, err := packagedUnit(filepath.Join(o.root, "dist", "postoffice.service"))
	if err != nil {
		return "", err
	}
	unitFile := filepath.Join(tmp, "postoffice.service")
	if err := os.WriteFile(unitFile, unit, 0o644); err != nil {
		return "", err
	}
	dist := func(name string) string { return filepath.Join(o.root, "dist", name) }
	info := nfpm.WithDefaults(&nfpm.Info{
		Name:       "postoffice",
		Arch:       o.arch,
		Version:    o.version,
		Section:    "mail",
		Priority:   "optional",
		Maintainer: o.maintainer,
		Description: "mail server in one binary: POP3, SMTP, submission, outbound queue\n" +
			"postoffice keeps a mailbox per user that POP3 clients retrieve mail from,\n" +
			"takes mail in by SMTP (MX and submission, with STARTTLS and AUTH), delivers\n" +
			"remote mail from a durable queue, and is run from a CLI and a web console.",
		Homepage:      "https://github.com/postoffice-mail/postoffice",
		VersionSchema: "none",
		Overridables: nfpm.Overridables{
			Depends: []string{"passwd"},
			Contents: files.Contents{
				{Source: bin, Destination: binPath, FileInfo: &files.ContentFileInfo{Mode: 0o755}},
				{Source: unitFile, Destination: unitPath, FileInfo: &files.ContentFileInfo{Mode: 0o644}},
				{Destination: "/etc/postoffice", Type: files.TypeDir, FileInfo: &files.ContentFileInfo{Mode: 0o750}},
				// A conffile: dpkg keeps the administrator's changes.
				{Source: dist("postoffice.toml"), Destination: configPath, Type: files.TypeConfig, FileInfo: &files.ContentFileInfo{Mode: 0o640}},
				{Source: filepath.Join(o.root, "README.md"), Destination: docPath, FileInfo: &files.ContentFileInfo{Mode: 0o644}},
			},
			Scripts: nfpm.Scripts{
				PreInstall:  dist("deb/preinst"),
				PostInstall: dist("deb/postinst"),
				PreRemove:   dist("deb/prerm"),
				PostRemove:  dist("deb/postrm"),
			},
		},
	})
	var buf bytes.Buffer
	if err := deb.Default.Package(info, &buf); err != nil {
		return "", fmt.Errorf("packaging: %w", err)
	}
	if err := os.MkdirAll(o.out, 0o755); err != nil {
		return "", err
	}
	path := filepath.Join(o.out, fmt.Sprintf("postoffice_%s_%s.deb", o.version, o.arch))
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		return "", err
	}
	return path, nil
}

// packagedUnit is dist/postoffice.service for the package: the binary in
// /usr/bin, and the comment about installing by hand left out.
func packagedUnit(path string) ([]byte, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	text := string(data)
	i := strings.Index(text, "[Unit]")
	if i < 0 {
		return nil, fmt.Errorf("%s has no [Unit] section", path)
	}
	text = "# postoffice's systemd unit, from its Debian package. Settings: /etc/postoffice/postoffice.toml,\n" +
		"# and /var/lib/postoffice/settings.toml for those changed at run time; see " + docPath + ".\n\n" + text[i:]
	if !strings.Contains(text, "/usr/local/bin/postoffice ") {
		return nil, fmt.Errorf("%s: ExecStart no longer names /usr/local/bin/postoffice", path)
	}
	return []byte(strings.ReplaceAll(text, "/usr/local/bin/postoffice ", binPath+" ")), nil
}
