package main

import "io"

func authCommand(args []string, stdin io.Reader, stdout, stderr io.Writer) error { return nil }
