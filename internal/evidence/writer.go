package evidence

import "context"

// maxBatch bounds one write transaction: large enough to amortise the fsync,
// small enough that a crash loses little that was not yet acknowledged.
const maxBatch = 512

// Writer is the store's single writer goroutine. Records handed to it are
// batched into one transaction; a record is durable once its callback (or
// Write) reports success, and not before.
type Writer struct {
	s    *Store
	reqs chan writeReq
	done chan struct{}
}

type writeReq struct {
	rec  Record
	done func(error)
}

// NewWriter starts the writer goroutine. Close it to stop.
func (s *Store) NewWriter() *Writer {
	w := &Writer{s: s, reqs: make(chan writeReq, maxBatch), done: make(chan struct{})}
	go w.loop()
	return w
}

// Write appends rec and returns once it is committed, or with the commit's
// error. It is not cancellable: an interrupted run must still record what it
// captured.
func (w *Writer) Write(rec Record) error {
	errc := make(chan error, 1)
	w.Submit(rec, func(err error) { errc <- err })
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
// Every Write must have returned before Close is called.
func (w *Writer) Close() {
	close(w.reqs)
	<-w.done
}

func (w *Writer) loop() {
	defer close(w.done)
	batch := make([]writeReq, 0, maxBatch)
	recs := make([]Record, 0, maxBatch)
	for first := range w.reqs {
		batch = append(batch[:0], first)
	fill:
		for len(batch) < maxBatch {
			select {
			case r, ok := <-w.reqs:
				if !ok {
					break fill
				}
				batch = append(batch, r)
			default:
				break fill
			}
		}
		recs = recs[:0]
		for _, r := range batch {
			recs = append(recs, r.rec)
		}
		// Background context: a cancelled run must still commit what it has.
		if err := w.s.Append(context.Background(), recs...); err == nil || len(batch) == 1 {
			for _, r := range batch {
				r.done(err)
			}
			continue
		}
		// The batch failed as a whole; try each record alone so that one
		// that cannot be written does not take the others with it.
		for _, r := range batch {
			r.done(w.s.Append(context.Background(), r.rec))
		}
	}
}
