//go:build !linux

package hugepage

import "errors"

func mode() string { return "" }

func disabledByGODEBUG() bool { return false }

type advisor struct{ advised [][2]uintptr }

func (*advisor) advise() error { return errors.New("huge pages are advised only on Linux") }
