package projector

import (
	"context"
	"errors"

	"github.com/rs/zerolog"
	"golang.org/x/sync/errgroup"
)

// Group is several projectors in one consumer group in one process. They
// share the partitions, so one decodes its batch while another waits on
// its insert: replay rebuild runs its shadow projection this way, and the
// projector benchmark measures it.
type Group struct {
	members []*Projector
}

// ErrMemberStopped is what Group.Run returns when a member's Run returned
// without an error while the group's context was still live.
var ErrMemberStopped = errors.New("a projector of the group stopped")

// NewGroup makes n projectors (at least one) with cfg, none of them a
// static member (cfg.InstanceID is ignored: the members would share it).
func NewGroup(ctx context.Context, cfg Config, n int, log zerolog.Logger) (*Group, error) {
	cfg.InstanceID = ""
	g := &Group{}
	for i := range max(n, 1) {
		p, err := New(ctx, cfg, log.With().Int("instance", i).Logger())
		if err != nil {
			g.Close()
			return nil, err
		}
		g.members = append(g.members, p)
	}
	return g, nil
}

// Run runs every member until ctx ends or one of them fails; a member
// that stops early fails the group with ErrMemberStopped, and the others
// are stopped with it.
func (g *Group) Run(ctx context.Context) error {
	eg, gctx := errgroup.WithContext(ctx)
	for _, p := range g.members {
		eg.Go(func() error {
			err := p.Run(gctx)
			if err == nil && ctx.Err() == nil {
				err = ErrMemberStopped
			}
			return err
		})
	}
	return eg.Wait()
}

// Committed is the records whose offsets the members committed.
func (g *Group) Committed() int64 {
	var n int64
	for _, p := range g.members {
		n += p.Stats().Committed.Load()
	}
	return n
}

// Close closes every member, leaving the group. Call it after Run has
// returned.
func (g *Group) Close() {
	for _, p := range g.members {
		p.Close()
	}
}
