package main

import (
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// health asks a registry whether it is ready: the health check of a
// container image that holds no other program to ask with.
func health(args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("health", flag.ContinueOnError)
	fs.SetOutput(stderr)
	base := fs.String("url", "http://127.0.0.1:5000", "the registry's URL")
	timeout := fs.Duration("timeout", 3*time.Second, "how long to wait for the answer")
	insecure := fs.Bool("insecure", false, "do not verify the server's certificate: for https://127.0.0.1 when Berth serves TLS under a name of its own")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return &usageError{msg: err.Error(), shown: true}
	}
	if fs.NArg() > 0 {
		return usagef("berth health takes no arguments")
	}
	c := &http.Client{Timeout: *timeout}
	if *insecure {
		c.Transport = &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}
	}
	resp, err := c.Get(strings.TrimSuffix(*base, "/") + "/readyz")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<10))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("not ready: %s %s", resp.Status, strings.TrimSpace(string(body)))
	}
	return nil
}
