package evidence

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"strconv"
	"time"
)

// maxBatch bounds one write transaction: large enough to amortise the fsync,
// small enough that a crash loses little that was not yet acknowledged.
const maxBatch = 512

// maxDelay is how long a batch stays open for more records after its first:
// long enough that records arriving a few at a time share one fsync, short
// beside the captures' own round trips.
const maxDelay = 2 * time.Millisecond

// writerCacheKiB is the writer connection's page cache. SQLite's default,
// 2,000 KiB (125 pages of 16 KiB), is less than one batch of 512 captures
// touches in the two indexes it inserts into at random places (content by
// sha256, captures by workspace): pages were spilled to the log before the
// commit and read back. Measured on snapshots of 100,000 and 20,000
// captures of 2 KiB: about 10% faster and 10% less CPU, for 8 MB more
// peak RSS.
const writerCacheKiB = 8192

// Writer is the store's single writer goroutine. Records handed to it are
// batched into one transaction (group commit); a record is durable once its
// callback (or Write) reports success, and not before. A batch closes when
// it holds maxBatch records, maxDelay after its first, or at once when a
// Write arrives, taking every other Write already waiting: a caller
// waiting on a record is never queued behind records nobody waits for.
type Writer struct {
	s      *Store
	urgent chan writeReq // Write: drained first
	reqs   chan writeReq // Submit
	done   chan struct{}

	// Owned by the writer goroutine. One connection, so that statements
	// are prepared once for the writer's life, not once per transaction.
	conn      *sql.Conn
	poolCache int  // the connection's cache_size before the writer took it
	inDoubt   bool // a ROLLBACK failed: the connection may be in a transaction
	stmts     map[string]*sql.Stmt
	// known is the content (sha256) this writer has seen committed: the
	// store is append-only, so it stays, and repeated content is neither
	// inserted again nor read back.
	known map[contentKey]struct{}
	// commits counts the batches committed (or tried), for tests.
	commits int
}

type writeReq struct {
	rec  Record
	done func(error)
}

// NewWriter starts the writer goroutine. Close it to stop.
func (s *Store) NewWriter() *Writer {
	w := &Writer{s: s, urgent: make(chan writeReq, 64), reqs: make(chan writeReq, maxBatch), done: make(chan struct{}),
		stmts: map[string]*sql.Stmt{}, known: map[contentKey]struct{}{}}
	go w.loop()
	return w
}

// Write appends rec and returns once it is committed, or with the commit's
// error. It goes ahead of records queued by Submit and closes the batch it
// joins, so it waits for at most the commit in flight and its own (snapshot
// records a tenant's listing this way before capturing the tenant). It is
// not cancellable: an interrupted run must still record what it captured.
func (w *Writer) Write(rec Record) error {
	errc := make(chan error, 1)
	w.urgent <- writeReq{rec: rec, done: func(err error) { errc <- err }}
	return <-errc
}

// Submit queues rec and returns at once, unless the queue is full; done is
// called from the writer goroutine once the record's transaction has
// committed or failed. Callers that only need the record eventually durable
// (a capture worker moving on to the next workspace) use it so that they
// never wait on fsync.
func (w *Writer) Submit(rec Record, done func(error)) {
	w.reqs <- writeReq{rec: rec, done: done}
}

// Close stops the writer after it has committed every record handed to it.
// Every Write must have returned, and every Submit too, before Close is
// called.
func (w *Writer) Close() {
	close(w.urgent)
	close(w.reqs)
	<-w.done
}

