package bench

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// The keep-alive client reads what net/http's server writes: small answers
// with a length, long ones chunked, errors; it sends the header it is given
// and keeps one connection for all of it.
func TestKeepAliveReadsAnswers(t *testing.T) {
	long := strings.Repeat("0123456789", 2000) // past net/http's 4 KiB buffer: chunked
	var conns atomic.Int64
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer k" || r.Method != http.MethodGet {
			http.Error(w, "no", http.StatusUnauthorized)
			return
		}
		switch r.URL.Path {
		case "/short":
			fmt.Fprint(w, `{"q":"`+r.URL.Query().Get("q")+`"}`)
		case "/long":
			w.Write([]byte(long))
			w.(http.Flusher).Flush()
			w.Write([]byte("!"))
		default:
			http.NotFound(w, r)
		}
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	defer srv.Close()
	k, err := newKeepAlive(srv.URL, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer k.close()
	var buf bytes.Buffer
	for _, c := range []struct {
		path, auth string
		status     int
		body       string
	}{
		{"/short?q=a", "Bearer k", 200, `{"q":"a"}`},
		{"/long", "Bearer k", 200, long + "!"},
		{"/short?q=b", "Bearer k", 200, `{"q":"b"}`},
		{"/missing", "Bearer k", 404, "404 page not found\n"},
		{"/short?q=c", "Bearer x", 401, "no\n"},
		{"/short?q=d", "Bearer k", 200, `{"q":"d"}`},
	} {
		status, err := k.get(context.Background(), c.path, c.auth, &buf)
		if err != nil || status != c.status || buf.String() != c.body {
			t.Fatalf("GET %s: %d %v, body of %d bytes (%.40q), want %d and %.40q", c.path, status, err, buf.Len(), buf.String(), c.status, c.body)
		}
	}
	if n := conns.Load(); n != 1 {
		t.Fatalf("%d connections for six requests, want 1", n)
	}
}

// A server that closes a kept connection without saying so (idle timeout,
// restart): the request goes once more on a new connection, as net/http's
// client does for a GET; one that says Connection: close is taken at its word.
func TestKeepAliveRedialsClosedConnection(t *testing.T) {
	var accepted atomic.Int64
	ln := rawServer(t, func(c net.Conn, r *bufio.Reader, n int) {
		accepted.Add(1)
		if _, err := http.ReadRequest(r); err != nil {
			return
		}
		sayClose := n == 0
		hdr := "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n"
		if sayClose {
			hdr += "Connection: close\r\n"
		}
		c.Write([]byte(hdr + "\r\nok"))
		if sayClose {
			// Keep it open a while: a client that sent its next request on
			// it anyway would wait for an answer that never comes.
			time.Sleep(2 * time.Second)
		}
		// Then close, without a word unless sayClose.
	})
	k, err := newKeepAlive("http://"+ln.Addr().String(), 500*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	defer k.close()
	var buf bytes.Buffer
	for i := range 3 {
		if status, err := k.get(context.Background(), "/x", "Bearer k", &buf); err != nil || status != 200 || buf.String() != "ok" {
			t.Fatalf("request %d: %d %v %q", i, status, err, buf.String())
		}
		time.Sleep(20 * time.Millisecond) // let the server's close arrive
	}
	// Request 1 took connection 1 (closed, said so); request 2 a second
	// (closed silently); request 3 failed on it and went again on a third.
	if n := accepted.Load(); n != 3 {
		t.Fatalf("%d connections accepted, want 3", n)
	}

	// A connection refused is an error, not retried forever.
	ln.Close()
	k.close()
	if _, err := k.get(context.Background(), "/x", "Bearer k", &buf); err == nil {
		t.Fatal("a GET to a closed port succeeded")
	}
	if _, err := newKeepAlive("https://example.com", time.Second); err == nil {
		t.Fatal("https accepted")
	}
}

// An answer cut off midway is an error, and the request is not sent again:
// only a request no byte of answer came back for is.
func TestKeepAliveDoesNotRepeatCutOffAnswers(t *testing.T) {
	var requests atomic.Int64
	ln := rawServer(t, func(c net.Conn, r *bufio.Reader, _ int) {
		for n := 0; ; n++ {
			if _, err := http.ReadRequest(r); err != nil {
				return
			}
			requests.Add(1)
			if n == 0 {
				c.Write([]byte("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"))
				continue
			}
			// The second answer on the connection stops short.
			c.Write([]byte("HTTP/1.1 500 Internal Server Error\r\nContent-Length: 10\r\n\r\nabc"))
			return
		}
	})
	k, err := newKeepAlive("http://"+ln.Addr().String(), 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer k.close()
	var buf bytes.Buffer
	if status, err := k.get(context.Background(), "/x", "Bearer k", &buf); err != nil || status != 200 {
		t.Fatalf("first request: %d %v", status, err)
	}
	if status, err := k.get(context.Background(), "/x", "Bearer k", &buf); err == nil {
		t.Fatalf("a cut-off answer came back as %d %q", status, buf.String())
	}
	if n := requests.Load(); n != 2 {
		t.Fatalf("the server saw %d requests, want 2 (the cut-off one not sent again)", n)
	}
}

// rawServer accepts connections on a port of its own and runs serve on each
// (n counts them from 0), closing it after, until the listener is closed.
func rawServer(t *testing.T, serve func(c net.Conn, r *bufio.Reader, n int)) net.Listener {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for n := 0; ; n++ {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func(n int) {
				defer c.Close()
				serve(c, bufio.NewReader(c), n)
			}(n)
		}
	}()
	return ln
}
