// Command winstor-kubelet-stream plays the kubelet's HTTPS streaming and read
// endpoints for fake nodes, so that the real kube-apiserver's pods/exec and
// pods/log work against nodes that are not machines.
//
// It runs nothing itself. For exec it asks a backend (the Python node agent):
//
//	POST {backend}/exec {"namespace","pod","container","command":[...],"stdin":"<base64>"|null,"tty":bool}
//	  -> {"stdout":"<base64>","stderr":"<base64>","exit_code":N}
//
// and for logs it relays GET {backend}/logs?namespace=..&pod=..&container=..
// plus the kubelet's own query (follow, tailLines, timestamps, ...).
//
// The streams are served by the upstream kubelet library
// (k8s.io/kubelet/pkg/cri/streaming/remotecommand), so SPDY and websocket,
// the protocol versions and the exit-code status are exactly a kubelet's.
// One process serves every fake node: the request path names the pod.
package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"k8s.io/apimachinery/pkg/types"
	remotecommandconsts "k8s.io/apimachinery/pkg/util/remotecommand"
	"k8s.io/client-go/tools/remotecommand"
	remotecommandserver "k8s.io/kubelet/pkg/cri/streaming/remotecommand"
	utilexec "k8s.io/utils/exec"
)

// As the kubelet's streaming server (k8s.io/kubelet/pkg/cri/streaming.DefaultConfig).
const (
	streamIdleTimeout     = 4 * time.Hour
	streamCreationTimeout = remotecommandconsts.DefaultStreamCreationTimeout
)

type backend struct {
	base   *url.URL
	client *http.Client
}

type execRequest struct {
	Namespace string   `json:"namespace"`
	Pod       string   `json:"pod"`
	Container string   `json:"container"`
	Command   []string `json:"command"`
	Stdin     *string  `json:"stdin"`
	TTY       bool     `json:"tty"`
}

type execResponse struct {
	Stdout   string `json:"stdout"`
	Stderr   string `json:"stderr"`
	ExitCode int    `json:"exit_code"`
}

