// Command wnv-probe is the lab's probe tool inside the QEMU guest: the
// responder the namespace VMs run through `wnvctl probe serve`, and the
// clients the lab runs on the guest's console to probe from it. It is built
// static and small (no cobra, no etcd) for the guest's initramfs.
//
//	wnv-probe serve -name NAME
//	wnv-probe udp [-count N] [-timeout D] [-source ADDR] ADDR...
//	wnv-probe tcp -bytes N [-timeout D] [-source ADDR] ADDR
//
// udp probes every ADDR at once, each until one of up to N probes is
// answered, and prints a probe.Answer per ADDR as a JSON line; tcp streams N
// checked bytes and prints the probe.Transfer as JSON.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/wnv/wnv/lab/probe"
)

func main() {
	if len(os.Args) < 2 {
		fail(fmt.Errorf("usage: wnv-probe serve|udp|tcp [flags]"))
	}
	ctx, cancel := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer cancel()
	fs := flag.NewFlagSet("wnv-probe "+os.Args[1], flag.ExitOnError)
	port := fs.Int("port", probe.Port, "UDP and TCP port")
	var err error
	switch os.Args[1] {
	case "serve":
		name := fs.String("name", "", "name to answer with (the VM's name)")
		fs.Parse(os.Args[2:])
		err = probe.Serve(ctx, *name, *port, slog.New(slog.NewTextHandler(os.Stderr, nil)))
	case "udp":
		count := fs.Int("count", 3, "probes per address at most, one after the other until one is answered")
		timeout := fs.Duration("timeout", 700*time.Millisecond, "wait for each probe's answer")
		source := fs.String("source", "", "source address (default: chosen by routing)")
		fs.Parse(os.Args[2:])
		err = udp(ctx, fs.Args(), *port, *count, *timeout, *source)
	case "tcp":
		n := fs.Int64("bytes", 1<<20, "bytes to send")
		timeout := fs.Duration("timeout", time.Minute, "limit for the whole transfer")
		source := fs.String("source", "", "source address (default: chosen by routing)")
		fs.Parse(os.Args[2:])
		err = tcp(ctx, fs.Args(), *port, *n, *timeout, *source)
	default:
		err = fmt.Errorf("unknown command %q: use serve, udp or tcp", os.Args[1])
	}
	if err != nil {
		fail(err)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "wnv-probe:", err)
	os.Exit(1)
}

func parseSource(s string) (netip.Addr, error) {
	if s == "" {
		return netip.Addr{}, nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return a, fmt.Errorf("-source %q is not an IP address", s)
	}
	return a, nil
}

func udp(ctx context.Context, args []string, port, count int, timeout time.Duration, source string) error {
	src, err := parseSource(source)
	if err != nil {
		return err
	}
	if len(args) == 0 {
		return fmt.Errorf("udp needs at least one address to probe")
	}
	answers := make([]probe.Answer, len(args))
	for i, s := range args {
		if answers[i].Addr, err = netip.ParseAddr(s); err != nil {
			return fmt.Errorf("%q is not an IP address", s)
		}
	}
	var wg sync.WaitGroup
	errs := make([]error, len(args))
	for i := range answers {
		wg.Go(func() {
			a := &answers[i]
			for range count {
				rs, err := probe.UDP(ctx, netip.AddrPortFrom(a.Addr, uint16(port)), probe.UDPOptions{Count: 1, Timeout: timeout, Source: src})
				if err != nil || len(rs) > 0 {
					if len(rs) > 0 {
						a.Reply = &rs[0]
					}
					errs[i] = err
					return
				}
			}
		})
	}
	wg.Wait()
	enc := json.NewEncoder(os.Stdout)
	for i, a := range answers {
		if errs[i] != nil {
			return errs[i]
		}
		enc.Encode(a)
	}
	return nil
}

func tcp(ctx context.Context, args []string, port int, n int64, timeout time.Duration, source string) error {
	src, err := parseSource(source)
	if err != nil {
		return err
	}
	if len(args) != 1 {
		return fmt.Errorf("tcp needs exactly one address")
	}
	to, err := netip.ParseAddr(args[0])
	if err != nil {
		return fmt.Errorf("%q is not an IP address", args[0])
	}
	tr, err := probe.TCP(ctx, netip.AddrPortFrom(to, uint16(port)), n, src, timeout)
	if err != nil {
		return err
	}
	return json.NewEncoder(os.Stdout).Encode(tr)
}
