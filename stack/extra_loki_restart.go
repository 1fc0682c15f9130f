package stack

import (
	"context"
	"fmt"
	"os/exec"
	"time"
)

// Restart stops the instance gracefully (SIGTERM: Loki builds its
// in-memory index into files and uploads them) and starts it again on the
// same directory and command line. Tests use it to get freshly pushed
// data into the uploaded index the compactor works on without waiting for
// Loki's 15-minute index rotation.
func (s *ExtraLoki) Restart(ctx context.Context) error {
	if _, err := s.proc.stop(time.Minute); err != nil {
		return fmt.Errorf("extra loki: stop for restart: %w", err)
	}
	cmd := exec.Command(s.args[0], s.args[1:]...)
	cmd.Dir = s.dir
	pid, err := s.proc.start(cmd)
	if err != nil {
		return err
	}
	s.pid = pid
	deadline := time.Now().Add(2 * time.Minute)
	for {
		rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		err := httpReady(rctx, s.URL+"/ready")
		cancel()
		if err == nil {
			return nil
		}
		if !alive(s.pid) || time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("extra loki did not restart (%v); log:\n%s", err, tailFile(s.proc.logPath, 30))
		}
		time.Sleep(500 * time.Millisecond)
	}
}
