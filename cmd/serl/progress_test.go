package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/serl-go/serl/engine/selfplay"
)

// fakeClock is a reporter's clock that moves only when told.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time          { return c.t }
func (c *fakeClock) advance(d time.Duration) { c.t = c.t.Add(d) }

func testReporter(tty bool) (*reporter, *bytes.Buffer, *fakeClock) {
	var b bytes.Buffer
	c := &fakeClock{t: time.Unix(1e9, 0)}
	r := newReporter(&b, tty)
	r.now = c.now
	r.last = c.now()
	return r, &b, c
}

// In a plain log every phase, status and line is its own line, and a phase silent for the heartbeat
// interval says it is still working, with its live status — again after every further interval of
// silence, and never between phases.
func TestReporterLogHeartbeat(t *testing.T) {
	r, b, c := testReporter(false)
	endTrain := r.Phase("self-play towards step %d/%d", 1, 4)
	c.advance(heartbeatEvery - time.Second)
	r.beat()
	require.Equal(t, "serl: self-play towards step 1/4\n", b.String(), "no heartbeat before the interval")
	c.advance(time.Second)
	r.beat()
	require.Contains(t, b.String(), "serl: self-play towards step 1/4 — still working, 30s so far\n")

	b.Reset()
	tokens := 0
	endEval := r.Phase("evaluation before training: %d problems", 500)
	r.Live(func() string { return "evaluation: 0/500 problems done, " + strings.Repeat("1", tokens) + " tokens" })
	tokens = 3
	c.advance(heartbeatEvery)
	r.beat()
	r.Status("evaluation: %d/%d problems", 250, 500)
	c.advance(heartbeatEvery / 2)
	r.beat() // something was said a moment ago: no heartbeat
	endEval()
	r.Line("step 1/4  reward 0.5")
	require.Equal(t, "serl: evaluation before training: 500 problems\n"+
		"serl: evaluation: 0/500 problems done, 111 tokens — still working, 30s so far\n"+
		"serl: evaluation: 250/500 problems\n"+
		"serl: self-play towards step 1/4\n"+ // the phase handed back
		"step 1/4  reward 0.5\n", b.String())

	endTrain()
	r.Idle()
	b.Reset()
	c.advance(10 * heartbeatEvery)
	r.beat()
	require.Empty(t, b.String(), "no heartbeat with nothing running")
}

// On a terminal a status rewrites one line in place; a permanent line clears it first.
func TestReporterTerminal(t *testing.T) {
	r, b, c := testReporter(true)
	end := r.Phase("evaluating: %d problems", 2)
	r.Status("evaluating: %d/%d problems", 1, 2)
	c.advance(heartbeatEvery)
	r.beat()
	end()
	r.Line("done")
	require.Equal(t, "\r\x1b[Kserl: evaluating: 2 problems"+
		"\r\x1b[Kserl: evaluating: 1/2 problems"+
		"\r\x1b[Kserl: evaluating: 1/2 problems — still working, 30s so far\n"+
		"done\n", b.String())
}

// A KL of 1e-5 shows as such, not as 0.0000.
func TestStepLineKL(t *testing.T) {
	line := stepLine(selfplay.StepMetrics{Step: 3, KL: 1.234e-5, LR: 5e-5}, 12, 90*time.Second, 4*time.Minute)
	require.Contains(t, line, "kl 1.23e-05 ")
	require.True(t, strings.HasPrefix(line, "step 3/12 "), line)
	require.True(t, strings.HasSuffix(line, "[1m30s, ~4m0s left]"), line)
}
