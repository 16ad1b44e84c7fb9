package provider

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/wnv/wnv/bounded"
)

// DefaultSocket is where wnvd serves the provider API.
const DefaultSocket = "/run/wnv/wnvd.sock"

// Serve serves h on a Unix socket at socketPath with the limits of
// bounded.Default until ctx is done, then shuts down gracefully and removes
// the socket. It creates the socket's directory
// (0755) and replaces a stale socket file, but refuses to start if another
// process is listening there or the path is not a socket. The socket is 0660
// so that a group can be granted access. A cancelled ctx is a clean exit.
func Serve(ctx context.Context, socketPath string, h http.Handler) error {
	ln, err := listen(socketPath)
	if err != nil {
		return err
	}
	// We remove the socket ourselves, after shutdown, and only if it is still
	// the one we created.
	ln.SetUnlinkOnClose(false)
	created, _ := os.Stat(socketPath)
	defer func() {
		if now, err := os.Stat(socketPath); err == nil && created != nil && os.SameFile(created, now) {
			os.Remove(socketPath)
		}
	}()

	lim := bounded.Default()
	// Every peer of a Unix socket has the same (empty) address: cap them in all.
	lim.MaxConns, lim.MaxConnsPerIP = 256, 0
	srv := lim.Server(context.Background(), h)
	return serve(ctx, "provider API on "+socketPath, srv, func() error { return srv.Serve(lim.Listener(ln)) })
}

// serve runs srv (started by run) until ctx is done, then shuts it down
// gracefully; what names the listener in errors.
func serve(ctx context.Context, what string, srv *http.Server, run func() error) error {
	done := make(chan error, 1)
	go func() { done <- run() }()
	select {
	case err := <-done:
		return fmt.Errorf("%s stopped: %w", what, err)
	case <-ctx.Done():
	}
	shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdown); err != nil {
		srv.Close()
	}
	if err := <-done; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("%s stopped: %w", what, err)
	}
	return nil
}

func listen(socketPath string) (*net.UnixListener, error) {
	if err := os.MkdirAll(filepath.Dir(socketPath), 0o755); err != nil {
		return nil, fmt.Errorf("socket directory for %s could not be created: %w", socketPath, err)
	}
	if err := removeStale(socketPath); err != nil {
		return nil, err
	}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: socketPath, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("socket %s could not be opened: %w", socketPath, err)
	}
	if err := os.Chmod(socketPath, 0o660); err != nil {
		ln.Close()
		return nil, fmt.Errorf("socket %s could not be made 0660: %w", socketPath, err)
	}
	return ln, nil
}

// removeStale removes a socket file nobody listens on, left by a process that
// died; a live socket or a non-socket file is an error.
func removeStale(socketPath string) error {
	fi, err := os.Lstat(socketPath)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("socket path %s could not be checked: %w", socketPath, err)
	}
	if fi.Mode().Type() != fs.ModeSocket {
		return fmt.Errorf("socket path %s exists and is not a socket: remove it or choose another --socket", socketPath)
	}
	conn, err := net.DialTimeout("unix", socketPath, time.Second)
	if err == nil {
		conn.Close()
		return fmt.Errorf("socket %s is in use: another wnvd is listening there", socketPath)
	}
	if err := os.Remove(socketPath); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("stale socket %s could not be removed: %w", socketPath, err)
	}
	return nil
}
