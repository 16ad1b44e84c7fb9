package policyserver

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// envProbe makes the test binary a probe that reads the etcd endpoint it
// names (see TestEtcdProbe).
const envProbe = "WNV_TEST_ETCD_PROBE"

// TestEmbeddedEtcdLockedDown: the embedded member listens on nothing but a
// 0600 socket in its 0700 data dir. Run as root, its owner, a probe reads
// through it; run as another user (nobody), the same probe is refused.
func TestEmbeddedEtcdLockedDown(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to run a probe as another user")
	}
	cfg := EmbedConfig{DataDir: t.TempDir(), UnsafeNoFsync: true}
	e, err := StartEmbedded(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	if len(e.Peers) != 0 {
		t.Fatalf("a single member listens for peers on %v", e.Peers[0].Addr())
	}
	for _, c := range e.Clients {
		if c.Addr().Network() != "unix" {
			t.Fatalf("the member serves clients on %s %s", c.Addr().Network(), c.Addr())
		}
	}
	sock := strings.TrimPrefix(cfg.Endpoint(), "unix://")
	for path, want := range map[string]os.FileMode{cfg.DataDir: 0o700, sock: 0o600} {
		if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != want {
			t.Fatalf("%s: %v %v, want mode %v", path, fi.Mode(), err, want)
		}
	}

	// The probe is this test binary, copied where nobody may run it.
	dir, err := os.MkdirTemp("", "wet-probe-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	probe := filepath.Join(dir, "probe")
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	if err := copyFile(self, probe); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	run := func(cred *syscall.Credential) string {
		cmd := exec.Command(probe, "-test.run=^TestEtcdProbe$", "-test.v")
		cmd.Env = append(os.Environ(), envProbe+"="+cfg.Endpoint())
		cmd.Dir = dir
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
		out, _ := cmd.CombinedOutput()
		return string(out)
	}
	if out := run(nil); !strings.Contains(out, "probe: read ok") {
		t.Fatalf("the probe as root could not read:\n%s", out)
	}
	out := run(&syscall.Credential{Uid: 65534, Gid: 65534})
	if !strings.Contains(out, "probe: dial refused: permission denied") || !strings.Contains(out, "probe: read failed") {
		t.Fatalf("the probe as nobody:\n%s", out)
	}
}

// TestEtcdProbe is the probe of TestEmbeddedEtcdLockedDown: it dials the
// socket and reads through an etcd client, printing what happened.
func TestEtcdProbe(t *testing.T) {
	ep := os.Getenv(envProbe)
	if ep == "" {
		t.Skip("only a probe run by TestEmbeddedEtcdLockedDown")
	}
	if c, err := net.Dial("unix", strings.TrimPrefix(ep, "unix://")); err != nil {
		t.Logf("probe: dial refused: %v", errors.Unwrap(errors.Unwrap(err)))
	} else {
		c.Close()
	}
	cli, err := Connect([]string{ep}, nil)
	if err != nil {
		t.Logf("probe: read failed: %v", err)
		return
	}
	defer cli.Close()
	// The bound only ends the refused read; a permitted one answers at once.
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if _, err := cli.Get(ctx, Prefix); err != nil {
		t.Logf("probe: read failed: %v", err)
		return
	}
	t.Logf("probe: read ok")
}

func copyFile(from, to string) error {
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o755)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