func (b *backend) exec(ctx context.Context, req execRequest) (*execResponse, error) {
	body, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, b.base.JoinPath("exec").String(), bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	hreq.Header.Set("Content-Type", "application/json")
	resp, err := b.client.Do(hreq)
	if err != nil {
		return nil, fmt.Errorf("backend exec: %w", err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("backend exec: reading answer: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("backend exec: %s: %s", resp.Status, strings.TrimSpace(string(data)))
	}
	var out execResponse
	if err := json.Unmarshal(data, &out); err != nil {
		return nil, fmt.Errorf("backend exec: bad answer: %w", err)
	}
	return &out, nil
}

// executor adapts the backend to the kubelet library's Executor. The pod's
// namespace and name travel in the name argument as "namespace/name".
type executor struct {
	backend   *backend
	stdinIdle time.Duration
}

// readStdin collects stdin until EOF, or until it has been quiet for idle: the
// backend runs a command to completion, so it needs stdin whole, but a client may
// open stdin and never close it (the websocket protocols before v5 cannot
// half-close), where a real process that does not read stdin would still exit.
func readStdin(ctx context.Context, in io.Reader, idle time.Duration) ([]byte, error) {
	type chunk struct {
		data []byte
		err  error
	}
	chunks := make(chan chunk, 1)
	go func() {
		for {
			buf := make([]byte, 32*1024)
			n, err := in.Read(buf)
			chunks <- chunk{buf[:n], err}
			if err != nil {
				return
			}
		}
	}()
	var data []byte
	timer := time.NewTimer(idle)
	defer timer.Stop()
	for {
		select {
		case c := <-chunks:
			data = append(data, c.data...)
			if errors.Is(c.err, io.EOF) {
				return data, nil
			}
			if c.err != nil {
				return data, c.err
			}
			if !timer.Stop() {
				<-timer.C
			}
			timer.Reset(idle)
		case <-timer.C:
			return data, nil
		case <-ctx.Done():
			return data, ctx.Err()
		}
	}
}

func (e executor) ExecInContainer(ctx context.Context, name string, _ types.UID, container string, cmd []string, in io.Reader, out, errw io.WriteCloser, tty bool, _ <-chan remotecommand.TerminalSize, _ time.Duration) error {
	namespace, pod, _ := strings.Cut(name, "/")
	req := execRequest{Namespace: namespace, Pod: pod, Container: container, Command: cmd, TTY: tty}
	if in != nil {
		data, err := readStdin(ctx, in, e.stdinIdle)
		if err != nil {
			return fmt.Errorf("reading stdin: %w", err)
		}
		s := base64.StdEncoding.EncodeToString(data)
		req.Stdin = &s
	}
	resp, err := e.backend.exec(ctx, req)
	if err != nil {
		return err
	}
	if err := writeB64(out, resp.Stdout); err != nil {
		return fmt.Errorf("stdout: %w", err)
	}
	// With a TTY there is no stderr stream: a terminal mixes them.
	stderr := errw
	if stderr == nil {
		stderr = out
	}
	if err := writeB64(stderr, resp.Stderr); err != nil {
		return fmt.Errorf("stderr: %w", err)
	}
	if resp.ExitCode != 0 {
		return utilexec.CodeExitError{
			Err:  fmt.Errorf("command terminated with exit code %d", resp.ExitCode),
			Code: resp.ExitCode,
		}
	}
	return nil
}

func writeB64(w io.Writer, s string) error {
	if w == nil || s == "" {
		return nil
	}
	data, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return fmt.Errorf("bad base64 from backend: %w", err)
	}
	_, err = w.Write(data)
	return err
}

type server struct {
	backend   *backend
	stdinIdle time.Duration
}

// podPath splits /{prefix}/{ns}/{pod}/{container} or, as the kubelet also
// accepts, /{prefix}/{ns}/{pod}/{uid}/{container}.
func podPath(rest string) (namespace, pod, container string, ok bool) {
	parts := strings.Split(strings.Trim(rest, "/"), "/")
	switch len(parts) {
	case 3:
		return parts[0], parts[1], parts[2], parts[0] != "" && parts[1] != "" && parts[2] != ""
	case 4:
		return parts[0], parts[1], parts[3], parts[0] != "" && parts[1] != "" && parts[3] != ""
	}
	return "", "", "", false
}

func (s *server) serveExec(w http.ResponseWriter, r *http.Request) {
	namespace, pod, container, ok := podPath(strings.TrimPrefix(r.URL.Path, "/exec/"))
	if !ok {
		http.NotFound(w, r)
		return
	}
	cmd := r.URL.Query()["command"]
	if len(cmd) == 0 {
		http.Error(w, "missing command", http.StatusBadRequest)
		return
	}
	opts, err := remotecommandserver.NewOptions(r)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	log.Printf("exec %s/%s/%s %q stdin=%t tty=%t", namespace, pod, container, cmd, opts.Stdin, opts.TTY)
	remotecommandserver.ServeExec(w, r, executor{s.backend, s.stdinIdle}, namespace+"/"+pod, "", container, cmd, opts,
		streamIdleTimeout, streamCreationTimeout, remotecommandconsts.SupportedStreamingProtocols)
}

// serveRun is the kubelet's /run: the command's combined output as the body.
func (s *server) serveRun(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		http.Error(w, "POST only", http.StatusMethodNotAllowed)
		return
	}
	namespace, pod, container, ok := podPath(strings.TrimPrefix(r.URL.Path, "/run/"))
	if !ok {
		http.NotFound(w, r)
		return
	}
	cmd := strings.Fields(r.URL.Query().Get("cmd"))
	if len(cmd) == 0 {
		http.Error(w, "missing cmd", http.StatusBadRequest)
		return
	}
	resp, err := s.backend.exec(r.Context(), execRequest{Namespace: namespace, Pod: pod, Container: container, Command: cmd})
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	var buf bytes.Buffer
	if err := writeB64(&buf, resp.Stdout); err == nil {
		err = writeB64(&buf, resp.Stderr)
	}
	w.Header().Set("Content-Type", "text/plain")
	_, _ = w.Write(buf.Bytes())
}

