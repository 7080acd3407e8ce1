// The pod sandbox ("pause") image's only program, for the real node's containerd (sandbox_image).
// Built by tools/pause/build.sh, which also packs it FROM scratch and pushes it to the local registry: nothing
// can be pulled from registry.k8s.io here. Like the upstream pause: it holds the pod's namespaces open, reaps
// the zombies it inherits as PID 1 (shareProcessNamespace), and exits 0 on SIGINT/SIGTERM.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGCHLD)
	for s := range sigs {
		if s != syscall.SIGCHLD {
			os.Exit(0)
		}
		for {
			var ws syscall.WaitStatus
			pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
			if pid <= 0 || err != nil {
				break
			}
		}
	}
}
