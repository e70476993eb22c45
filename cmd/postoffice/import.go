package main

import "flag"

// The import commands: mail, users and passwords moved in from another
// server. The group is one table entry in commands.go; each source is one
// entry of importCommands.

// importOpts are the options of the import commands.
type importOpts struct {
	mainCF string // import_postfix.go
	dryRun bool
}

var optDryRun option = func(fs *flag.FlagSet, o *opts) {
	fs.BoolVar(&o.imp.dryRun, "dry-run", false, "report what would be imported and change nothing")
}

// importCommands are the sources of postoffice import.
var importCommands = []*command{
	importPostfixCommand,
}

// importCommand is the group's entry in the command table.
func importCommand() *command {
	return &command{name: "import", usage: "postfix ...",
		summary: "move users and mail in from another server, keeping POP3 unique-ids and passwords", sub: importCommands}
}
