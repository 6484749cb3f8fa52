package backoff

import (
	"context"
	"testing"
	"time"
)

func TestDelaysDoubleWithinJitterUpToMaxAndResetToMin(t *testing.T) {
	b := Backoff{Min: 100 * time.Millisecond, Max: 800 * time.Millisecond}
	for _, want := range []time.Duration{100, 200, 400, 800, 800, 800} {
		want *= time.Millisecond
		if d := b.Next(); d < want/2 || d > want {
			t.Fatalf("delay %s outside [%s, %s]", d, want/2, want)
		}
	}
	b.Reset()
	if d := b.Next(); d > 100*time.Millisecond {
		t.Errorf("after Reset the delay is %s, want at most Min", d)
	}
}

func TestWaitReturnsEarlyWhenTheContextEnds(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	b := Backoff{Min: time.Hour, Max: time.Hour}
	if b.Wait(ctx) {
		t.Error("Wait slept its delay although the context had ended")
	}
}
