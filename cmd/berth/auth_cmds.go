package main

// The auth commands: offline tools for the files authentication reads.
// They talk to no registry, so they take none of the admin flags.

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/berthhq/berth/auth"
)

// authSubcommand is one auth command: its name, arguments and what it
// does, for the usage text, and how many arguments it takes.
type authSubcommand struct {
	name, args, about string
	nargs             int
	run               func(args []string, stdin io.Reader, stdout io.Writer) error
}

// authCommands is every auth command, in the order the usage lists them.
var authCommands = []authSubcommand{
	{"htpasswd", "USER", "print USER's htpasswd line (bcrypt); the password is the first line of stdin", 1, authHtpasswd},
	{"example-policy", "", "print a commented example of the policy file", 0, authExamplePolicy},
}

// authCommand runs `berth auth COMMAND`.
func authCommand(args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	names := make([]string, len(authCommands))
	for i, c := range authCommands {
		if len(args) > 0 && args[0] == c.name {
			rest, err := c.parse(args[1:], stderr)
			if err != nil {
				return err
			}
			return c.run(rest, stdin, stdout)
		}
		names[i] = c.name
	}
	if len(args) == 0 {
		return usagef("berth auth takes a command: %s", strings.Join(names, ", "))
	}
	return usagef("berth auth: unknown command %q (%s)", args[0], strings.Join(names, ", "))
}

// parse reads a command's arguments: no flags but --help, and exactly
// nargs others.
func (c *authSubcommand) parse(args []string, stderr io.Writer) ([]string, error) {
	use := strings.TrimSpace("berth auth " + c.name + " " + c.args)
	fs := flag.NewFlagSet("berth auth "+c.name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprintf(stderr, "Usage: %s\n\n%s.\n", use, c.about) }
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, err
		}
		return nil, &usageError{msg: err.Error(), shown: true}
	}
	if fs.NArg() != c.nargs {
		return nil, usagef("usage: %s", use)
	}
	return fs.Args(), nil
}

// authHtpasswd prints the htpasswd line of the user args name. The
// password comes from stdin so that it stays out of the shell's history
// and the process list.
func authHtpasswd(args []string, stdin io.Reader, stdout io.Writer) error {
	line, err := bufio.NewReader(stdin).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("reading the password: %w", err)
	}
	password := strings.TrimSuffix(strings.TrimSuffix(line, "\n"), "\r")
	if password == "" {
		return errors.New("no password: berth auth htpasswd reads it from the first line of stdin")
	}
	entry, err := auth.HashPassword(args[0], password)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(stdout, entry)
	return err
}

// authExamplePolicy prints auth.ExamplePolicy.
func authExamplePolicy(_ []string, _ io.Reader, stdout io.Writer) error {
	_, err := io.WriteString(stdout, auth.ExamplePolicy)
	return err
}
