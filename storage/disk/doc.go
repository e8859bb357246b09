// Package disk is the storage driver for a local filesystem: an object is a
// file under the root directory, a Move is a rename(2) followed by an fsync
// of the directory, and a Commit is an fsync, so a committed or moved object
// survives a crash of the machine.
package disk
