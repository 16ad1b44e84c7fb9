// Tests of the C API: the structure layout, byte-for-byte agreement of the C
// compiler's structures with the Go encoder, the header after another Win32
// compatibility layer, and the C library, a program written from Microsoft's
// documentation (as C and C++) and the wnvwatch example against a live
// notify.Serve.
package capi_test

import (
	"bufio"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/wnv/wnv/notify"
	"github.com/wnv/wnv/packet"
)

var (
	buildOnce sync.Once
	buildDir  string
	buildErr  error
)

// build compiles the library, the example and the C test programs once.
func build(t *testing.T) string {
	t.Helper()
	for _, cc := range []string{"gcc", "g++"} {
		if _, err := exec.LookPath(cc); err != nil {
			t.Skipf("needs %s: the C API is built and tested with gcc and g++ (make deps installs them)", cc)
		}
	}
	if _, err := exec.LookPath("make"); err != nil {
		t.Skip("needs make: capi/Makefile builds the C API")
	}
	buildOnce.Do(func() {
		buildDir, buildErr = os.MkdirTemp("", "wnvapi-build-")
		if buildErr != nil {
			return
		}
		args := []string{"BUILD=" + buildDir, "progs"}
		// e.g. WNVAPI_CFLAGS="-O1 -g -fsanitize=address,undefined" to run the C tests under sanitizers.
		if f := os.Getenv("WNVAPI_CFLAGS"); f != "" {
			args = append(args, "CFLAGS="+f, "LDLIBS=-pthread "+f)
		}
		out, err := exec.Command("make", args...).CombinedOutput()
		if err != nil {
			buildErr = errors.New(string(out))
		}
	})
	if buildErr != nil {
		t.Fatalf("make progs: %v", buildErr)
	}
	return buildDir
}

func TestMain(m *testing.M) {
	code := m.Run()
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

func TestLayoutMatchesSpec(t *testing.T) {
	out, err := exec.Command(filepath.Join(build(t), "layout_test")).CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "layout ok" {
		t.Fatalf("layout_test: %v\n%s", err, out)
	}
	for name, sizes := range map[string][2]int{
		"WNV_POLICY_MISMATCH_PARAM":         {notify.PolicyMismatchSize, 40},
		"WNV_REDIRECT_PARAM":                {notify.RedirectSize, 60},
		"WNV_PROVIDER_ADDRESS_CHANGE_PARAM": {notify.ProviderAddressChangeSize, 24},
		"WNV_CUSTOMER_ADDRESS_CHANGE_PARAM": {notify.CustomerAddressChangeSize, 52},
		"WNV_OBJECT_CHANGE_PARAM":           {notify.ObjectChangeSize, 56},
	} {
		if sizes[0] != sizes[1] {
			t.Errorf("Go size of %s = %d, spec %d", name, sizes[0], sizes[1])
		}
	}
}

func TestGoEncoderMatchesCLayout(t *testing.T) {
	out, err := exec.Command(filepath.Join(build(t), "dump_structs")).Output()
	if err != nil {
		t.Fatal(err)
	}
	c := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		name, hx, _ := strings.Cut(line, " ")
		c[name] = hx
	}
	ip := netip.MustParseAddr
	want := map[string][]byte{}
	b := make([]byte, notify.PolicyMismatchSize)
	notify.PutPolicyMismatch(b, &notify.PolicyMismatch{VirtualSubnetID: 5001, CA: ip("10.0.0.11"), PA: ip("198.18.0.2")})
	want["policy-mismatch-v4"] = b
	b = make([]byte, notify.PolicyMismatchSize)
	notify.PutPolicyMismatch(b, &notify.PolicyMismatch{VirtualSubnetID: 0xFFFFFE, CA: ip("fd00::11")})
	want["policy-mismatch-v6-no-pa"] = b
	b = make([]byte, notify.RedirectSize)
	notify.PutRedirect(b, &notify.Redirect{VirtualSubnetID: 5001, CA: ip("fd00::11"), PA: ip("198.18.0.2"), NewPA: ip("fd00:198:18::3")})
	want["redirect"] = b
	b = make([]byte, notify.ObjectChangeSize)
	notify.PutObjectChange(b, &notify.ObjectChange{ObjectType: notify.ProviderAddressType,
		ProviderAddress: &notify.ProviderAddressChange{PA: ip("fd00:198:18::2"), AddressState: notify.DADPreferred}})
	want["object-change-pa"] = b
	b = make([]byte, notify.ObjectChangeSize)
	notify.PutObjectChange(b, &notify.ObjectChange{ObjectType: notify.CustomerAddressType,
		CustomerAddress: &notify.CustomerAddressChange{MACAddress: packet.MAC{0x00, 0x15, 0x5d, 1, 2, 3}, CA: ip("10.0.0.12"),
			VirtualSubnetID: 5002, PA: ip("198.18.0.3"), NotificationReason: notify.CustomerAddressMoved}})
	want["object-change-ca"] = b

	if len(c) != len(want) {
		t.Fatalf("C printed %d structures, want %d: %v", len(c), len(want), c)
	}
	for name, w := range want {
		if got := hex.EncodeToString(w); got != c[name] {
			t.Errorf("%s:\n Go %s\n C  %s", name, got, c[name])
		}
	}
	// And the decoders read the C bytes back to the same values.
	raw, _ := hex.DecodeString(c["redirect"])
	r, err := notify.DecodeRedirect(raw)
	if err != nil || r[0].NewPA != ip("fd00:198:18::3") || r[0].PA != ip("198.18.0.2") {
		t.Fatalf("DecodeRedirect(C bytes) = %+v, %v", r, err)
	}
}

