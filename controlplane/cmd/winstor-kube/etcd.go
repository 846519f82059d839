package main

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"go.etcd.io/etcd/server/v3/embed"
)

// newEtcdCommand runs a single-member etcd embedded from
// go.etcd.io/etcd/server/v3/embed (the version k8s.io/apiserver requires), on
// loopback, until SIGTERM or SIGINT.
func newEtcdCommand() *cobra.Command {
	var (
		dataDir      string
		clientURL    string
		peerURL      string
		clientPort   int
		peerPort     int
		quotaBytes   int64
		noFsync      bool
		logLevel     string
		readyTimeout time.Duration
		stopTimeout  time.Duration
	)
	cmd := &cobra.Command{
		Use:          "etcd",
		Short:        "single-member etcd on loopback (go.etcd.io/etcd/server/v3/embed)",
		SilenceUsage: true,
		Args:         cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if dataDir == "" {
				return errors.New("--data-dir is required")
			}
			if clientPort != 0 {
				clientURL = fmt.Sprintf("http://127.0.0.1:%d", clientPort)
			}
			if peerPort != 0 {
				peerURL = fmt.Sprintf("http://127.0.0.1:%d", peerPort)
			}
			curl, err := loopbackURL("--listen-client-urls", clientURL)
			if err != nil {
				return err
			}
			purl, err := loopbackURL("--listen-peer-urls", peerURL)
			if err != nil {
				return err
			}
			cfg := embed.NewConfig()
			cfg.Name = "winstor"
			cfg.Dir = dataDir
			cfg.ListenClientUrls = []url.URL{*curl}
			cfg.AdvertiseClientUrls = []url.URL{*curl}
			cfg.ListenPeerUrls = []url.URL{*purl}
			cfg.AdvertisePeerUrls = []url.URL{*purl}
			cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
			cfg.QuotaBackendBytes = quotaBytes
			cfg.UnsafeNoFsync = noFsync
			cfg.LogLevel = logLevel
			// NewConfig leaves it 0, which logs every request as expensive.
			cfg.WarningUnaryRequestDuration = embed.DefaultWarningUnaryRequestDuration
			cfg.AutoCompactionMode = "periodic"
			cfg.AutoCompactionRetention = "5m"

			e, err := embed.StartEtcd(cfg)
			if err != nil {
				return fmt.Errorf("starting etcd: %w", err)
			}
			// Etcd.Close panics when called twice.
			var closeOnce sync.Once
			closeEtcd := func() { closeOnce.Do(e.Close) }

			sigs := make(chan os.Signal, 1)
			signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
			defer signal.Stop(sigs)

			select {
			case <-e.Server.ReadyNotify():
				fmt.Fprintf(os.Stderr, "etcd ready, serving clients on %s\n", curl.String())
			case <-time.After(readyTimeout):
				closeEtcd()
				return fmt.Errorf("etcd not ready after %s", readyTimeout)
			case sig := <-sigs:
				fmt.Fprintf(os.Stderr, "etcd: %s before ready, stopping\n", sig)
				closeEtcd()
				return nil
			}
			select {
			case sig := <-sigs:
				fmt.Fprintf(os.Stderr, "etcd: %s, stopping\n", sig)
				done := make(chan struct{})
				go func() { closeEtcd(); close(done) }()
				select {
				case <-done:
					return nil
				case <-time.After(stopTimeout):
					// Clients (the API server's watches) can hold a graceful stop open.
					fmt.Fprintf(os.Stderr, "etcd: not stopped within %s, exiting\n", stopTimeout)
					os.Exit(1)
				}
			case err := <-e.Err():
				closeEtcd()
				return fmt.Errorf("etcd: %w", err)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&dataDir, "data-dir", "", "directory for etcd's data (required)")
	f.StringVar(&clientURL, "listen-client-urls", "http://127.0.0.1:2379", "one loopback http URL to serve clients on")
	f.StringVar(&peerURL, "listen-peer-urls", "http://127.0.0.1:2380", "one loopback http URL for the (unused) peer port")
	f.IntVar(&clientPort, "port", 0, "client port on 127.0.0.1 (overrides --listen-client-urls)")
	f.IntVar(&peerPort, "peer-port", 0, "peer port on 127.0.0.1 (overrides --listen-peer-urls)")
	f.Int64Var(&quotaBytes, "quota-backend-bytes", 0, "backend quota in bytes (0: etcd's default)")
	f.BoolVar(&noFsync, "unsafe-no-fsync", false, "do not fsync (test clusters only: faster, loses data on a crash)")
	f.StringVar(&logLevel, "log-level", "warn", "debug, info, warn, error")
	f.DurationVar(&readyTimeout, "ready-timeout", 60*time.Second, "give up when not ready within this")
	f.DurationVar(&stopTimeout, "stop-timeout", 10*time.Second, "on SIGTERM, exit anyway after this")
	return cmd
}

func loopbackURL(flag, raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", flag, err)
	}
	if u.Scheme != "http" {
		return nil, fmt.Errorf("%s: only http:// is supported, got %q", flag, raw)
	}
	switch u.Hostname() {
	case "127.0.0.1", "localhost", "::1":
	default:
		return nil, fmt.Errorf("%s: loopback only, got %q", flag, raw)
	}
	return u, nil
}
