package userkeys

import "sync"

// cache holds unwrapped keys by id and by user, at most limit of them:
// when full, about a quarter is dropped (whichever the map yields first),
// which is cheaper than tracking recency on every lookup of the hot path.
// A dropped key is read again from the store when needed.
type cache struct {
	mu    sync.RWMutex
	limit int
	ids   map[ID]*Key
	// users are the keys by tenant, then user: a lookup hashes the user
	// id only (ingest looks up every user of every request).
	users map[string]map[string]*Key
}

func newCache(limit int) *cache {
	return &cache{limit: max(limit, 16), ids: make(map[ID]*Key), users: make(map[string]map[string]*Key)}
}

func (c *cache) byID(id ID) *Key {
	c.mu.RLock()
	k := c.ids[id]
	c.mu.RUnlock()
	return k
}

func (c *cache) byUser(u UserRef) *Key {
	c.mu.RLock()
	k := c.users[u.Tenant][u.User]
	c.mu.RUnlock()
	return k
}

// keysOf appends to out the cached key of each of a tenant's users (nil
// for "" and for those it has none of), under one lock, and returns the
// users it has none of. A user named again right away (a gateway's run of
// one user's readings) costs no lookup.
func (c *cache) keysOf(tenant string, users []string, out []*Key) ([]*Key, []string) {
	var missing []string
	var last string
	var lastKey *Key
	c.mu.RLock()
	m := c.users[tenant]
	for _, u := range users {
		var k *Key
		switch {
		case u == "":
		case u == last && lastKey != nil:
			k = lastKey
		default:
			if k = m[u]; k == nil {
				missing = append(missing, u)
			}
			last, lastKey = u, k
		}
		out = append(out, k)
	}
	c.mu.RUnlock()
	return out, missing
}

func (c *cache) put(k *Key) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.ids) >= c.limit {
		drop := c.limit / 4
		for id, old := range c.ids {
			if drop == 0 {
				break
			}
			delete(c.ids, id)
			if m := c.users[old.Tenant]; m[old.User] == old {
				delete(m, old.User)
			}
			drop--
		}
	}
	c.ids[k.ID] = k
	m := c.users[k.Tenant]
	if m == nil {
		m = make(map[string]*Key)
		c.users[k.Tenant] = m
	}
	m[k.User] = k
}

// shred marks a cached key shredded, for every holder of it.
func (c *cache) shred(id ID) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if k := c.ids[id]; k != nil {
		k.shredded.Store(true)
	}
}

// idList lists the cached keys' ids, as bytes.
func (c *cache) idList() [][]byte {
	c.mu.RLock()
	defer c.mu.RUnlock()
	out := make([][]byte, 0, len(c.ids))
	for id := range c.ids {
		out = append(out, append([]byte(nil), id[:]...))
	}
	return out
}