// serve starts a notify server on a temporary socket.
func serve(t *testing.T, hub *notify.Hub) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "notify.sock")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- notify.Serve(ctx, path, hub) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if c, err := net.Dial("unix", path); err == nil {
			// The probe is a handle too until the server sees it close; a
			// test that waits for its client's handle must not count it.
			c.Close()
			waitHandles(t, hub, 0)
			return path
		}
	}
	t.Fatal("notify server never accepted")
	return ""
}

// waitHandles waits until the hub has n open handles.
func waitHandles(t *testing.T, hub *notify.Hub, n int) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if hub.Stats().OpenHandles == n {
			return
		}
	}
	t.Fatalf("hub never had %d open handles", n)
}

// runDriven runs the C program prog against a server for hub. A line that
// has a handler in on runs it; after the handler of a "need ..." line, the
// program is told "go". It returns the program's output lines.
func runDriven(t *testing.T, prog string, hub *notify.Hub, on map[string]func()) []string {
	t.Helper()
	cmd := exec.Command(filepath.Join(build(t), prog))
	cmd.Env = append(os.Environ(), "WNV_NOTIFY_SOCKET="+serve(t, hub))
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	timer := time.AfterFunc(20*time.Second, func() { cmd.Process.Kill() })
	defer timer.Stop()

	var lines []string
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		line := sc.Text()
		lines = append(lines, line)
		if f, ok := on[line]; ok {
			f()
		}
		if strings.HasPrefix(line, "need ") {
			stdin.Write([]byte("go\n"))
		}
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("%s: %v\n%s", prog, err, strings.Join(lines, "\n"))
	}
	return lines
}

// checkLines fails t for each of want missing from the output lines.
func checkLines(t *testing.T, prog string, lines, want []string) {
	t.Helper()
	have := map[string]bool{}
	for _, l := range lines {
		have[l] = true
	}
	for _, w := range want {
		if !have[w] {
			t.Errorf("%s output lacks %q", prog, w)
		}
	}
	if t.Failed() {
		t.Logf("%s output:\n%s", prog, strings.Join(lines, "\n"))
	}
}

