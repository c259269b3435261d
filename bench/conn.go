package bench

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// keepAlive is one worker's own HTTP/1.1 connection for GET requests, the
// way wrk and its kind drive a server: the request is written as bytes on a
// connection kept open, and the answer is read with http.ReadResponse. The
// server sees the same requests as from net/http's client; the load
// generator, which shares the machine's cores with the server, spends a
// fraction of the CPU per request (no connection pool, no per-connection
// goroutines handing each answer over through channels), so more of the
// machine is left to what is measured. It is not safe for concurrent use:
// each worker has its own.
type keepAlive struct {
	addr, host string
	prefix     string // base's own path, before each request's
	timeout    time.Duration
	conn       net.Conn
	br         *bufio.Reader
	req        []byte
}

// newKeepAlive is a connection to base's host (http only), made on first use.
func newKeepAlive(base string, timeout time.Duration) (*keepAlive, error) {
	u, err := url.Parse(base)
	if err != nil {
		return nil, err
	}
	if u.Scheme != "http" {
		return nil, fmt.Errorf("the load generator speaks plain http, not %q", u.Scheme)
	}
	addr := u.Host
	if u.Port() == "" {
		addr = net.JoinHostPort(u.Hostname(), "80")
	}
	return &keepAlive{addr: addr, host: u.Host, prefix: strings.TrimRight(u.Path, "/"), timeout: timeout}, nil
}

// another is a connection of its own to the same server, not yet made.
func (k *keepAlive) another() *keepAlive {
	return &keepAlive{addr: k.addr, host: k.host, prefix: k.prefix, timeout: k.timeout}
}

// get sends GET base's path + path (with its query) and reads the answer's body into buf
// (reset first); it returns the status. A request on a connection the
// server had closed while it sat idle is sent once more on a new one, as
// net/http's client does for a GET.
func (k *keepAlive) get(ctx context.Context, path, auth string, buf *bytes.Buffer) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	k.req = append(k.req[:0], "GET "...)
	k.req = append(k.req, k.prefix...)
	k.req = append(k.req, path...)
	k.req = append(k.req, " HTTP/1.1\r\nHost: "...)
	k.req = append(k.req, k.host...)
	k.req = append(k.req, "\r\nUser-Agent: trustloop-bench\r\nAuthorization: "...)
	k.req = append(k.req, auth...)
	k.req = append(k.req, "\r\n\r\n"...)
	for attempt := 0; ; attempt++ {
		reused := k.conn != nil
		status, answered, err := k.roundTrip(buf)
		if err == nil {
			return status, nil
		}
		k.close()
		// Only a request no byte of answer came back for goes again: an
		// answer cut off midway is an error, not a reason to ask twice.
		if !reused || answered || attempt > 0 || !retryable(err) {
			return 0, err
		}
	}
}

// roundTrip sends the request and reads its answer; answered reports whether
// any byte of an answer arrived (an error after that is not retried).
func (k *keepAlive) roundTrip(buf *bytes.Buffer) (status int, answered bool, err error) {
	if k.conn == nil {
		c, err := net.DialTimeout("tcp", k.addr, k.timeout)
		if err != nil {
			return 0, false, err
		}
		k.conn = c
		if k.br == nil {
			k.br = bufio.NewReaderSize(c, 16<<10)
		} else {
			k.br.Reset(c)
		}
	}
	if err := k.conn.SetDeadline(time.Now().Add(k.timeout)); err != nil {
		return 0, false, err
	}
	if _, err := k.conn.Write(k.req); err != nil {
		return 0, false, err
	}
	// Peek first: a connection the server had closed fails here with
	// nothing read.
	if _, err := k.br.Peek(1); err != nil {
		return 0, false, err
	}
	resp, err := http.ReadResponse(k.br, nil)
	if err != nil {
		return 0, true, err
	}
	buf.Reset()
	_, err = buf.ReadFrom(resp.Body)
	resp.Body.Close()
	if err != nil {
		return 0, true, err
	}
	if resp.Close {
		k.close() // the server said it closes: the next request dials
	}
	return resp.StatusCode, true, nil
}

func (k *keepAlive) close() {
	if k.conn != nil {
		k.conn.Close()
		k.conn = nil
	}
}

// retryable is an error of a connection the server closed before answering.
func retryable(err error) bool {
	var ne net.Error
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) ||
		(errors.As(err, &ne) && !ne.Timeout())
}
