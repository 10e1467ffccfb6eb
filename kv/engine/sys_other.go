//go:build !linux

package engine

import "os"

// Elsewhere than Linux the page-cache hints do nothing (sys_linux.go); the
// advisor finds no /proc/self/maps to read anyway.

func startWriteOut(*os.File) {}

func adviseRandom(uintptr, uintptr) {}