func TestCClientAgainstServer(t *testing.T) {
	hub := notify.NewHub(notify.Config{QueueDepth: 4})
	ip := netip.MustParseAddr
	lines := runDriven(t, "client_test", hub, map[string]func(){
		"blocking": func() {
			// Give the request time to reach the server, so it truly blocks.
			time.Sleep(50 * time.Millisecond)
			hub.PolicyMismatch(5001, ip("10.0.0.11"), ip("198.18.0.2"))
			hub.PolicyMismatch(5001, ip("fd00::11"), ip("fd00:198:18::2"))
		},
		"async posted": func() {
			hub.PolicyMismatch(5002, ip("10.0.0.13"), netip.Addr{})
			hub.Redirect(5001, ip("10.0.0.11"), ip("198.18.0.2"), ip("198.18.0.3"))
			hub.ProviderAddressChange(ip("fd00:198:18::9"), uint32(notify.DADTentative))
			hub.CustomerAddressChange(packet.MAC{0x00, 0x15, 0x5d, 0, 0, 0x11}, ip("10.0.0.11"), 5001, ip("198.18.0.2"), uint32(notify.CustomerAddressAdded))
		},
		"need 3 redirects": func() {
			for i := range 3 {
				hub.Redirect(uint32(6000+i), ip("10.0.0.11"), ip("198.18.0.2"), ip("198.18.0.3"))
			}
		},
		"need overflow": func() {
			for i := range 6 {
				hub.Redirect(uint32(7000+i), ip("10.0.0.11"), ip("198.18.0.2"), ip("198.18.0.3"))
			}
		},
	})
	checkLines(t, "client_test", lines, []string{
		"invalid ok",
		"mismatch vsid=5001 ca=10.0.0.11 pa=198.18.0.2 fam=inet/inet",
		"mismatch vsid=5001 ca=fd00::11 pa=fd00:198:18::2 fam=inet6/inet6",
		"mismatch vsid=5002 ca=10.0.0.13 pa=- fam=inet/unspec",
		"redirect vsid=5001 ca=10.0.0.11 pa=198.18.0.2 newpa=198.18.0.3",
		"pa-change pa=fd00:198:18::9 state=1",
		"ca-change mac=00:15:5d:00:00:11 ca=10.0.0.11 vsid=5001 pa=198.18.0.2 reason=0",
		"short bytes=60 pending=2",
		"drain bytes=120 pending=0",
		"overflow events=4 dropped=2",
		"named event 50",
		"cancel 995",
		"close 995 within 100ms",
		"PASS",
	})
}

// sdkEvents raises events for sdk_test and records the line it prints for
// each: addresses as it formats them, families by the platform's names.
type sdkEvents struct {
	hub  *notify.Hub
	want []string
}

func sdkAddr(a netip.Addr) string {
	if !a.IsValid() {
		return "-"
	}
	if a.Is4() {
		return a.String()
	}
	b := a.As16()
	g := make([]string, 8)
	for i := range g {
		g[i] = fmt.Sprintf("%x", uint16(b[2*i])<<8|uint16(b[2*i+1]))
	}
	return strings.Join(g, ":")
}

func sdkFamily(a netip.Addr) string {
	switch {
	case !a.IsValid():
		return "AF_UNSPEC"
	case a.Is4():
		return "AF_INET"
	}
	return "AF_INET6"
}

func (e *sdkEvents) mismatch(vsid uint32, ca, pa netip.Addr) {
	e.hub.PolicyMismatch(vsid, ca, pa)
	e.want = append(e.want, fmt.Sprintf("mismatch vsid=%d ca=%s pa=%s fam=%s/%s",
		vsid, sdkAddr(ca), sdkAddr(pa), sdkFamily(ca), sdkFamily(pa)))
}

