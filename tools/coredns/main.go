// CoreDNS for the local stack's real node (scripts/node.sh runs it on the host, bound to the CNI bridge address).
// Built by tools/coredns/build.sh. The upstream main imports every plugin, cloud SDKs included; this one links
// only what the stack's Corefile uses, so a cold build takes a fraction of the time. The plugins' order of
// execution is still CoreDNS's own (dnsserver.Directives), so the Corefile behaves as with a stock build.
package main

import (
	"github.com/coredns/coredns/coremain"

	_ "github.com/coredns/coredns/plugin/bind"
	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/forward"
	_ "github.com/coredns/coredns/plugin/health"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/loadbalance"
	_ "github.com/coredns/coredns/plugin/log"
	_ "github.com/coredns/coredns/plugin/ready"
)

func main() {
	coremain.Run()
}
