package main

import (
	"context"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/serl-go/serl/engine/selfplay"
)

// heartbeatEvery is how long a phase may go without a line before the reporter says it is still
// working: long enough not to flood a log, short enough that a stalled-looking run is not guessed dead.
const heartbeatEvery = 30 * time.Second

// reporter writes a command's progress to a terminal or a plain log. On a terminal a phase's status is
// one line rewritten in place; in a log every status is its own line. Whatever the output, a phase that
// prints nothing for a heartbeat interval gets a line saying that it is still working, how long it has
// run and its last status, so every phase of a long run stays visible.
type reporter struct {
	mu      sync.Mutex
	w       io.Writer
	tty     bool
	now     func() time.Time
	every   time.Duration
	phase   string        // what is running ("" between phases)
	status  string        // its last status
	live    func() string // when set, the phase's current status for the heartbeat (read at each beat)
	since   time.Time     // when the phase began
	last    time.Time     // when anything was last written
	partial bool          // a status line without its newline is showing (terminal)
}

func newReporter(w io.Writer, tty bool) *reporter {
	r := &reporter{w: w, tty: tty, now: time.Now, every: heartbeatEvery}
	r.last = r.now()
	return r
}

// Start runs the heartbeat until the returned stop is called.
func (r *reporter) Start() (stop func()) {
	t := time.NewTicker(r.every / 3)
	done := make(chan struct{})
	go func() {
		for {
			select {
			case <-t.C:
				r.beat()
			case <-done:
				return
			}
		}
	}()
	return func() { t.Stop(); close(done) }
}

// Phase begins a phase (its first status is its name); the returned end restores the phase that ran
// before, so a nested phase (an evaluation inside training) hands back to it.
func (r *reporter) Phase(format string, a ...any) (end func()) {
	r.mu.Lock()
	defer r.mu.Unlock()
	phase, status, since, live := r.phase, r.status, r.since, r.live
	r.phase = fmt.Sprintf(format, a...)
	r.status, r.since, r.live = r.phase, r.now(), nil
	r.write(r.phase, false)
	return func() {
		r.mu.Lock()
		defer r.mu.Unlock()
		r.phase, r.status, r.since, r.live = phase, status, since, live
		r.endLine()
		if r.phase != "" {
			r.write(r.status, false)
		}
	}
}

// Idle ends every phase: nothing runs that the heartbeat should speak for.
func (r *reporter) Idle() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.phase, r.status, r.live = "", "", nil
	r.endLine()
}

// endLine finishes a status line left open on a terminal.
func (r *reporter) endLine() {
	if r.partial {
		fmt.Fprintln(r.w)
		r.partial = false
	}
}

// Status updates the current phase's progress.
func (r *reporter) Status(format string, a ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.status = fmt.Sprintf(format, a...)
	r.write(r.status, false)
}

// Line writes a line that stays (a training step's metrics, a result).
func (r *reporter) Line(format string, a ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.write(fmt.Sprintf(format, a...), true)
}

// Live sets a function the heartbeat asks for the phase's current status (e.g. tokens generated so
// far), for work that reports nothing itself until it ends.
func (r *reporter) Live(f func() string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.live = f
}

// beat writes the heartbeat when a phase has been silent for the interval.
func (r *reporter) beat() {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.now()
	if r.phase == "" || now.Sub(r.last) < r.every {
		return
	}
	status := r.status
	if r.live != nil {
		status = r.live()
	}
	r.write(fmt.Sprintf("%s — still working, %s so far", status, now.Sub(r.since).Round(time.Second)), false)
}

// write prints s as a status (rewritten in place on a terminal) or as a permanent line.
func (r *reporter) write(s string, permanent bool) {
	switch {
	case !r.tty && permanent:
		fmt.Fprintln(r.w, s)
	case !r.tty:
		fmt.Fprintf(r.w, "serl: %s\n", s)
	case permanent:
		if r.partial {
			fmt.Fprint(r.w, "\r\x1b[K")
		}
		fmt.Fprintln(r.w, s)
		r.partial = false
	default:
		fmt.Fprintf(r.w, "\r\x1b[Kserl: %s", s)
		r.partial = true
	}
	r.last = r.now()
}

type reporterKey struct{}

// withReporter carries the reporter to callbacks that only receive a context (serl train's evaluation).
func withReporter(ctx context.Context, r *reporter) context.Context {
	return context.WithValue(ctx, reporterKey{}, r)
}

func reporterFrom(ctx context.Context) *reporter {
	r, _ := ctx.Value(reporterKey{}).(*reporter)
	return r
}

// stepLine is serl train's line for a training step. The KL to the reference starts near 1e-5, so it
// is printed with significant digits rather than a fixed number of decimals.
func stepLine(m selfplay.StepMetrics, total int, elapsed, left time.Duration) string {
	return fmt.Sprintf("step %d/%d  reward %.3f  share %.3f  kept %d dropped %d  accepted %d/%d  loss %.4f  kl %.3g  lr %.2e  %.0f tok/s  gen %.0fs rew %.1fs train %.0fs  [%s, ~%s left]",
		m.Step, total, m.RewardMean, m.ShareMean, m.GroupsKept, m.GroupsDropped, m.Accepted, m.Generated,
		m.Loss, m.KL, m.LR, m.TokensPerSec, m.GenSec, m.RewardSec, m.TrainSec, elapsed.Round(time.Second), left.Round(time.Second))
}
