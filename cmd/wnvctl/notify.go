package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/wnv/wnv/notify"
)

func init() {
	notifyCmd := &cobra.Command{
		Use:     "notify",
		Short:   "Watch the host's notification API (policy mismatches, redirects, object changes)",
		Example: "  wnvctl notify watch --type policy-mismatch",
	}
	var (
		types  []string
		socket string
	)
	watch := &cobra.Command{
		Use:   "watch",
		Short: "Stream notifications as they arrive, one per line",
		Long: `Stream notifications from wnvd's notification API, one line per event
(-o json: one JSON object per line; -o yaml: one YAML document each). One request per type is kept in flight.
Dropped events (the handle's queue overflowed) are reported on stderr: the
consumer must then resync the full policy.`,
		Example: "  wnvctl notify watch\n  wnvctl notify watch --type policy-mismatch,redirect -o json",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var want []notify.NotificationType
			for _, s := range types {
				t, err := notify.ParseNotificationType(s)
				if err != nil {
					return fmt.Errorf("--type: %w", err)
				}
				want = append(want, t)
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return watchNotifications(ctx, socket, want)
		},
	}
	watch.Flags().StringSliceVar(&types, "type", nil, "notification types to watch: policy-mismatch, redirect, object-change (default all; repeatable or comma-separated)")
	watch.Flags().StringVar(&socket, "notify-socket", notify.SocketPath(), "notification API socket (env WNV_NOTIFY_SOCKET)")
	notifyCmd.AddCommand(watch)
	rootCmd.AddCommand(notifyCmd)
}

func watchNotifications(ctx context.Context, socket string, types []notify.NotificationType) error {
	h, err := notify.Open(socket)
	if err != nil {
		return err
	}
	defer h.Close()
	for ev, err := range h.Events(ctx, types...) {
		var overflow *notify.OverflowError
		switch {
		case errors.As(err, &overflow):
			fmt.Fprintln(os.Stderr, "wnvctl:", overflow)
			continue
		case errors.Is(err, context.Canceled) && ctx.Err() != nil:
			return nil
		case errors.Is(err, notify.ErrOperationAborted):
			return fmt.Errorf("the notification server at %s closed the handle", socket)
		case err != nil:
			return err
		}
		if structured() {
			if err := encode(os.Stdout, ev, true); err != nil {
				return err
			}
		} else if _, err := fmt.Println(ev); err != nil {
			return err
		}
	}
	return nil
}