func (s *server) serveLogs(w http.ResponseWriter, r *http.Request) {
	namespace, pod, container, ok := podPath(strings.TrimPrefix(r.URL.Path, "/containerLogs/"))
	if !ok {
		http.NotFound(w, r)
		return
	}
	q := r.URL.Query()
	q.Set("namespace", namespace)
	q.Set("pod", pod)
	q.Set("container", container)
	if v := q.Get("tailLines"); v != "" {
		if _, err := strconv.ParseInt(v, 10, 64); err != nil {
			http.Error(w, "bad tailLines", http.StatusBadRequest)
			return
		}
	}
	u := s.backend.base.JoinPath("logs")
	u.RawQuery = q.Encode()
	breq, err := http.NewRequestWithContext(r.Context(), http.MethodGet, u.String(), nil)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	resp, err := s.backend.client.Do(breq)
	if err != nil {
		http.Error(w, "backend logs: "+err.Error(), http.StatusBadGateway)
		return
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		data, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		http.Error(w, strings.TrimSpace(string(data)), resp.StatusCode)
		return
	}
	w.Header().Set("Content-Type", "text/plain")
	w.WriteHeader(http.StatusOK)
	// Relay as it comes, flushing, so that follow=true streams.
	flusher, _ := w.(http.Flusher)
	buf := make([]byte, 32*1024)
	for {
		n, err := resp.Body.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return
			}
			if flusher != nil {
				flusher.Flush()
			}
		}
		if err != nil {
			return
		}
	}
}

// requireClientCert refuses requests without a verified client certificate
// (the API server presents its kubelet client certificate); /healthz is open,
// as a kubelet's healthz port is.
func requireClientCert(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/healthz" && (r.TLS == nil || len(r.TLS.VerifiedChains) == 0) {
			http.Error(w, "Unauthorized", http.StatusUnauthorized)
			return
		}
		next.ServeHTTP(w, r)
	})
}

func main() {
	var (
		address    = flag.String("address", "127.0.0.1", "address to listen on (loopback)")
		port       = flag.Int("port", 10250, "port to listen on (0: any free port, printed on stdout)")
		certFile   = flag.String("tls-cert-file", "", "serving certificate (PEM)")
		keyFile    = flag.String("tls-private-key-file", "", "serving key (PEM)")
		clientCA   = flag.String("client-ca-file", "", "CA that signs the clients' certificates (the API server's kubelet client certificate)")
		backendURL = flag.String("backend", "", "base URL of the node agent, e.g. http://127.0.0.1:PORT")
		timeout    = flag.Duration("backend-timeout", 10*time.Minute, "timeout of one backend call")
		stdinIdle  = flag.Duration("stdin-idle-timeout", 2*time.Second, "exec stdin counts as closed after this long without data")
	)
	flag.Parse()
	log.SetPrefix("winstor-kubelet-stream: ")
	if *certFile == "" || *keyFile == "" || *clientCA == "" || *backendURL == "" {
		log.Fatal("--tls-cert-file, --tls-private-key-file, --client-ca-file and --backend are required")
	}
	base, err := url.Parse(*backendURL)
	if err != nil || (base.Scheme != "http" && base.Scheme != "https") {
		log.Fatalf("--backend: want an http(s) URL, got %q", *backendURL)
	}
	cert, err := tls.LoadX509KeyPair(*certFile, *keyFile)
	if err != nil {
		log.Fatalf("serving certificate: %v", err)
	}
	caPEM, err := os.ReadFile(*clientCA)
	if err != nil {
		log.Fatalf("--client-ca-file: %v", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		log.Fatalf("--client-ca-file: no certificate in %s", *clientCA)
	}
	s := &server{backend: &backend{base: base, client: &http.Client{Timeout: *timeout}}, stdinIdle: *stdinIdle}
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok") })
	mux.HandleFunc("/exec/", s.serveExec)
	mux.HandleFunc("/run/", s.serveRun)
	mux.HandleFunc("/containerLogs/", s.serveLogs)

	ln, err := net.Listen("tcp", net.JoinHostPort(*address, strconv.Itoa(*port)))
	if err != nil {
		log.Fatal(err)
	}
	// The chosen port, for a launcher that asked for port 0.
	fmt.Printf("listening on %s\n", ln.Addr())
	srv := &http.Server{
		Handler:           requireClientCert(mux),
		ReadHeaderTimeout: 30 * time.Second,
		TLSConfig: &tls.Config{
			Certificates: []tls.Certificate{cert},
			ClientCAs:    pool,
			ClientAuth:   tls.VerifyClientCertIfGiven,
			MinVersion:   tls.VersionTLS12,
			// SPDY upgrades need HTTP/1.1; the kubelet serves it too.
			NextProtos: []string{"http/1.1"},
		},
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		<-sigs
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	}()
	if err := srv.ServeTLS(ln, "", ""); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Fatal(err)
	}
}
