//go:build sclgatepprof

// This file is not part of sclgate. bench/pprof.sh adds it to
// cmd/sclgate at build time only (go build -overlay, -tags sclgatepprof)
// to get a bench binary that serves net/http/pprof on $SCLGATE_PPROF
// (127.0.0.1 only). The benchmark figures come from the unmodified binary.
package main

import (
	"net"
	"net/http"
	_ "net/http/pprof" // registers /debug/pprof/ on http.DefaultServeMux
	"os"
	"runtime"
	"strings"
)

func init() {
	addr := os.Getenv("SCLGATE_PPROF")
	if addr == "" || !strings.HasPrefix(addr, "127.0.0.1:") {
		return
	}
	runtime.SetBlockProfileRate(0)
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		panic("pprof overlay: " + err.Error())
	}
	go http.Serve(ln, nil)
}
