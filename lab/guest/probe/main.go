// Command probe is the lab's probe responder for the QEMU guest: the same
// probe.Serve the namespace VMs run through `wnvctl probe serve`, built
// static and small (no cobra, no etcd) for the guest's initramfs.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/wnv/wnv/lab/probe"
)

func main() {
	name := flag.String("name", "", "name to answer with (the VM's name)")
	port := flag.Int("port", probe.Port, "UDP and TCP port")
	flag.Parse()
	ctx, cancel := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer cancel()
	if err := probe.Serve(ctx, *name, *port, slog.New(slog.NewTextHandler(os.Stderr, nil))); err != nil {
		fmt.Fprintln(os.Stderr, "probe:", err)
		os.Exit(1)
	}
}
