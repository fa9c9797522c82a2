package credential

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// TestStaleAnswerDuringOutageDoesNotRace holds the cache's promise through
// a database outage: a caller already known keeps being authenticated from
// its stale entry, while other lookups (those that still reach the
// database) write the cache. Run under -race, the version that read the map
// without its mutex on this path fails with a data race.
func TestStaleAnswerDuringOutageDoesNotRace(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// Nothing listens on port 1: every query fails at once, as in an outage.
	pool, err := pgxpool.New(ctx, "postgres://nobody@127.0.0.1:1/none?connect_timeout=1")
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	known := cached{cred: Credential{ID: "00000000000000aa", Tenant: "t1"}, hash: []byte{1}, found: true}
	s := &Store{kind: GatewayKeys, pool: pool, ttl: time.Nanosecond, cache: map[string]cached{known.cred.ID: known}}

	stop := make(chan struct{})
	writerDone := make(chan struct{})
	go func() { // lookups that reached the database write the cache meanwhile
		defer close(writerDone)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			s.mu.Lock()
			s.cache[fmt.Sprintf("%016x", i%64)] = cached{found: true, fetched: time.Now()}
			s.mu.Unlock()
		}
	}()
	var readers sync.WaitGroup
	errs := make(chan error, 4)
	for g := 0; g < 4; g++ {
		readers.Add(1)
		go func() {
			defer readers.Done()
			for i := 0; i < 50; i++ {
				c, err := s.lookup(ctx, known.cred.ID)
				if err != nil || !c.found || c.cred.Tenant != "t1" {
					errs <- fmt.Errorf("lookup during the outage: %+v, %v; want the stale entry of tenant t1", c, err)
					return
				}
			}
		}()
	}
	readers.Wait()
	close(stop)
	<-writerDone
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}
