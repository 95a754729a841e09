package update

import "syscall"

var errNoSpace = syscall.ENOSPC