func (e *sdkEvents) redirect(vsid uint32, ca, pa, newPA netip.Addr) {
	e.hub.Redirect(vsid, ca, pa, newPA)
	e.want = append(e.want, fmt.Sprintf("redirect vsid=%d ca=%s pa=%s newpa=%s fam=%s/%s/%s",
		vsid, sdkAddr(ca), sdkAddr(pa), sdkAddr(newPA), sdkFamily(ca), sdkFamily(pa), sdkFamily(newPA)))
}

func (e *sdkEvents) paChange(pa netip.Addr, state notify.DADState, name string) {
	e.hub.ProviderAddressChange(pa, uint32(state))
	e.want = append(e.want, fmt.Sprintf("pa-change pa=%s state=IpDadState%s fam=%s", sdkAddr(pa), name, sdkFamily(pa)))
}

func (e *sdkEvents) caChange(mac packet.MAC, ca netip.Addr, vsid uint32, pa netip.Addr, reason notify.CAReason, name string) {
	e.hub.CustomerAddressChange(mac, ca, vsid, pa, uint32(reason))
	e.want = append(e.want, fmt.Sprintf("ca-change reason=WnvCustomerAddress%s mac=%s oui=%x ei48=%x ca=%s vsid=%d pa=%s fam=%s/%s",
		name, net.HardwareAddr(mac[:]), mac[:3], mac[3:], sdkAddr(ca), vsid, sdkAddr(pa), sdkFamily(ca), sdkFamily(pa)))
}

// A program written from Microsoft's documentation, built as C and as C++,
// receives IPv4, IPv6 and mixed events of every type through blocking calls,
// a zeroed OVERLAPPED and events, cancels, and closes every kind of handle.
func TestSDKProgramAgainstServer(t *testing.T) {
	for _, prog := range []string{"sdk_test", "sdk_test_cxx"} {
		t.Run(prog, func(t *testing.T) {
			hub := notify.NewHub(notify.Config{})
			ip := netip.MustParseAddr
			mac := func(b byte) packet.MAC { return packet.MAC{0x00, 0x15, 0x5d, 0xa0, 0x0b, b} }
			e := &sdkEvents{hub: hub}
			lines := runDriven(t, prog, hub, map[string]func(){
				"need v4": func() {
					e.mismatch(5001, ip("10.0.0.11"), ip("198.18.0.2"))
					e.redirect(5001, ip("10.0.0.11"), ip("198.18.0.2"), ip("198.18.0.3"))
					e.paChange(ip("198.18.0.9"), notify.DADPreferred, "Preferred")
					e.caChange(mac(0x11), ip("10.0.0.11"), 5001, ip("198.18.0.2"), notify.CustomerAddressAdded, "Added")
				},
				"need v6": func() {
					e.mismatch(5002, ip("fd00::12"), ip("fd00:198:18::2"))
					e.redirect(5002, ip("fd00::12"), ip("fd00:198:18::2"), ip("fd00:198:18::3"))
					e.paChange(ip("fd00:198:18::9"), notify.DADTentative, "Tentative")
					e.caChange(mac(0x12), ip("fd00::12"), 5002, ip("fd00:198:18::2"), notify.CustomerAddressMoved, "Moved")
				},
				"need mixed": func() {
					e.mismatch(5003, ip("10.0.0.13"), netip.Addr{})
					e.redirect(5003, ip("fd00::13"), ip("198.18.0.2"), ip("fd00:198:18::3"))
					e.caChange(mac(0x13), ip("fd00::13"), 5003, ip("198.18.0.3"), notify.CustomerAddressDeleted, "Deleted")
				},
				"need redirect": func() {
					e.redirect(5004, ip("10.0.0.14"), ip("fd00:198:18::2"), ip("198.18.0.4"))
				},
			})
			checkLines(t, prog, lines, append(e.want,
				"blocking done", "zeroed overlapped done", "events done", "cancel done", "close done", "PASS"))
		})
	}
}

