package lab

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// netnsDir is where iproute2 keeps named namespaces; netns.NewNamed uses it too.
const netnsDir = "/run/netns"

// InNamespace runs fn on an OS thread switched into the named network
// namespace. Sockets fn opens stay in that namespace after fn returns.
func InNamespace(name string, fn func() error) error {
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("get current network namespace: %w", err)
	}
	defer orig.Close()
	target, err := netns.GetFromName(name)
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("open network namespace %s: %w", name, err)
	}
	defer target.Close()
	if err := netns.Set(target); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("enter network namespace %s: %w", name, err)
	}
	ferr := fn()
	if err := netns.Set(orig); err != nil {
		// Leave the thread locked: the goroutine's exit then retires it
		// instead of returning a thread in the wrong namespace to the pool.
		return fmt.Errorf("return from network namespace %s: %w", name, err)
	}
	runtime.UnlockOSThread()
	return ferr
}

// createNamespace makes a named namespace with its loopback up and returns a
// netlink handle that operates inside it.
func createNamespace(name string) (*netlink.Handle, error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		return nil, fmt.Errorf("get current network namespace: %w", err)
	}
	defer orig.Close()
	ns, err := netns.NewNamed(name) // also switches this thread into it
	if err != nil {
		netns.Set(orig)
		return nil, fmt.Errorf("create network namespace %s: %w", name, err)
	}
	defer ns.Close()
	if err := netns.Set(orig); err != nil {
		panic(fmt.Sprintf("cannot return to the original network namespace: %v", err))
	}
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		return nil, fmt.Errorf("netlink in namespace %s: %w", name, err)
	}
	lo, err := h.LinkByName("lo")
	if err == nil {
		err = h.LinkSetUp(lo)
	}
	if err != nil {
		h.Close()
		return nil, fmt.Errorf("bring up lo in %s: %w", name, err)
	}
	return h, nil
}

// handleAt opens a netlink handle inside an existing named namespace.
func handleAt(name string) (*netlink.Handle, error) {
	ns, err := netns.GetFromName(name)
	if err != nil {
		return nil, fmt.Errorf("open network namespace %s: %w", name, err)
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		return nil, fmt.Errorf("netlink in namespace %s: %w", name, err)
	}
	return h, nil
}

// namespaceExists reports whether a named namespace is mounted.
func namespaceExists(name string) bool {
	_, err := os.Stat(filepath.Join(netnsDir, name))
	return err == nil
}

// namespacesWithPrefix lists the named namespaces whose names start with prefix.
func namespacesWithPrefix(prefix string) []string {
	ents, _ := os.ReadDir(netnsDir)
	var out []string
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), prefix) {
			out = append(out, e.Name())
		}
	}
	return out
}

// pidsInNamespace returns the processes whose network namespace is the named
// one. Deleting a namespace only unmounts its name; these keep it alive.
func pidsInNamespace(name string) []int {
	var want syscall.Stat_t
	if err := syscall.Stat(filepath.Join(netnsDir, name), &want); err != nil {
		return nil
	}
	ents, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range ents {
		var pid int
		if _, err := fmt.Sscanf(e.Name(), "%d", &pid); err != nil || pid == os.Getpid() {
			continue
		}
		var st syscall.Stat_t
		if syscall.Stat(fmt.Sprintf("/proc/%d/ns/net", pid), &st) == nil && st.Dev == want.Dev && st.Ino == want.Ino {
			pids = append(pids, pid)
		}
	}
	return pids
}

// deleteNamespace stops what still runs in the namespace and removes its name.
func deleteNamespace(name string) error {
	for _, pid := range pidsInNamespace(name) {
		stopProcess(pid, 2*time.Second)
	}
	if err := netns.DeleteNamed(name); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("delete network namespace %s: %w", name, err)
	}
	return nil
}

// setSysctl writes a /proc/sys/net value inside a namespace (that subtree
// shows the namespace of the thread that opens it).
func setSysctl(ns, key, value string) error {
	return InNamespace(ns, func() error {
		p := filepath.Join("/proc/sys", strings.ReplaceAll(key, ".", "/"))
		if err := os.WriteFile(p, []byte(value), 0o644); err != nil {
			return fmt.Errorf("set %s=%s in %s: %w", key, value, ns, err)
		}
		return nil
	})
}

// waitLink waits until a link appears in the namespace of h.
func waitLink(h *netlink.Handle, name string, timeout time.Duration) (netlink.Link, error) {
	deadline := time.Now().Add(timeout)
	for {
		l, err := h.LinkByName(name)
		if err == nil {
			return l, nil
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("interface %s did not appear within %v: %w", name, timeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// stopProcess sends SIGTERM, waits up to grace for the process to go, then
// sends SIGKILL.
func stopProcess(pid int, grace time.Duration) {
	if pid <= 0 || syscall.Kill(pid, syscall.SIGTERM) != nil {
		return
	}
	deadline := time.Now().Add(grace)
	for time.Now().Before(deadline) {
		if !processAlive(pid) {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	syscall.Kill(pid, syscall.SIGKILL)
	for range 40 {
		if !processAlive(pid) {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// processAlive reports whether pid runs and is not a zombie.
func processAlive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// The state follows the parenthesised command name.
	i := strings.LastIndexByte(string(b), ')')
	return i > 0 && i+2 < len(b) && b[i+2] != 'Z' && b[i+2] != 'X'
}

// NamespaceDialer dials from inside the named network namespace, so a client
// in the root namespace can reach a server on a lab's underlay.
func NamespaceDialer(ns string) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (c net.Conn, err error) {
		err = InNamespace(ns, func() error {
			c, err = (&net.Dialer{}).DialContext(ctx, network, addr)
			return err
		})
		return c, err
	}
}
