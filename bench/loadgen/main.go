// loadgen: C keep-alive connections, each sending one request at a time for D seconds, recording each
// response's status and latency; prints one JSON object: counts and latency percentiles (ms) per status
// class, and connection errors. Unlike wrk it keeps the latencies of accepted calls (2xx) apart from those of
// refused ones (429, 503), which is what an overload benchmark needs. Every figure is over the measured
// duration: a call unanswered at its end is dropped, not waited for. Standard library only.
//
//	go run bench/loadgen/main.go -addr 127.0.0.1:8080 -path /fn/hello -c 2000 -d 10s
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

type result struct {
	status int
	ms     float64
	at     float64 // when it was sent, in seconds before the end (negative)
}

// run is one load phase: the connections are opened first (`opened` counts them), then `go` is closed with
// `stop` set, and every connection sends calls until then.
type run struct {
	addr, req string
	stop      time.Time
	opened    sync.WaitGroup
	start     chan struct{}
}

func worker(r *run, out chan<- []result, errs *int64, mu *sync.Mutex) {
	var got []result
	defer func() { out <- got }()
	var conn net.Conn
	var rd *bufio.Reader
	if c, err := net.DialTimeout("tcp", r.addr, 30*time.Second); err == nil {
		conn, rd = c, bufio.NewReaderSize(c, 16384)
	}
	r.opened.Done()
	<-r.start
	addr, req, stop := r.addr, r.req, r.stop
	if conn != nil {
		conn.SetDeadline(stop)
	}
	for time.Now().Before(stop) {
		if conn == nil {
			c, err := net.DialTimeout("tcp", addr, time.Until(stop))
			if err != nil {
				if time.Now().Before(stop) {
					mu.Lock()
					*errs++
					mu.Unlock()
				}
				time.Sleep(10 * time.Millisecond)
				continue
			}
			conn, rd = c, bufio.NewReaderSize(c, 16384)
			// A call still unanswered at the end is dropped, not waited for (a refusal may be held back for
			// seconds): every figure is over the same window, the measured duration.
			conn.SetDeadline(stop)
		}
		t0 := time.Now()
		status, keep, err := roundTrip(conn, rd, req)
		if err != nil {
			if time.Now().Before(stop) {
				mu.Lock()
				*errs++
				mu.Unlock()
			}
			conn.Close()
			conn = nil
			continue
		}
		got = append(got, result{status, float64(time.Since(t0).Microseconds()) / 1000, t0.Sub(stop).Seconds()})
		if !keep {
			conn.Close()
			conn = nil
		}
	}
	if conn != nil {
		conn.Close()
	}
}

func roundTrip(conn net.Conn, rd *bufio.Reader, req string) (int, bool, error) {
	if _, err := conn.Write([]byte(req)); err != nil {
		return 0, false, err
	}
	line, err := rd.ReadString('\n')
	if err != nil {
		return 0, false, err
	}
	parts := strings.SplitN(line, " ", 3)
	if len(parts) < 2 {
		return 0, false, fmt.Errorf("bad status line %q", line)
	}
	status, _ := strconv.Atoi(parts[1])
	length, keep := 0, true
	for {
		h, err := rd.ReadString('\n')
		if err != nil {
			return 0, false, err
		}
		if h == "\r\n" {
			break
		}
		k, v, _ := strings.Cut(h, ":")
		k, v = strings.ToLower(strings.TrimSpace(k)), strings.TrimSpace(v)
		if k == "content-length" {
			length, _ = strconv.Atoi(v)
		} else if k == "connection" && strings.EqualFold(v, "close") {
			keep = false
		}
	}
	if _, err := rd.Discard(length); err != nil {
		return 0, false, err
	}
	return status, keep, nil
}

func pct(v []float64, p float64) float64 {
	if len(v) == 0 {
		return -1
	}
	k := int(p/100*float64(len(v))+0.999999) - 1
	if k < 0 {
		k = 0
	}
	if k >= len(v) {
		k = len(v) - 1
	}
	return v[k]
}

func main() {
	addr := flag.String("addr", "127.0.0.1:8080", "host:port")
	path := flag.String("path", "/", "request path")
	conns := flag.Int("c", 32, "connections")
	dur := flag.Duration("d", 10*time.Second, "duration")
	series := flag.Bool("series", false, "also print each second's count, p50 and p99 per status class to stderr")
	flag.Parse()
	req := fmt.Sprintf("GET %s HTTP/1.1\r\nHost: %s\r\n\r\n", *path, *addr)
	out := make(chan []result, *conns)
	var errs int64
	var mu sync.Mutex
	// The connections are opened before the measured window (a flood's connection storm happens once; its
	// time is reported as "connect_seconds"), then all send at once.
	r := &run{addr: *addr, req: req, start: make(chan struct{})}
	r.opened.Add(*conns)
	t0 := time.Now()
	for i := 0; i < *conns; i++ {
		go worker(r, out, &errs, &mu)
	}
	r.opened.Wait()
	connect := time.Since(t0).Seconds()
	start := time.Now()
	r.stop = start.Add(*dur)
	stop := r.stop
	close(r.start)
	byClass := map[string][]float64{}
	bySecond := map[string][]float64{}
	for i := 0; i < *conns; i++ {
		for _, r := range <-out {
			c := strconv.Itoa(r.status)
			if r.status >= 200 && r.status < 300 {
				c = "2xx"
			}
			byClass[c] = append(byClass[c], r.ms)
			if *series {
				k := fmt.Sprintf("%03d %s", int(dur.Seconds()+r.at), c)
				bySecond[k] = append(bySecond[k], r.ms)
			}
		}
	}
	secs := stop.Sub(start).Seconds()
	report := map[string]any{"seconds": secs, "connections": *conns, "errors": errs, "connect_seconds": connect}
	classes := map[string]any{}
	for c, v := range byClass {
		sort.Float64s(v)
		classes[c] = map[string]float64{"count": float64(len(v)), "per_s": float64(len(v)) / secs,
			"p50": pct(v, 50), "p90": pct(v, 90), "p99": pct(v, 99), "max": v[len(v)-1]}
	}
	report["status"] = classes
	keys := []string{}
	for k := range bySecond {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		v := bySecond[k]
		sort.Float64s(v)
		fmt.Fprintf(os.Stderr, "second %s: %d, p50 %.1f ms, p99 %.1f ms\n", k, len(v), pct(v, 50), pct(v, 99))
	}
	json.NewEncoder(os.Stdout).Encode(report)
}