// wnvapi.h compiles after another layer's Win32 definitions, as C and C++,
// and the program links against libwnvapi; a layer whose types would change
// the structures' layout is refused at compile time, saying why.
func TestHeaderAfterAnotherWin32Layer(t *testing.T) {
	dir := build(t)
	for _, prog := range []string{"compat_test", "compat_test_cxx"} {
		cmd := exec.Command(filepath.Join(dir, prog))
		cmd.Env = append(os.Environ(), "WNV_NOTIFY_SOCKET="+filepath.Join(t.TempDir(), "none.sock"))
		out, err := cmd.CombinedOutput()
		if err != nil || !strings.HasPrefix(string(out), "compat ok") {
			t.Errorf("%s: %v\n%s", prog, err, out)
		}
	}

	const lp64Layer = `#define _WINDEF_
typedef unsigned char UCHAR, *PUCHAR;
typedef unsigned short USHORT;
typedef unsigned long ULONG, *PULONG, DWORD;
typedef void *HANDLE;
typedef struct _OVERLAPPED { ULONG Internal, InternalHigh; void *Pointer; HANDLE hEvent; } OVERLAPPED, *LPOVERLAPPED;
#define WINAPI
#include <wnvapi.h>
`
	for _, cc := range [][]string{{"gcc", "-x", "c"}, {"g++", "-x", "c++"}} {
		cmd := exec.Command(cc[0], append(cc[1:], "-fsyntax-only", "-I../include", "-")...)
		cmd.Stdin = strings.NewReader(lp64Layer)
		out, err := cmd.CombinedOutput()
		if err == nil || !strings.Contains(string(out), "wnvapi.h needs 8-, 16- and 32-bit UCHAR, USHORT and ULONG") {
			t.Errorf("%s with a 64-bit ULONG: %v, want the size assertion\n%s", cc[0], err, out)
		}
	}
}

func TestWnvwatchPrintsEvents(t *testing.T) {
	dir := build(t)
	hub := notify.NewHub(notify.Config{})
	sock := serve(t, hub)
	ip := netip.MustParseAddr

	cmd := exec.Command(filepath.Join(dir, "wnvwatch"))
	cmd.Env = append(os.Environ(), "WNV_NOTIFY_SOCKET="+sock)
	stdout, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	waitHandles(t, hub, 1)
	hub.PolicyMismatch(5001, ip("10.0.0.11"), ip("198.18.0.2"))
	hub.Redirect(5001, ip("10.0.0.11"), ip("198.18.0.2"), ip("198.18.0.3"))
	hub.ProviderAddressChange(ip("198.18.0.9"), uint32(notify.DADDuplicate))
	hub.CustomerAddressChange(packet.MAC{0x00, 0x15, 0x5d, 0, 0, 0x12}, ip("10.0.0.12"), 5001, ip("198.18.0.2"), uint32(notify.CustomerAddressDeleted))

	want := map[string]bool{
		"policy-mismatch vsid=5001 ca=10.0.0.11 pa=198.18.0.2":                                false,
		"redirect vsid=5001 ca=10.0.0.11 pa=198.18.0.2 newpa=198.18.0.3":                      false,
		"provider-address pa=198.18.0.9 state=Duplicate":                                      false,
		"customer-address deleted mac=00:15:5d:00:00:12 ca=10.0.0.12 vsid=5001 pa=198.18.0.2": false,
	}
	lines := make(chan string)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	// A bound for a machine loaded with other tests, not a timing.
	deadline := time.After(time.Minute)
	for seen := 0; seen < len(want); {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatal("wnvwatch exited early")
			}
			if _, ok := want[l]; !ok {
				t.Fatalf("unexpected line %q", l)
			}
			want[l] = true
			seen++
		case <-deadline:
			t.Fatalf("wnvwatch printed only some events: %v", want)
		}
	}
	cmd.Process.Signal(syscall.SIGINT)
	for range lines {
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("wnvwatch after SIGINT: %v", err)
	}
}