func (w *Writer) loop() {
	defer close(w.done)
	defer func() {
		for _, st := range w.stmts {
			st.Close()
		}
		if w.conn != nil {
			w.releaseConn()
		}
	}()
	batch := make([]writeReq, 0, maxBatch)
	recs := make([]Record, 0, maxBatch)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	urgent, reqs := w.urgent, w.reqs
	for {
		batch = batch[:0]
		closeNow := false
		// take adds a request, or notes that its channel is closed.
		take := func(r writeReq, ok bool, ch *chan writeReq) {
			if !ok {
				*ch = nil
				return
			}
			batch = append(batch, r)
			if ch == &urgent {
				closeNow = true
			}
		}
		// The first record: a Write before anything Submitted.
		for len(batch) == 0 {
			if urgent == nil && reqs == nil {
				return
			}
			select {
			case r, ok := <-urgent:
				take(r, ok, &urgent)
				continue
			default:
			}
			select {
			case r, ok := <-urgent:
				take(r, ok, &urgent)
			case r, ok := <-reqs:
				take(r, ok, &reqs)
			}
		}
		timer.Reset(maxDelay)
	fill:
		for len(batch) < maxBatch && !closeNow && (urgent != nil || reqs != nil) {
			select {
			case r, ok := <-urgent:
				take(r, ok, &urgent)
			case r, ok := <-reqs:
				take(r, ok, &reqs)
			case <-timer.C:
				break fill
			}
		}
		timer.Stop()
		// Every Write already waiting joins the commit a Write closes:
		// tenants listed together share one fsync instead of queueing for
		// one each (500 listings were 500 commits in turn).
	drain:
		for closeNow && len(batch) < maxBatch && urgent != nil {
			select {
			case r, ok := <-urgent:
				take(r, ok, &urgent)
			default:
				break drain
			}
		}
		w.commits++
		recs = recs[:0]
		for _, r := range batch {
			recs = append(recs, r.rec)
		}
		if err := w.append(recs); err == nil || len(batch) == 1 {
			for _, r := range batch {
				r.done(err)
			}
			continue
		}
		// The batch failed as a whole; try each record alone so that one
		// that cannot be written does not take the others with it.
		for _, r := range batch {
			r.done(w.append([]Record{r.rec}))
		}
	}
}

// append commits recs in one transaction on the writer's connection. It
// uses a background context: a cancelled run must still commit what it has.
func (w *Writer) append(recs []Record) (err error) {
	if w.s.readOnly {
		return w.s.errReadOnly()
	}
	ctx := context.Background()
	if w.conn == nil {
		if err = w.takeConn(ctx); err != nil {
			return err
		}
	}
	// database/sql would prepare the statements again in every *sql.Tx;
	// on the connection itself they last, so the transaction is begun and
	// ended by hand. IMMEDIATE takes the write lock at once, as the
	// store's other transactions do.
	if _, err := w.conn.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
		return err
	}
	t := &txn{q: w.conn, stmts: w.stmts, known: w.known}
	if err = appendRecs(ctx, t, recs...); err == nil {
		_, err = w.conn.ExecContext(ctx, "COMMIT")
	}
	if err != nil {
		// A failed COMMIT (SQLITE_BUSY, I/O) can leave the transaction
		// open; the ROLLBACK's own error says nothing more. When it fails,
		// whether a transaction is still open is unknown (SQLite may have
		// rolled it back already): the pool does not get the connection
		// back.
		if _, rerr := w.conn.ExecContext(ctx, "ROLLBACK"); rerr != nil {
			w.inDoubt = true
		}
		return err
	}
	for _, k := range t.stored {
		w.known[k] = struct{}{}
	}
	return nil
}

// takeConn takes the writer's connection from the pool and gives it the
// writer's page cache, keeping the pool's size to restore.
func (w *Writer) takeConn(ctx context.Context) error {
	conn, err := w.s.db.Conn(ctx)
	if err != nil {
		return err
	}
	if err := conn.QueryRowContext(ctx, "PRAGMA cache_size").Scan(&w.poolCache); err == nil {
		_, err = conn.ExecContext(ctx, "PRAGMA cache_size = "+strconv.Itoa(-writerCacheKiB))
	}
	if err != nil {
		conn.Close()
		return err
	}
	w.conn = conn
	return nil
}

// releaseConn gives the connection back to the pool with the pool's page
// cache, or discards it when that cannot be restored or a ROLLBACK failed.
func (w *Writer) releaseConn() {
	restore := func() error {
		_, err := w.conn.ExecContext(context.Background(), "PRAGMA cache_size = "+strconv.Itoa(w.poolCache))
		return err
	}
	if w.inDoubt || restore() != nil {
		discard(w.conn)
	}
	w.conn.Close()
}

// discard makes conn's Close drop it instead of giving it back to the pool.
func discard(conn *sql.Conn) {
	conn.Raw(func(any) error { return driver.ErrBadConn })
}
